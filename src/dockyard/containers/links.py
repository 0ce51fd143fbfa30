"""Legacy links (``--link name:alias``, compose's ``links:``) as dockerd makes them.

On the default bridge: HostConfig.Links stored as ``/target:/container/alias``, and at
each start an /etc/hosts line for the target (``IP alias hostname name``) and the
``ALIAS_NAME``, ``ALIAS_PORT*`` and ``ALIAS_ENV_*`` variables (daemon/links.go).

On a user network (Debian's dockerd 20.10, checked side by side): HostConfig.Links is
dropped at create (inspect shows null, the target need not exist); the links of
``EndpointsConfig[network].Links`` (where the docker CLI and ``network connect --link``
put them) become DNS aliases the embedded DNS answers for the linking container only,
resolved to the target's address on that network at each query; no /etc/hosts line, no
variables. Pure functions over records; the service looks the containers up."""

from __future__ import annotations

from typing import Callable

from dockyard import errors


def parse(link: str) -> tuple[str, str]:
    """``name[:alias]`` or the stored ``/name:/container/alias`` -> (name, alias)."""
    name, _, alias = link.partition(":")
    name = name.strip("/")
    alias = alias.rsplit("/", 1)[-1] if alias else name
    if not name or not alias:
        raise errors.InvalidParameter(f"invalid link: {link!r}")
    return name, alias


def user_defined(mode: str | None) -> bool:
    """dockerd's NetworkMode.IsUserDefined."""
    mode = mode or "default"
    return mode not in ("default", "bridge", "host", "none") and not mode.startswith("container:")


def endpoint_links(links: list[str] | None) -> dict[str, str]:
    """An endpoint's Links -> {alias: target name}, parsed as dockerd's opts.ParseLink
    (at start or connect: a bad one fails there, not at create)."""
    out: dict[str, str] = {}
    for val in links or []:
        if not val:
            raise errors.InvalidParameter("empty string specified for links")
        parts = val.split(":")
        if len(parts) > 2:
            raise errors.InvalidParameter(f"bad format for links: {val}")
        if len(parts) == 1:
            name = alias = val
        elif parts[0].startswith("/"):
            name, alias = parts[0][1:], parts[1].rsplit("/", 1)[-1]
        else:
            name, alias = parts
        out[alias] = name
    return out


def normalize(links: list[str] | None, container_name: str,
              lookup: Callable[[str], dict]) -> list[str] | None:
    """At create: every target must exist; stored as dockerd shows them."""
    if not links:
        return links
    out = []
    for link in links:
        name, alias = parse(link)
        try:
            target = lookup(name)
        except errors.NotFound as e:   # a 400: a 404 would make the CLI pull the image
            raise errors.InvalidParameter(f"could not get container for {name}: {e}") from None
        out.append(f"{target['Name']}:{container_name}/{alias}")
    return out


def resolve(c: dict, lookup: Callable[[str], dict]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """At start: (environment variables, /etc/hosts entries) of the container's links.
    Each target must be running, with an address on the default bridge."""
    env: list[str] = []
    hosts: list[tuple[str, list[str]]] = []
    for link in c["HostConfig"].get("Links") or []:
        name, alias = parse(link)
        try:
            target = lookup(name)
        except errors.NotFound:
            raise errors.NotFound(f"could not get container for {name}") from None
        if not target["State"]["Running"]:
            raise errors.Conflict(f"Cannot link to a non running container: {target['Name']} "
                                  f"AS {c['Name']}/{alias}")
        nets = target["NetworkSettings"].get("Networks") or {}
        ip = (nets.get("bridge") or {}).get("IPAddress") or target["NetworkSettings"].get("IPAddress")
        if not ip:
            raise errors.InvalidParameter(
                f"Cannot link to {target['Name']}, as it does not belong to the default network")
        tname = target["Name"].lstrip("/")
        names = [alias, target["Config"].get("Hostname") or target["Id"][:12]]
        if alias != tname:
            names.append(tname)
        hosts.append((ip, names))
        env += link_env(alias, f"{c['Name']}/{alias}", ip, target["Config"])
    return env, hosts


def link_env(alias: str, full_name: str, ip: str, child_config: dict) -> list[str]:
    prefix = alias.upper().replace("-", "_")
    env = [f"{prefix}_NAME={full_name}"]
    ports = sorted((_port_key(p) for p in (child_config.get("ExposedPorts") or {})))
    for i, (num, proto) in enumerate(ports):
        if i == 0:
            env.append(f"{prefix}_PORT={proto}://{ip}:{num}")
        p = f"{prefix}_PORT_{num}_{proto.upper()}"
        env += [f"{p}={proto}://{ip}:{num}", f"{p}_ADDR={ip}", f"{p}_PORT={num}",
                f"{p}_PROTO={proto}"]
    for item in child_config.get("Env") or []:
        k, sep, v = item.partition("=")
        if sep and k not in ("HOME", "PATH"):
            env.append(f"{prefix}_ENV_{k}={v}")
    return env


def _port_key(p: str) -> tuple[int, str]:
    num, _, proto = p.partition("/")
    return int(num), proto or "tcp"


def remove(parent: dict, link_name: str) -> bool:
    """``DELETE /containers/{/parent/alias}?link=1``: drop that link; True if found."""
    links = parent["HostConfig"].get("Links") or []
    keep = [ln for ln in links if ln.partition(":")[2] != link_name]
    if len(keep) == len(links):
        return False
    parent["HostConfig"]["Links"] = keep or None
    return True
