"""The container commands' pure parts: flag values, argument splitting, ports, streams."""

from __future__ import annotations

import socket
import threading

import pytest

from dockyard.cli import runopts
from dockyard.cli.cmd_containers import displayable_ports, get_timestamp
from dockyard.cli.cmd_run import create_flags_parser, exit_status
from dockyard.cli.streams import EscapeScanner, parse_detach_keys, pump
from dockyard.client.containers import Hijacked


@pytest.mark.parametrize("value,out", [("64m", 64 << 20), ("1g", 1 << 30), ("512", 512),
                                        ("1.5k", 1536), ("10MiB", 10 << 20), ("2 GB", 2 << 30),
                                        ("-1", -1)])
def test_ram_in_bytes(value, out):
    assert runopts.ram_in_bytes(value) == out


@pytest.mark.parametrize("value", ["foo", "1x", "", "m"])
def test_ram_in_bytes_refuses(value):
    with pytest.raises(ValueError, match="invalid size"):
        runopts.ram_in_bytes(value)


def test_publish_specs_like_nat():
    exposed, b = runopts.parse_publish(["8080:80", "127.0.0.1:53:53/udp", "90",
                                        "9000-9001:90-91", "[::1]:7000:70"])
    assert set(exposed) == {"80/tcp", "53/udp", "90/tcp", "91/tcp", "70/tcp"}
    assert b["80/tcp"] == [{"HostIp": "", "HostPort": "8080"}]
    assert b["53/udp"] == [{"HostIp": "127.0.0.1", "HostPort": "53"}]
    assert b["90/tcp"] == [{"HostIp": "", "HostPort": ""}, {"HostIp": "", "HostPort": "9000"}]
    assert b["91/tcp"] == [{"HostIp": "", "HostPort": "9001"}]
    assert b["70/tcp"] == [{"HostIp": "::1", "HostPort": "7000"}]
    for bad in ("80/xtp", "a:b", "1-2:3-5", "99999"):
        with pytest.raises(ValueError):
            runopts.parse_publish([bad])


def test_restart_ulimit_caps_and_files(tmp_path, monkeypatch):
    assert runopts.parse_restart("on-failure:3") == {"Name": "on-failure",
                                                     "MaximumRetryCount": 3}
    assert runopts.parse_restart("always") == {"Name": "always", "MaximumRetryCount": 0}
    with pytest.raises(ValueError, match="must be an integer"):
        runopts.parse_restart("on-failure:x")
    assert runopts.parse_ulimit("nofile=100:200") == {"Name": "nofile", "Soft": 100,
                                                      "Hard": 200}
    with pytest.raises(ValueError):
        runopts.parse_ulimit("nofile=300:200")
    assert [runopts.normalize_cap(c) for c in ("net_admin", "CAP_CHOWN", "all")] == \
        ["CAP_NET_ADMIN", "CAP_CHOWN", "ALL"]
    f = tmp_path / "env"
    f.write_text("# comment\nA=1\n\nFROM_HOST\nUNSET_ONE\nB=x=y\n")
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    assert runopts.read_kv_file(str(f), "env") == ["A=1", "FROM_HOST=h", "B=x=y"]


def test_split_stops_at_the_image():
    p = create_flags_parser("run", run=True)
    argv = ["-it", "--rm", "-e", "A=1", "--name=x", "-dp", "80:80", "busybox", "ls", "-l",
            "--rm"]
    flags, pos = runopts.split_interspersed(p, argv)
    assert pos == ["busybox", "ls", "-l", "--rm"]
    assert flags == argv[:7]
    assert runopts.split_interspersed(p, ["--", "img", "-x"]) == ([], ["img", "-x"])
    o = p.parse(flags)
    assert (o.interactive, o.tty, o.rm, o.detach, o.publish, o.name) == \
        (True, True, True, True, ["80:80"], "x")


