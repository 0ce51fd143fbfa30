"""The warm pool's policy (containers/warm.py): which series get a container made ahead."""

from dockyard.containers import warm


def rec(cid: str, **cfg) -> dict:
    return {"Id": cid, "Image": "sha256:x", "Config": {"Hostname": "", **cfg},
            "HostConfig": {"AutoRemove": True}, "NetworkingConfig": {}}


def test_key_ignores_the_defaulted_hostname_and_nothing_else():
    a, b = rec("a" * 64, Cmd=["true"]), rec("b" * 64, Cmd=["true"])
    b["Config"]["Hostname"] = "b" * 12          # set at start from the id
    assert warm.key(a) == warm.key(b)
    assert warm.key(a) != warm.key(rec("c" * 64, Cmd=["false"]))
    assert warm.key(a) != warm.key(rec("c" * 64, Cmd=["true"], Hostname="myhost"))
    c = rec("c" * 64, Cmd=["true"])
    c["HostConfig"]["Memory"] = 1 << 26
    assert warm.key(a) != warm.key(c)


def test_only_a_series_is_admitted_and_the_oldest_gives_way():
    p = warm.Pool(2)
    assert p.admit("k1") == (False, [])          # never created
    p.note("k1")
    assert p.admit("k1") == (False, [])          # once is not a series
    p.note("k1")
    assert p.admit("k1") == (True, [])
    p.ready["k1"] = e1 = warm.Entry("k1", {}, 1, made=1.0)
    assert p.admit("k1") == (False, [])          # one per key
    for k in ("k2", "k3"):
        p.note(k)
        p.note(k)
    assert p.admit("k2") == (True, [])
    p.ready["k2"] = warm.Entry("k2", {}, 2, made=2.0)
    assert p.admit("k3") == (True, [e1])         # full: the oldest gives way
    assert set(p.ready) == {"k2"}
    assert p.take("k2").pid == 2 and p.take("k2") is None


def test_disabled_expiry_and_drain():
    assert warm.Pool(0).admit("k") == (False, [])
    p = warm.Pool(3, ttl=10)
    p.ready["old"] = warm.Entry("old", {}, 1, made=0.0)
    p.ready["new"] = warm.Entry("new", {}, 2, made=8.0)
    assert [e.key for e in p.expired(now=12.0)] == ["old"]
    assert [e.key for e in p.drain()] == ["new"] and p.ready == {}


def test_seen_keys_are_bounded():
    p = warm.Pool(1)
    for i in range(p.SEEN_KEYS + 10):
        p.note(f"k{i}")
    assert len(p.seen) == p.SEEN_KEYS and "k0" not in p.seen
