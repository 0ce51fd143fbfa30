"""The runtime's parent/init message channel (runtime/sync.py) on a real socket pair."""

from __future__ import annotations

from dockyard.runtime import sync


def test_an_error_sent_before_the_peer_exits_with_our_messages_unread_is_read():
    # init fails after the parent queued RUN: it sends ERROR and exits without reading RUN.
    # Linux then reports ECONNRESET to the parent once, ahead of the queued ERROR.
    parent, init = sync.pair()
    try:
        sync.send(parent, sync.Msg.RUN)
        sync.send(init, sync.Msg.ERROR, msg="masking /proc/keys: /dev/null is not a device")
        init.close()
        msg = sync.recv(parent)
        assert msg == {"type": sync.Msg.ERROR, "msg": "masking /proc/keys: /dev/null is not a device"}
        assert sync.recv(parent) is None   # then end-of-file
    finally:
        parent.close()


def test_a_reset_with_nothing_queued_is_end_of_file():
    parent, init = sync.pair()
    try:
        sync.send(parent, sync.Msg.RUN)
        init.close()
        assert sync.recv(parent) is None
    finally:
        parent.close()
