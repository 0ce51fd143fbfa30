"""Malformed JSON bodies get 400 (too large: 413) with a clear message, never a 500,
and leave the daemon healthy with nothing half-written (issue 12)."""

from __future__ import annotations

import json
import socket
import threading
import uuid

import pytest

from acceptance.harness import leftovers
from helpers.daemon import unix_request

pytestmark = pytest.mark.slow

DEEP = b"[" * 100_000 + b"]" * 100_000


def _req(d, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 30):
    return unix_request(d.sock, method, "/v1.47" + path, body,
                        {"Content-Type": "application/json", **(headers or {})}, timeout)


@pytest.fixture(scope="module")
def ids(daemon):
    """A created container, a running one and an exec of the running one."""
    created = daemon.out("create", "busybox", "true")
    running = daemon.out("run", "-d", "busybox", "sleep", "600")
    status, _, body = _req(daemon, "POST", f"/containers/{running}/exec",
                           json.dumps({"Cmd": ["true"]}).encode())
    assert status == 201, body
    yield {"created": created, "running": running, "exec": json.loads(body)["Id"]}
    daemon.docker("rm", "-f", created, running, check=False)


def _cases(ids) -> list[tuple[str, str, bytes, str]]:
    """(method, path, body, part of the expected message)"""
    c, r, e = ids["created"], ids["running"], ids["exec"]
    create = "/containers/create"
    j = lambda o: json.dumps(o).encode()  # noqa: E731
    return [
        ("POST", create, j({"Image": "busybox", "Env": "x"}),
         "cannot unmarshal string into Go struct field ContainerConfig.Env of type []string"),
        ("POST", create, j({"Image": "busybox", "HostConfig": {"Memory": "lots"}}),
         "HostConfig.Memory of type int64"),
        ("POST", create, j({"Image": "busybox", "HostConfig": {"Memory": 1.5}}), "number 1.5"),
        ("POST", create, j({"Image": "busybox", "Cmd": 5}), "ContainerConfig.Cmd"),
        ("POST", create, j({"Image": "busybox", "Labels": []}),
         "cannot unmarshal array into Go struct field ContainerConfig.Labels"),
        ("POST", create, j({"Image": "busybox", "Labels": {"a": 1}}), "ContainerConfig.Labels"),
        ("POST", create, j({"Image": 7}), "ContainerConfig.Image of type string"),
        ("POST", create, j({"Image": "busybox", "Tty": "yes"}), "ContainerConfig.Tty of type bool"),
        ("POST", create, j({"Image": "busybox", "ExposedPorts": {"80/tcp": 1}}), "ExposedPorts"),
        ("POST", create, j({"Image": "busybox", "Healthcheck": {"Interval": "5s"}}), "Interval"),
        ("POST", create, j({"Image": "busybox", "HostConfig": "x"}), "HostConfig"),
        ("POST", create, j({"Image": "busybox", "HostConfig": {"RestartPolicy": "always"}}),
         "RestartPolicy"),
        ("POST", create, j({"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": "x"}}}),
         "PortBindings"),
        ("POST", create, j({"Image": "busybox", "HostConfig": {"Binds": [1]}}), "Binds"),
        ("POST", create, j({"Image": "busybox", "HostConfig": {"Mounts": [{"ReadOnly": "no"}]}}),
         "Mounts.ReadOnly"),
        ("POST", create, j({"Image": "busybox", "HostConfig": {"Ulimits": [{"Soft": "1"}]}}),
         "Ulimits.Soft"),
        ("POST", create, j({"Image": "busybox", "HostConfig": {"ShmSize": 2 ** 64}}), "ShmSize"),
        ("POST", create, j({"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": []}}),
         "EndpointsConfig"),
        # well-typed but out of range: dockerd's create-time checks, not a runtime 500 at start
        ("POST", create, j({"Image": "busybox", "HostConfig": {"OomScoreAdj": 2 ** 40}}),
         "range for oom score adj is [-1000, 1000]"),
        ("POST", create, j({"Image": "busybox", "HostConfig": {"ShmSize": -1}}),
         "SHM size can not be less than 0"),
        ("POST", create, j({"Image": "busybox", "HostConfig": {"CpuPeriod": -1}}),
         "CPU cfs period"),
        ("POST", create, j({"Image": "busybox", "HostConfig": {"CpuQuota": 10}}), "CPU cfs quota"),
        ("POST", create, j({"Image": "busybox", "HostConfig": {"ExtraHosts": ["x"]}}),
         'invalid extra host "x"'),
        ("POST", create, b"[1, 2]", "cannot unmarshal array"),
        ("POST", create, b'"busybox"', "cannot unmarshal string"),
        ("POST", create, b"null", "cannot unmarshal null"),
        ("POST", create, b"{garbage", "invalid JSON"),
        ("POST", create, b"", "empty body"),
        ("POST", create, b'{"Image": "busybox", "Labels": ' + DEEP + b"}", "nested deeper"),
        ("POST", create, DEEP, "nested deeper"),
        ("POST", create, b"\xff\xfe{}", "invalid"),
        # exec
        ("POST", f"/containers/{r}/exec", j({"Cmd": 5}), "ExecConfig.Cmd"),
        ("POST", f"/containers/{r}/exec", j({"Cmd": ["true"], "Env": {"a": "b"}}), "ExecConfig.Env"),
        ("POST", f"/containers/{r}/exec", j({"Cmd": ["true"], "Tty": 1}), "ExecConfig.Tty"),
        ("POST", f"/containers/{r}/exec", DEEP, "nested deeper"),
        ("POST", f"/exec/{e}/start", b"{garbage", "invalid JSON"),
        ("POST", f"/exec/{e}/start", j({"Detach": "yes"}), "ExecStartCheck.Detach"),
        ("POST", f"/exec/{e}/start", b"[]", "cannot unmarshal array"),
        ("POST", f"/exec/{e}/start", DEEP, "nested deeper"),
        # update, commit
        ("POST", f"/containers/{c}/update", j({"Memory": "x"}), "UpdateConfig.Memory"),
        ("POST", f"/containers/{c}/update", j({"RestartPolicy": []}), "RestartPolicy"),
        ("POST", f"/containers/{c}/update", b"{", "invalid JSON"),
        ("POST", f"/commit?container={c}&repo=bad-commit", j({"Env": "x"}), "ContainerConfig.Env"),
        ("POST", f"/commit?container={c}&repo=bad-commit", b"{garbage", "invalid JSON"),
        ("POST", f"/commit?container={c}&repo=bad-commit", DEEP, "nested deeper"),
        # auth
        ("POST", "/auth", j({"username": 5}), "AuthConfig.username of type string"),
        ("POST", "/auth", b"{garbage", "invalid JSON"),
        ("POST", "/auth", b"[]", "cannot unmarshal array"),
        ("POST", "/auth", DEEP, "nested deeper"),
        # networks
        ("POST", "/networks/create", j({"Name": 5}), "CreateRequest.Name of type string"),
        ("POST", "/networks/create", j({"Name": "n1", "IPAM": {"Config": "x"}}), "IPAM.Config"),
        ("POST", "/networks/create", j({"Name": "n1", "Labels": []}), "Labels"),
        ("POST", "/networks/create", j({"Name": "n1", "Internal": "yes"}), "Internal"),
        ("POST", "/networks/create", b"{garbage", "invalid JSON"),
        ("POST", "/networks/create", DEEP, "nested deeper"),
        ("POST", "/networks/none/connect", j({"Container": 5}), "ConnectOptions.Container"),
        ("POST", "/networks/none/connect", j({"Container": c, "EndpointConfig": {"Aliases": "a"}}),
         "Aliases"),
        ("POST", "/networks/none/disconnect", j({"Container": c, "Force": "yes"}), "Force"),
        # JSON in query parameters
        ("GET", "/containers/json?filters=" + "%5B" * 2500, b"", "nested deeper"),
        ("GET", "/images/json?filters=" + "%5B" * 2500, b"", "nested deeper"),
        # images/create's parameters
        ("POST", "/images/create?fromSrc=http%3A%2F%2F%5B%3A%3A1", b"", "invalid URL"),
        ("POST", "/images/create?fromImage=busybox&tag=%40%40", b"", "invalid reference format"),
        ("POST", "/images/create?fromImage=%00", b"", "invalid reference format"),
        ("POST", "/images/create?fromImage=x&platform=a%2F%2F%2Fb", b"", "unknown operating system"),
    ]


