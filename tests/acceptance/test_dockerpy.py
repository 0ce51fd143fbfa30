"""docker-py's containers API against `dockyard daemon`."""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = pytest.mark.slow


def test_dockerpy_containers(daemon):
    import docker

    cl = daemon.client()
    assert cl.containers.run("busybox", ["echo", "hello"], remove=True) == b"hello\n"
    with pytest.raises(docker.errors.ContainerError) as ei:
        cl.containers.run("busybox", ["sh", "-c", "exit 4"], remove=True)
    assert ei.value.exit_status == 4
    name = "py-" + uuid.uuid4().hex[:6]
    c = cl.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo l$i; sleep 0.2; done; sleep 1000"],
                          detach=True, name=name, labels={"py": "1"}, environment={"K": "v"})
    assert c.name == name and c.status in ("created", "running")
    c.reload()
    assert c.status == "running" and c.attrs["Config"]["Env"][-1] == "K=v" or "K=v" in c.attrs["Config"]["Env"]
    chunks = []
    for chunk in c.logs(stream=True, follow=True):
        chunks.append(chunk)
        if b"l3" in b"".join(chunks):
            break
    assert b"".join(chunks).startswith(b"l1\nl2\nl3")
    r = c.exec_run(["sh", "-c", "echo $K; exit 2"])
    assert (r.exit_code, r.output) == (2, b"v\n")
    r = c.exec_run("pwd", workdir="/tmp", user="1000")
    assert r.output == b"/tmp\n"
    top = c.top()
    assert "PID" in top["Titles"] and top["Processes"]
    c.pause()
    c.reload()
    assert c.status == "paused"
    c.unpause()
    st = c.stats(stream=False)
    assert st["memory_stats"]["usage"] > 0 and "cpu_stats" in st
    assert [x.name for x in cl.containers.list(filters={"label": "py=1"})] == [name]
    assert cl.containers.get(name).id == c.id
    c.update(mem_limit="100m", memswap_limit="200m")
    c.reload()
    assert c.attrs["HostConfig"]["Memory"] == 100 * 1024 * 1024
    c.rename(name + "-r")
    c.reload()
    assert c.name == name + "-r"
    (c.exec_run(["sh", "-c", "echo x > /added"]))
    diff = c.diff()
    assert {"Path": "/added", "Kind": 1} in diff
    img = c.commit(repository="pycommit", tag="t1", message="m", author="a")
    assert img.attrs["Comment"] == "m" and "pycommit:t1" in img.tags
    data = b"".join(c.export())
    assert len(data) > 100_000
    c.kill(signal="SIGKILL")
    assert c.wait()["StatusCode"] == 137
    c.remove()
    # create / start / wait / stop / remove
    c2 = cl.containers.create("busybox", ["sh", "-c", "trap 'exit 11' TERM; while true; do sleep 0.1; done"])
    c2.start()
    time.sleep(0.5)
    c2.stop(timeout=5)
    assert c2.wait()["StatusCode"] == 11
    c2.remove(v=True)
    with pytest.raises(docker.errors.NotFound):
        cl.containers.get(c2.id)
    out = cl.containers.run("busybox", ["cat"], stdin_open=True, remove=True, detach=False) \
        if False else None  # docker-py cannot feed stdin to run(); exec/attach cover it
    cl.images.remove("pycommit:t1")
    cl.close()
