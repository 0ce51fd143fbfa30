"""The container list the UI keeps between requests (ui/containerlist.py): reused while
the engine's events say nothing changed, never older than an event the UI has seen or
an action it did itself; against our daemon and Debian's dockerd."""

from __future__ import annotations

import time
import uuid

import requests

from test_ui_security import login


def _names(r: requests.Response) -> set[str]:
    return {c["name"] for c in r.json()["containers"]}


def _poll(get, cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = get()
        if cond(r):
            return r
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_list_is_kept_until_an_event(engine, ui):
    s, csrf = login(ui)

    def get():
        r = s.get(ui.url + "/api/containers", headers={"X-CSRF-Token": csrf}, timeout=30)
        assert r.status_code == 200
        return r

    n = uuid.uuid4().hex[:6]
    get()
    # once the UI watches the events, a quiet engine is not asked again
    r = _poll(get, lambda r: r.headers["X-Dockyard-List"] == "kept")
    assert b'": ' not in r.content      # compact JSON
    kept = _names(r)
    assert _names(get()) == kept and get().headers["X-Dockyard-List"] == "kept"
    names = []
    try:
        for i in range(3):
            name = f"kept{n}-{i}"
            engine.docker("create", "--name", name, "--network", "none", "busybox", "true")
            names.append(name)
            # the create's event reaches the UI: the next answer is fetched and has it
            r = _poll(get, lambda r: name in _names(r), timeout=5)
            assert r.headers["X-Dockyard-List"] == "fetched"
        # an action through the UI: its answer is there at once, no event needed
        r = s.post(ui.url + f"/api/containers/{names[0]}/start", headers={"X-CSRF-Token": csrf}, timeout=60)
        assert r.status_code == 200, r.text
        states = {c["name"]: c["state"] for c in get().json()["containers"]}
        assert states[names[0]] in ("running", "exited"), states
        r = s.delete(ui.url + f"/api/containers/{names[1]}?force=1", headers={"X-CSRF-Token": csrf}, timeout=60)
        assert r.status_code == 200
        assert names[1] not in _names(get())
        # a rename (an event of its own) and a removal behind the UI's back
        engine.docker("rename", names[2], names[2] + "x")
        _poll(get, lambda r: names[2] + "x" in _names(r) and names[2] not in _names(r), timeout=5)
        names[2] += "x"
        engine.docker("rm", "-f", names[0])
        _poll(get, lambda r: names[0] not in _names(r), timeout=5)
    finally:
        engine.docker("rm", "-f", *names, check=False)
