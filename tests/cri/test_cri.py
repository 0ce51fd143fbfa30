"""Our runtime as a Kubernetes RuntimeClass: Debian's containerd with a `dockyard`
handler (runc v2 shim, BinaryName = our launcher), driven through the CRI v1 API
as the kubelet drives it. Each test ends with nothing of its pods left (mounts,
cgroups, runtime state, shims, netns, IP leases, iptables rules)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time

import pytest

# both pods make cni-* network namespaces, which each test's leftover check would see: one worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cri")]


def _sh(containerd, cid: str, script: str) -> str:
    r = containerd.exec_sync(cid, ["sh", "-c", script])
    assert r.exit_code == 0, (script, r.stdout, r.stderr)
    return r.stdout.decode()


def _wait_exited(containerd, cid: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = containerd.status(cid)
        if st.state == containerd.pb.CONTAINER_EXITED:
            return st
        time.sleep(0.1)
    raise AssertionError(f"{cid} did not exit")


def _read_log(path: str, want: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        if want in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{want!r} not in log {path}: {text!r}")


def test_host_network_pod(containerd):
    pb = containerd.pb
    cfg = containerd.pod_config("hostnet", host_network=True)
    pod = containerd.run_pod(cfg)
    cid = containerd.create(pod, cfg, "main",
                            ["sh", "-c", "echo out-line; echo err-line >&2; exec sleep 1000"])
    containerd.start(cid)
    assert _sh(containerd, cid, "readlink /proc/self/ns/net").strip() == \
        os.readlink("/proc/self/ns/net")
    # the program's own name (not an fd number): what the kubelet's probes and ps see
    assert _sh(containerd, cid, "cat /proc/1/comm").split() == ["sleep"]
    r = containerd.exec_sync(cid, ["sh", "-c", "echo to-err >&2; exit 3"])
    assert (r.exit_code, r.stderr) == (3, b"to-err\n")

    # logs in the CRI format: "<time> <stream> F <line>"
    log = containerd.status(cid).log_path
    text = _read_log(log, "err-line")
    lines = {tuple(ln.split(" ", 3)[1:]) for ln in text.splitlines()}
    assert ("stdout", "F", "out-line") in lines and ("stderr", "F", "err-line") in lines

    # UpdateContainerResources carries a deny-all device list: devices still usable
    containerd.rt.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(cpu_shares=512, cpu_period=100000,
                                                           cpu_quota=50000)), timeout=60)
    assert _sh(containerd, cid, "echo x > /dev/null && head -c 2 /dev/zero | wc -c && "
                                "exec 3<>/dev/ptmx && echo ptmx-ok").split() == ["2", "ptmx-ok"]

    containerd.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=60)
    assert _wait_exited(containerd, cid).exit_code == 137
    containerd.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)
    containerd.remove_pod(pod)
    assert containerd.leftovers() == {}


async def _exec_stream(url: str, send: bytes, want: bytes, timeout: float = 20) -> bytes:
    """The kubelet's streaming exec over WebSocket (v4.channel.k8s.io: each
    message starts with its channel: 0 stdin, 1 stdout, 3 the final status)."""
    import aiohttp
    out = b""
    status = b""
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws:
            sent = False
            while True:
                msg = await asyncio.wait_for(ws.receive(), timeout)
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
                ch, data = msg.data[0], msg.data[1:]
                if ch == 1:
                    out += data
                elif ch == 3:
                    status += data
                if not sent and (b"$" in out or b"#" in out or ch == 1):
                    await ws.send_bytes(b"\x00" + send)
                    sent = True
    assert b"Success" in status or want in out, (out, status)
    return out


def test_bridge_pod_with_shared_namespaces_and_streaming_exec(containerd):
    pb = containerd.pb
    cfg = containerd.pod_config("bridged", hostname="dyk-pod")
    pod = containerd.run_pod(cfg)
    st = containerd.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod),
                                        timeout=30).status
    assert st.runtime_handler == "dockyard"
    ip = ipaddress.ip_address(st.network.ip)
    net = ipaddress.ip_network(containerd.subnet)
    assert ip in net

    a = containerd.create(pod, cfg, "a", ["sleep", "1000"])
    b = containerd.create(pod, cfg, "b", ["sleep", "1001"])
    for c in (a, b):
        containerd.start(c)
    # both containers joined the pod's IPC, UTS and network namespaces by path
    probe = "for n in ipc uts net mnt; do readlink /proc/self/ns/$n; done; hostname"
    na, nb = _sh(containerd, a, probe).split(), _sh(containerd, b, probe).split()
    assert na[:3] == nb[:3] and na[3] != nb[3], (na, nb)   # shared; own mount namespaces
    assert na[4] == nb[4] == "dyk-pod"
    assert _sh(containerd, b, "cat /proc/1/comm") == "sleep\n"
    host = [os.readlink(f"/proc/self/ns/{n}") for n in ("ipc", "uts", "net")]
    assert not set(na[:3]) & set(host)
    # and the pod's /dev/shm: written in a, read in b
    _sh(containerd, a, "echo from-a > /dev/shm/note")
    assert _sh(containerd, b, "cat /dev/shm/note") == "from-a\n"
    # the bridge network: the pod's address, the gateway answers
    assert str(ip) in _sh(containerd, b, "ip -4 addr show eth0")
    gw = str(next(net.hosts()))
    _sh(containerd, a, f"ping -c 1 -W 5 {gw} >/dev/null")

    # streaming exec with a tty, as `kubectl exec -it`
    url = containerd.rt.Exec(pb.ExecRequest(container_id=a, cmd=["sh", "-c",
                                            "tty; read line; echo got-$line"],
                                            tty=True, stdin=True, stdout=True),
                             timeout=30).url
    out = asyncio.run(_exec_stream(url, b"hello\n", b"got-hello"))
    assert b"/dev/pts/" in out and b"got-hello" in out, out

    for c in (a, b):
        containerd.rt.StopContainer(pb.StopContainerRequest(container_id=c, timeout=0),
                                    timeout=60)
    containerd.remove_pod(pod)   # removes its containers too
    assert containerd.leftovers() == {}
