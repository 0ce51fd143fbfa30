"""Running containers keep their addresses, published ports and names over a daemon restart."""

import signal

import pytest

from acceptance.harness import running
from acceptance_network.conftest import _close
from acceptance_network.util import free_port, http_get, inspect, uid, web

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("network")]


@pytest.fixture
def rdaemon(tmp_path):
    with running(tmp_path, close=_close, network=True) as d:
        yield d


def _state(d, names, net):
    out = {}
    for n in names:
        [c] = inspect(d, "container", n)
        out[n] = (c["State"]["Pid"], c["NetworkSettings"]["Networks"][net]["IPAddress"],
                  c["NetworkSettings"]["Networks"][net]["MacAddress"], c["NetworkSettings"]["Ports"])
    return out


def _check(d, srv, cl, hp, net, before):
    assert _state(d, [srv, cl], net) == before
    assert http_get(f"http://127.0.0.1:{hp}/").strip() == "survives"
    assert d.out("exec", cl, "wget", "-qO-", f"http://{srv}/") == "survives"
    assert before[srv][1] in d.out("exec", cl, "nslookup", srv)
    assert before[srv][1] in d.out("exec", srv, "ip", "-4", "addr", "show", "eth0")


def test_restart_sigterm_and_kill9(rdaemon):
    d = rdaemon
    net, srv, cl, hp = uid(), uid("s"), uid("c"), free_port()
    d.out("network", "create", net)
    web(d, srv, "--network", net, "-p", f"127.0.0.1:{hp}:80", text="survives")
    d.out("run", "-d", "--name", cl, "--network", net, "busybox", "sleep", "600")
    http_get(f"http://127.0.0.1:{hp}/")
    before = _state(d, [srv, cl], net)
    _check(d, srv, cl, hp, net, before)

    # SIGTERM: the daemon goes, the containers stay (live restore), and come back as they were
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(30)
    # while the daemon is down, the published TCP port is served by the kernel (DNAT)
    assert http_get(f"http://127.0.0.1:{hp}/").strip() == "survives"
    d.start()
    _check(d, srv, cl, hp, net, before)
    # a new container gets a fresh address, not one of the restored ones
    n3 = d.out("run", "-d", "--network", net, "busybox", "sleep", "60")
    ip3 = inspect(d, "container", n3)[0]["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert ip3 not in (before[srv][1], before[cl][1])
    d.docker("rm", "-f", n3)

    # kill -9: nothing cleaned up by the daemon; the restore must still agree
    d.kill9()
    assert http_get(f"http://127.0.0.1:{hp}/").strip() == "survives"
    d.start()
    _check(d, srv, cl, hp, net, before)
    # the port can be released and taken again after the restore
    d.docker("rm", "-f", srv)
    other = uid()
    web(d, other, "-p", f"127.0.0.1:{hp}:80", text="again")
    assert http_get(f"http://127.0.0.1:{hp}/").strip() == "again"
