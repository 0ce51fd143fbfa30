"""dockyard.client.Client: negotiation, env handling, errors at the boundary, streams."""

from __future__ import annotations

import io
import socket
import threading
import time

import pytest

from dockyard import errors
from dockyard.client import Client, DaemonUnreachable, StreamError
from dockyard.client.transport import transport_from_env


def test_negotiation_and_system_calls(dockyard_daemon):
    c = dockyard_daemon.client()
    assert c.api_version is None
    assert c.version()["ApiVersion"] == "1.47"
    assert c.api_version == "1.47"
    assert c.server_headers["Ostype"] == "linux"
    assert c.info()["DockerRootDir"] == str(dockyard_daemon.data_root)
    assert c.df()["Images"] == []
    # a forced older version is used as is (DOCKER_API_VERSION)
    old = Client(dockyard_daemon.host, env={"DOCKER_API_VERSION": "1.41"})
    assert old.url("/info") == "/v1.41/info"
    assert old.info()["Images"] == 0
    too_old = Client(dockyard_daemon.host, version="1.12", env={})
    with pytest.raises(errors.InvalidParameter, match="too old"):
        too_old.info()
    # one keep-alive connection serves many requests
    for _ in range(20):
        c.version()
    c.close()


def test_errors_are_translated(dockyard_daemon, saved_busybox):
    c = dockyard_daemon.client()
    with pytest.raises(errors.NotFound, match="No such image: nope:latest"):
        c.inspect_image("nope")
    with pytest.raises(errors.InvalidParameter, match="invalid filter 'x'"):
        c.images(filters={"x": "1"})
    path, image_id = saved_busybox
    with open(path, "rb") as f:
        msgs = list(c.load(f, quiet=True))
    assert msgs[-1]["stream"].startswith("Loaded image")
    with pytest.raises(errors.Conflict, match="must be forced"):
        c.remove_image(image_id)
    c.tag("am/busybox:v1", "127.0.0.1:5000/x/y", "z")
    assert "127.0.0.1:5000/x/y:z" in c.inspect_image("127.0.0.1:5000/x/y:z")["RepoTags"]
    assert c.history("am/busybox:v1")[0]["Id"] == image_id
    resp = c.save(["am/busybox:v1"])
    data = b"".join(resp.iter_chunks())
    assert len(data) > 1_000_000
    removed = c.remove_image(image_id, force=True)
    assert {"Deleted": image_id} in removed
    # import from a stream, with changes; progress is a JSON stream
    out = list(c.import_image(io.BytesIO(data), repo="re/imp:1"))
    assert out and "status" in out[0]
    # a load that fails after the 200: in-band error -> StreamError
    with pytest.raises((StreamError, errors.InvalidParameter)):
        list(c.load(io.BytesIO(b"garbage" * 100)))
    assert c.prune_images({"dangling": False})["SpaceReclaimed"] >= 0


def test_events_stream_live(dockyard_daemon, saved_busybox):
    c = dockyard_daemon.client()
    until = f"{time.time() + 60:.9f}"
    got: list = []
    failed: list = []

    def reader():
        try:
            for ev in Client(dockyard_daemon.host, env={}).events(until=until,
                                                                   filters={"type": "image"}):
                got.append(ev)
                if ev["Action"] == "load":
                    break  # closing the stream early is fine too
        except Exception as e:  # noqa: BLE001 - reported below
            failed.append(e)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.5)
    with open(saved_busybox[0], "rb") as f:
        list(c.load(f))
    t.join(timeout=60)
    assert not t.is_alive() and not failed, failed
    assert ("image", "load") in [(e["Type"], e["Action"]) for e in got]


def test_unreachable_daemon_and_env(tmp_path):
    sock = tmp_path / "nothing.sock"
    c = Client(f"unix://{sock}", env={})
    with pytest.raises(DaemonUnreachable, match=f"Cannot connect to the Docker daemon at "
                                                f"unix://{sock}. Is the docker daemon running"):
        c.version()
    # a TCP port that refuses connections
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(DaemonUnreachable):
        Client(f"tcp://127.0.0.1:{port}", env={}).info()
    # env handling like docker's: DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
    t = transport_from_env(env={"DOCKER_HOST": "tcp://10.0.0.1:2376", "DOCKER_TLS_VERIFY": "1",
                                "DOCKER_CERT_PATH": str(tmp_path)})
    assert t.scheme == "tcp" and t.tls is not None and t.tls.verify and t.port == 2376
    t = transport_from_env(host="unix:///x.sock", env={"DOCKER_HOST": "tcp://a:1"})
    assert t.scheme == "unix" and t.path == "/x.sock"
    t = transport_from_env(env={})
    assert t.host == "unix:///run/dockyard.sock"
    t = transport_from_env(env={"DOCKER_HOST": "tcp://h"})
    assert t.tls is None and t.port == 2375
