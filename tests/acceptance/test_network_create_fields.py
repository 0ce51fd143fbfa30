"""POST /networks/create: fields this daemon does not implement are refused (dockerd's
words and status where dockerd refuses too), never accepted and dropped; --attachable
is kept and shown."""

from __future__ import annotations

import json
import uuid

import pytest

from acceptance.harness import running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def netd(tmp_path_factory):
    with running(tmp_path_factory.mktemp("dkynetf"), network=True) as d:
        yield d


def _name() -> str:
    return f"nf-{uuid.uuid4().hex[:6]}"


def _networks(d) -> set[str]:
    return set(d.out("network", "ls", "--format", "{{.Name}}").split())


def test_attachable_is_kept(netd):
    name = _name()
    netd.docker("network", "create", "--attachable", name)
    try:
        assert json.loads(netd.out("network", "inspect", name))[0]["Attachable"] is True
    finally:
        netd.docker("network", "rm", name, check=False)


@pytest.mark.parametrize("extra, status, words", [
    ({"Scope": "swarm"}, 403, "cannot create a swarm scoped network when swarm is not active"),
    ({"Ingress": True}, 403, "Ingress network can only be global scope network"),
    ({"ConfigOnly": True}, 400, "ConfigOnly: Dockyard does not support"),
    ({"ConfigFrom": {"Network": "other"}}, 400, "ConfigFrom: Dockyard does not support"),
    ({"IPAM": {"Driver": "foo"}}, 404, 'plugin "foo" not found'),
    ({"IPAM": {"Options": {"a": "b"}}}, 400, "Dockyard does not support them"),
    ({"IPAM": {"Config": [{"Subnet": "10.213.7.0/24",
                           "AuxiliaryAddresses": {"h": "10.213.7.5"}}]}}, 400,
     "IPAM AuxiliaryAddresses: Dockyard does not support them"),
    ({"Options": {"com.docker.network.bridge.inhibit_ipv4": "true"}}, 400,
     "network option com.docker.network.bridge.inhibit_ipv4: Dockyard does not support it"),
    ({"EnableIPv4": False}, 400, "Dockyard does not support IPv6-only networks"),
])
def test_unsupported_fields_are_refused(netd, extra, status, words):
    import docker

    api = netd.client().api
    before = _networks(netd)
    with pytest.raises(docker.errors.APIError) as e:
        api._raise_for_status(api._post_json(api._url("/networks/create"),
                                             data={"Name": _name(), **extra}))
    assert e.value.status_code == status and words in str(e.value), str(e.value)
    assert _networks(netd) == before


def test_zero_values_and_known_options_pass(netd):
    api = netd.client().api
    name = _name()
    r = api._post_json(api._url("/networks/create"), data={
        "Name": name, "Scope": "local", "Ingress": False, "ConfigOnly": False,
        "ConfigFrom": {"Network": ""}, "Attachable": False, "EnableIPv4": True,
        "IPAM": {"Driver": "default", "Options": {}, "Config": []},
        "Options": {"com.docker.network.bridge.enable_icc": "false", "my.own": "x"}})
    api._raise_for_status(r)
    try:
        info = json.loads(netd.out("network", "inspect", name))[0]
        assert info["Options"] == {"com.docker.network.bridge.enable_icc": "false",
                                   "my.own": "x"}
        assert info["Attachable"] is False
    finally:
        netd.docker("network", "rm", name, check=False)


def test_endpoint_driver_opts_are_refused(netd):
    import docker

    api = netd.client().api
    net = _name()
    netd.docker("network", "create", net)
    try:
        with pytest.raises(docker.errors.APIError) as e:
            api._raise_for_status(api._post_json(api._url("/containers/create"), data={
                "Image": "busybox", "HostConfig": {"NetworkMode": net},
                "NetworkingConfig": {"EndpointsConfig": {net: {"DriverOpts": {"a": "b"}}}}}))
        assert e.value.status_code == 400 and "endpoint DriverOpts" in str(e.value)
        cid = netd.out("create", "busybox", "true").strip()
        try:
            with pytest.raises(docker.errors.APIError) as e:
                api._raise_for_status(api._post_json(
                    api._url(f"/networks/{net}/connect"),
                    data={"Container": cid, "EndpointConfig": {"DriverOpts": {"a": "b"}}}))
            assert e.value.status_code == 400 and "endpoint DriverOpts" in str(e.value)
            # empty: as compose sends them
            api._raise_for_status(api._post_json(
                api._url(f"/networks/{net}/connect"),
                data={"Container": cid, "EndpointConfig": {"DriverOpts": {}}}))
        finally:
            netd.docker("rm", "-f", cid, check=False)
    finally:
        netd.docker("network", "rm", net, check=False)


def test_config_mac_address_is_applied(netd):
    """docker-py (and API clients before 1.44) give the MAC in Config.MacAddress."""
    net = _name()
    netd.docker("network", "create", net)
    try:
        c = netd.client().containers.run("busybox", "cat /sys/class/net/eth0/address",
                                         network=net, mac_address="02:42:ac:11:00:99",
                                         detach=True)
        try:
            c.wait(timeout=30)
            assert c.logs().decode().strip() == "02:42:ac:11:00:99"
            assert c.attrs["Config"]["MacAddress"] == "02:42:ac:11:00:99"
        finally:
            c.remove(force=True)
    finally:
        netd.docker("network", "rm", net, check=False)
