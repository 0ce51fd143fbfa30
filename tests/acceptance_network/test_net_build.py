"""Build RUN steps on the default bridge and on a user network (networkmode)."""

from __future__ import annotations

import json
import uuid

import pytest

from acceptance.test_build_cli import build

pytestmark = pytest.mark.slow


def test_build_network_modes(ndaemon, tmp_path):
    d = ndaemon
    net = f"bn-{uuid.uuid4().hex[:6]}"
    d.docker("network", "create", "--subnet", "10.231.7.0/24", net)
    try:
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            "FROM busybox\nRUN ip -4 -o addr show eth0 | awk '{print $4}' > /addr\n")
        tag = f"bnet-{uuid.uuid4().hex[:6]}"
        build(d, ctx, "-t", tag, "--network", net)
        assert d.out("run", "--rm", tag, "cat", "/addr").startswith("10.231.7.")
        build(d, ctx, "-t", tag, "--no-cache")       # the default bridge
        subnet = json.loads(d.out("network", "inspect", "bridge"))[0]["IPAM"]["Config"][0]
        prefix = subnet["Subnet"].rsplit(".", 2)[0]
        assert d.out("run", "--rm", tag, "cat", "/addr").startswith(prefix + ".")
        r = build(d, ctx, "--network", "no-such-net", "--no-cache", check=False)
        assert r.returncode != 0 and "no-such-net" in r.stderr
        assert d.out("ps", "-aq") == ""
    finally:
        d.docker("network", "rm", net, check=False)