def test_create_body_shapes():
    p = create_flags_parser("create", run=False)
    o = p.parse(["-i", "-h", "host", "--entrypoint", "", "-a", "stdout", "-l", "k",
                 "--restart", "unless-stopped", "--network", "n1", "--ip", "10.0.0.5",
                 "--network-alias", "al"])
    body = runopts.build_create(p, o, "busybox", ["true"])
    assert body["Hostname"] == "host" and body["Entrypoint"] == [""]
    assert (body["AttachStdin"], body["AttachStdout"], body["AttachStderr"]) == \
        (False, True, False)
    assert body["Labels"] == {"k": ""}
    assert body["HostConfig"]["RestartPolicy"] == {"Name": "unless-stopped",
                                                   "MaximumRetryCount": 0}
    assert body["HostConfig"]["NetworkMode"] == "n1"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"n1": {
        "IPAMConfig": {"IPv4Address": "10.0.0.5", "IPv6Address": ""}, "Aliases": ["al"]}}}
    o = p.parse(["--network", "n6", "--ip6", "fd00::5", "--link-local-ip", "169.254.1.1",
                 "--link-local-ip", "fe80::1"])
    assert runopts.build_create(p, o, "busybox", [])["NetworkingConfig"] == {
        "EndpointsConfig": {"n6": {"IPAMConfig": {
            "IPv4Address": "", "IPv6Address": "fd00::5",
            "LinkLocalIPs": ["169.254.1.1", "fe80::1"]}}}}
    o = p.parse(["--rm", "--restart", "always"])
    with pytest.raises(runopts.OptionError, match="conflicting options"):
        runopts.build_create(p, o, "busybox", [])
    o = p.parse(["--cpus", "x"])
    with pytest.raises(runopts.FlagError, match='invalid argument "x" for "--cpus" flag'):
        runopts.build_create(p, o, "busybox", [])


def test_exit_status_like_docker():
    assert exit_status('exec: "x": executable file not found in $PATH') == 127
    assert exit_status("open /x: no such file or directory") == 127
    assert exit_status("exec /etc: permission denied") == 126
    assert exit_status("No such image: x") == 125


def test_displayable_ports():
    ports = [{"PrivatePort": 80, "Type": "tcp"}, {"PrivatePort": 81, "Type": "tcp"},
             {"PrivatePort": 82, "Type": "tcp"}, {"PrivatePort": 53, "Type": "udp"},
             {"IP": "0.0.0.0", "PrivatePort": 90, "PublicPort": 9090, "Type": "tcp"},
             {"IP": "::", "PrivatePort": 90, "PublicPort": 9090, "Type": "tcp"},
             {"IP": "0.0.0.0", "PrivatePort": 5000, "PublicPort": 5000, "Type": "tcp"}]
    assert displayable_ports(ports) == ("53/udp, 80-82/tcp, 0.0.0.0:5000->5000/tcp, "
                                        "0.0.0.0:9090->90/tcp, [::]:9090->90/tcp")
    assert displayable_ports([]) == ""


def test_timestamps():
    assert get_timestamp("10m", now=1000.0) == "400.000000000"
    assert get_timestamp("1h30m", now=10000.0) == "4600.000000000"
    assert get_timestamp("1700000000") == "1700000000"
    assert get_timestamp("2024-01-02T03:04:05Z") == "1704164645.000000000"
    with pytest.raises(ValueError):
        get_timestamp("yesterday")


def test_detach_keys_and_escape_scanner():
    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(ValueError):
        parse_detach_keys("ctrl-1")
    s = EscapeScanner(b"\x10\x11")
    assert s.feed(b"ab\x10") == (b"ab", False)      # a possible prefix is held back
    assert s.feed(b"c") == (b"\x10c", False)        # ... and released when it is not
    assert s.feed(b"x\x10") == (b"x", False)
    assert s.feed(b"\x11rest") == (b"\x10\x11", True)


def test_pump_demultiplexes_and_half_closes(tmp_path):
    """Frames go to stdout/stderr; our stdin's EOF reaches the peer as a half-close."""
    import os

    from dockyard.supervisor.protocol import frame

    ours, peer = socket.socketpair()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe()
    os.write(in_w, b"typed")
    os.close(in_w)
    got = []

    def server():
        data = b""
        while True:
            d = peer.recv(100)
            if not d:
                break  # the half-close
            data += d
        got.append(data)
        peer.sendall(frame(2, b"err\n")[3:])  # the rest of a frame begun in `buffered`
        peer.sendall(frame(1, b"out\n"))
        peer.close()

    t = threading.Thread(target=server)
    t.start()
    head = frame(2, b"err\n")[:3]
    res = pump(Hijacked(ours, head), tty=False, stdin=True, in_fd=in_r, out_fd=out_w,
               err_fd=err_w)
    t.join()
    for fd in (out_w, err_w):
        os.close(fd)
    assert res == "eof" and got == [b"typed"]
    assert os.read(out_r, 100) == b"out\n" and os.read(err_r, 100) == b"err\n"
    for fd in (out_r, err_r, in_r):
        os.close(fd)
    ours.close()