def test_bad_json_bodies_get_400(daemon, ids):
    before = leftovers(daemon)
    images_before = daemon.out("images", "-qa")
    bad = []
    for method, path, body, msg in _cases(ids):
        status, headers, answer = _req(daemon, method, path, body)
        try:
            message = json.loads(answer)["message"]
        except (ValueError, KeyError, TypeError):
            message = answer.decode(errors="replace")
        if status != 400 or msg not in message:
            bad.append((method, path[:60], body[:60], status, message))
    assert not bad, "\n".join(map(str, bad))
    # nothing was made, the daemon is healthy and logged no internal error
    assert leftovers(daemon) == before
    assert daemon.out("images", "-qa") == images_before
    assert daemon.out("run", "--rm", "busybox", "echo", "ok") == "ok"
    assert "internal error" not in daemon.log_text() and "RecursionError" not in daemon.log_text()


def test_valid_bodies_still_decode_like_go(daemon):
    """Field names match case-insensitively, null leaves a field unset, and a string
    Cmd is a one-element command, as dockerd's decoder does."""
    name = "ci-" + uuid.uuid4().hex[:6]
    body = {"image": "busybox", "cmd": "true", "env": ["A=1"], "labels": {"k": "v"},
            "hostconfig": {"memory": 64 * 1024 * 1024, "ShmSize": None, "Binds": None,
                           "restartpolicy": {"name": "no"}},
            "Tty": None}
    status, _, answer = _req(daemon, "POST", f"/containers/create?name={name}",
                             json.dumps(body).encode())
    assert status == 201, answer
    try:
        c = json.loads(daemon.out("inspect", name))[0]
        assert c["Config"]["Env"][0] == "A=1" and c["Config"]["Labels"] == {"k": "v"}
        assert c["Config"]["Cmd"] == ["true"] and c["Config"]["Tty"] is False
        assert c["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert c["HostConfig"]["RestartPolicy"]["Name"] == "no"
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_exec_start_upgrade_with_garbage_gets_400_before_the_101(daemon, ids):
    status, _, body = _req(daemon, "POST", "/containers/{}/exec".format(ids["running"]),
                           json.dumps({"Cmd": ["true"], "AttachStdout": True}).encode())
    eid = json.loads(body)["Id"]
    for payload in (b"{garbage", b'{"Tty": "x"}', b"[" * 5000 + b"]" * 5000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(daemon.sock))
        try:
            s.sendall((f"POST /v1.47/exec/{eid}/start HTTP/1.1\r\nHost: docker\r\n"
                       f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload)
            head = s.recv(4096)
        finally:
            s.close()
        assert head.startswith(b"HTTP/1.1 400"), head[:200]
    assert unix_request(daemon.sock, "GET", "/_ping")[0] == 200


def test_json_bodies_are_capped(daemon):
    """A 200 MB create body once grew the metadata database by 420 MB: bodies over
    4 MiB get 413 whether their length is declared or not; nothing is stored."""
    db = daemon.data / "metadata.db"
    before = leftovers(daemon)
    size_before = db.stat().st_size
    big = json.dumps({"Image": "busybox", "Labels": {"x": "y" * (5 * 1024 * 1024)}}).encode()
    status, _, answer = _req(daemon, "POST", "/containers/create", big)
    assert status == 413 and "too large" in json.loads(answer)["message"]

    def chunks():
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    import http.client

    conn = http.client.HTTPConnection("localhost", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(str(daemon.sock))
    try:
        conn.request("POST", "/v1.47/containers/create", body=chunks(),
                     headers={"Content-Type": "application/json"}, encode_chunked=True)
        r = conn.getresponse()
        assert r.status == 413, r.read()
    except (BrokenPipeError, ConnectionResetError):
        pass   # the daemon may stop reading a chunked body once it is over the cap
    finally:
        conn.close()
    # just under the cap is still fine (a big but sane record)
    ok = json.dumps({"Image": "busybox", "Labels": {"x": "y" * (1024 * 1024)}}).encode()
    status, _, answer = _req(daemon, "POST", "/containers/create", ok)
    assert status == 201, answer
    daemon.docker("rm", json.loads(answer)["Id"])
    assert leftovers(daemon) == before
    assert db.stat().st_size < size_before + 16 * 1024 * 1024
    assert unix_request(daemon.sock, "GET", "/_ping")[0] == 200


def test_parallel_bad_requests_leave_the_daemon_responsive(daemon):
    errors = []

    def hammer():
        try:
            for _ in range(20):
                status, _, _ = _req(daemon, "POST", "/containers/create",
                                    b'{"Image": "busybox", "Labels": ' + DEEP + b"}")
                if status != 400:
                    errors.append(status)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert unix_request(daemon.sock, "GET", "/_ping")[0] == 200
