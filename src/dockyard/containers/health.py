"""Health checks, the daemon's side: the merged config, the probe's process handed to
the supervisor at each start (the supervisor runs the probes: supervisor/health.py),
the results it pushes kept as ``.State.Health``, ``health_status`` events, and what
``ps`` shows and filters on."""

from __future__ import annotations

import os

from dockyard import errors
from dockyard.containers.common import log
from dockyard.oci import spec as ocispec

_TIMING = ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries")
# dockerd's minimums (daemon/container.go verifyContainerSettings)
_MIN_DURATION = 1_000_000   # 1ms


def merge(user: dict | None, image: dict | None) -> dict | None:
    """Config.Healthcheck as dockerd merges it with the image's (daemon/commit.go)."""
    if not user:
        return dict(image) if image else None
    out = dict(user)
    image = image or {}
    if not out.get("Test"):
        out["Test"] = image.get("Test")
    for k in _TIMING:
        if not out.get(k) and image.get(k):
            out[k] = image[k]
    return out


def validate(cfg: dict | None) -> None:
    """dockerd's create-time checks, with its words."""
    if not cfg:
        return
    for k, what in (("Interval", "Interval"), ("Timeout", "Timeout"),
                    ("StartPeriod", "StartPeriod"), ("StartInterval", "StartInterval")):
        v = int(cfg.get(k) or 0)
        if v < 0 or 0 < v < _MIN_DURATION:
            raise errors.InvalidParameter(f"{what} in Healthcheck cannot be less than 1ms")
    if int(cfg.get("Retries") or 0) < 0:
        raise errors.InvalidParameter("Retries in Healthcheck cannot be negative")
    test = cfg.get("Test") or []
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise errors.InvalidParameter(f"unknown type of healthcheck: {test[0]!r}")


def probe_args(cfg: dict | None, shell: list[str] | None = None) -> list[str] | None:
    """The probe's argv, or None: no check (none configured, ``NONE``, or empty)."""
    test = (cfg or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:]) or None
    if test[0] == "CMD-SHELL":
        if len(test) < 2:
            return None
        return list(shell or ["/bin/sh", "-c"]) + [" ".join(test[1:])]
    return None


def status_suffix(c: dict) -> str:
    """``ps``'s ``(healthy)``, ``(health: starting)``, ``(unhealthy)`` for a running one."""
    h = c["State"].get("Health")
    if not h or not c["State"]["Running"] or c["State"]["Paused"]:
        return ""
    status = h.get("Status") or "starting"
    return " (health: starting)" if status == "starting" else f" ({status})"


def filter_status(c: dict) -> str:
    """The value ``ps --filter health=`` matches: starting, healthy, unhealthy or none."""
    h = c["State"].get("Health")
    return (h or {}).get("Status") or "none"


class HealthChecks:
    """Part of ContainerService (containers/service.py): see the module's docstring."""

    def _health_process(self, c: dict) -> dict | None:
        args = probe_args(c["Config"].get("Healthcheck"), c["Config"].get("Shell"))
        if args is None:
            return None
        host = c["HostConfig"]
        rootfs = os.path.join(self._dir(c["Id"]), "rootfs")
        user = ocispec.resolve_user(c["Config"].get("User") or "", rootfs, host.get("GroupAdd"))
        caps = ocispec.capabilities(host.get("CapAdd"), host.get("CapDrop"),
                                    bool(host.get("Privileged")))
        env = ocispec.merge_env(c["Config"].get("Env"), None, c["Config"]["Hostname"], False)
        return {"terminal": False, "args": args, "env": env,
                "cwd": c["Config"].get("WorkingDir") or "/", "user": user,
                "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                "rlimits": ocispec.rlimits(host),
                "noNewPrivileges": ocispec.security_options(
                    host.get("SecurityOpt"))["no_new_privs"]}

    async def _start_health(self, c: dict) -> None:
        """After a start: State.Health starts over (its log kept) and the supervisor
        probes from now on."""
        try:
            process = self._health_process(c)
        except ocispec.SpecError as e:
            log.warning("health check of %s not started: %s", c["Id"][:12], e)
            process = None
        if process is None:
            c["State"].pop("Health", None)
            return
        old = c["State"].get("Health") or {}
        c["State"]["Health"] = {"Status": "starting", "FailingStreak": 0,
                                "Log": list(old.get("Log") or [])}
        runtime = self.runtimes[c["HostConfig"]["Runtime"]]
        try:
            await self.sup.request("health", id=c["Id"], health=c["Config"]["Healthcheck"],
                                   process=process, runtime=runtime,
                                   runtime_root=self.runtime_root,
                                   forkserver=self._forkserver(runtime),
                                   state=c["State"]["Health"])
        except errors.DockyardError as e:
            log.warning("health check of %s not started: %s", c["Id"][:12], e)

    async def _pause_health(self, c: dict, paused: bool) -> None:
        """``pause``/``unpause``: the supervisor stops or resumes the probes; a paused
        container's health shows unhealthy (no event), as dockerd's does."""
        if not c["State"].get("Health"):
            return
        try:
            out = await self.sup.request("health_pause", id=c["Id"], paused=paused)
        except errors.DockyardError as e:
            log.warning("health check of %s not %s: %s", c["Id"][:12],
                        "paused" if paused else "resumed", e)
            out = {}
        if paused:
            c["State"]["Health"] = out.get("health") or {**c["State"]["Health"],
                                                         "Status": "unhealthy"}

    def _on_health(self, cid: str, health: dict, changed: bool, probe: bool = False) -> None:
        """A probe's result, pushed by the supervisor."""
        c = self.containers.get(cid)
        if c is None or not c["State"]["Running"]:
            return
        if probe and c["State"]["Paused"]:
            return   # one sent before the pause reached the supervisor: dropped there too
        c["State"]["Health"] = health
        if probe:   # each probe is an exec to dockerd's event watchers
            import secrets

            args = probe_args(c["Config"].get("Healthcheck"), c["Config"].get("Shell")) or []
            attrs = {**self._attrs(c), "execID": secrets.token_hex(32)}
            cmd = " ".join(args)
            self.emit("container", f"exec_create: {cmd}", cid, attrs)
            self.emit("container", f"exec_start: {cmd}", cid, attrs)
            last = (health.get("Log") or [{}])[-1]
            self.emit("container", "exec_die", cid,
                      {**attrs, "exitCode": str(last.get("ExitCode", -1))})
        if changed:
            self._save(c)
            self.emit("container", f"health_status: {health['Status']}", cid, self._attrs(c))

    def _adopt_health(self, tasks: dict) -> None:
        """At boot or after a lost event stream: the supervisor's latest states."""
        for cid, t in tasks.items():
            if t.get("health") and cid in self.containers:
                c = self.containers[cid]
                old = (c["State"].get("Health") or {}).get("Status")
                self._on_health(cid, t["health"], t["health"]["Status"] != old)
