"""Exec: create, start (through the supervisor), resize, wait, inspect."""

from __future__ import annotations

import asyncio
import os
import secrets

from dockyard import errors
from dockyard.oci import spec as ocispec


class Execs:
    """Part of ContainerService (containers/service.py): see the module's docstring."""

    # ---- exec --------------------------------------------------------------------------
    async def exec_create(self, ref: str, body: dict) -> str:
        c = self.get(ref)
        if not c["State"]["Running"]:
            raise errors.Conflict(f"Container {c['Id']} is not running")
        if c["State"]["Paused"]:
            raise errors.Conflict(f"Container {ref} is paused, unpause the container before exec")
        cmd = body.get("Cmd")
        if not cmd:
            raise errors.InvalidParameter("No exec command specified")
        eid = secrets.token_hex(32)
        self.execs[eid] = {
            "ID": eid, "Running": False, "ExitCode": None, "ProcessConfig": {
                "tty": bool(body.get("Tty")), "entrypoint": cmd[0], "arguments": cmd[1:],
                "privileged": bool(body.get("Privileged")), "user": body.get("User") or ""},
            "OpenStdin": bool(body.get("AttachStdin")), "OpenStderr": bool(body.get("AttachStderr")),
            "OpenStdout": bool(body.get("AttachStdout")), "CanRemove": False,
            "ContainerID": c["Id"], "DetachKeys": body.get("DetachKeys") or "", "Pid": 0,
            "_body": body, "_done": asyncio.Event(), "_started": asyncio.Event(),
        }
        c["ExecIDs"] = (c.get("ExecIDs") or []) + [eid]
        self.emit("container", f"exec_create: {' '.join(cmd)}", c["Id"],
                  {**self._attrs(c), "execID": eid})
        return eid

    def exec_inspect(self, eid: str) -> dict:
        ex = self.execs.get(eid)
        if ex is None:
            raise errors.NotFound(f"No such exec instance: {eid}")
        return {k: v for k, v in ex.items() if not k.startswith("_")}

    async def exec_start(self, eid: str, detach: bool = False,
                         console_size: list[int] | None = None):
        """Start an exec; attached: returns (tty, reader, writer) of its stream.
        ``console_size``: [height, width] from the start request (over the create's)."""
        ex = self.execs.get(eid)
        if ex is None:
            raise errors.NotFound(f"No such exec instance: {eid}")
        if ex["Running"] or ex["ExitCode"] is not None:
            raise errors.Conflict(f"Error: Exec command {eid} has already run")
        c = self.get(ex["ContainerID"])
        if not c["State"]["Running"]:
            raise errors.Conflict(f"Container {c['Id']} is not running")
        body = ex["_body"]
        rootfs = os.path.join(self._dir(c["Id"]), "rootfs")
        try:
            user = ocispec.resolve_user(body.get("User") or c["Config"].get("User") or "", rootfs)
            host = c["HostConfig"]
            caps = ocispec.capabilities(host.get("CapAdd"), host.get("CapDrop"),
                                        bool(host.get("Privileged") or body.get("Privileged")))
        except ocispec.SpecError as e:
            # the exec never ran: dockerd reports 126 in its inspect
            ex["Running"], ex["ExitCode"] = False, 126
            ex["_done"].set()
            ex["_started"].set()
            raise errors.InvalidParameter(str(e)) from None
        tty = bool(body.get("Tty"))
        env = ocispec.merge_env(c["Config"].get("Env"), body.get("Env"), c["Config"]["Hostname"], tty)
        process = {"terminal": tty, "args": body["Cmd"], "env": env,
                   "cwd": body.get("WorkingDir") or c["Config"].get("WorkingDir") or "/",
                   "user": user,
                   "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                   "rlimits": ocispec.rlimits(host),   # the container's, as dockerd's exec
                   "noNewPrivileges": ocispec.security_options(
                       host.get("SecurityOpt"))["no_new_privs"]}
        cs = console_size or body.get("ConsoleSize")
        if tty and isinstance(cs, list) and len(cs) == 2 and all(isinstance(v, int) and v > 0 for v in cs):
            process["consoleSize"] = {"height": cs[0], "width": cs[1]}  # the CLI's pty, from the start
        ex["Running"] = True
        runtime = self.runtimes[c["HostConfig"]["Runtime"]]
        fields = dict(id=eid, container_id=c["Id"], process=process,
                      runtime=runtime, runtime_root=self.runtime_root,
                      forkserver=self._forkserver(runtime),
                      tty=tty, open_stdin=bool(body.get("AttachStdin")))
        self.emit("container", f"exec_start: {' '.join(body['Cmd'])}", c["Id"],
                  {**self._attrs(c), "execID": eid})
        try:
            if detach:
                reply = await self.sup.request("exec", **fields)
                from dockyard import crashpoints

                crashpoints.at("exec.started")
                ex["Pid"] = reply["pid"]
                ex["_started"].set()
                return None
            streams = dict(stdin=bool(body.get("AttachStdin")),
                           stdout=bool(body.get("AttachStdout", True)),
                           stderr=bool(body.get("AttachStderr", True)))
            reply, reader, writer = await self.sup.open_stream("exec", attach=True, **streams,
                                                               **fields)
        except errors.DockyardError as e:
            ex["Running"] = False
            ex["ExitCode"] = 126   # dockerd's for an exec that could not start (not found too)
            ex["_done"].set()
            ex["_started"].set()
            raise
        ex["Pid"] = reply["pid"]
        ex["_started"].set()

        def exited(reply: dict) -> None:   # it ended while its supervisor was replaced
            if reply.get("exit_code") is not None:
                self._exec_exited(eid, reply["exit_code"])

        # re-attached across a restart of the supervisor (containers/reattach.py)
        stream = self._reattaching(c, eid, streams, reply, reader, writer, exited)
        return tty, stream, stream

    def _exec_exited(self, eid: str, code: int) -> None:
        """An exec's process ended (the supervisor's event, its task list, or its answer
        to a re-attach): recorded once, with dockerd's exec_die event."""
        ex = self.execs.get(eid)
        if ex is None or ex["_done"].is_set():
            return
        ex["Running"], ex["ExitCode"] = False, code
        ex["_done"].set()
        c = self.containers.get(ex["ContainerID"])
        if c:
            self.emit("container", "exec_die", c["Id"],
                      {**self._attrs(c), "execID": eid, "exitCode": str(code)})

    async def exec_resize(self, eid: str, height: int, width: int) -> None:
        ex = self.execs.get(eid)
        if ex is None:
            raise errors.NotFound(f"No such exec instance: {eid}")
        # The CLI resizes as soon as it has the 101, which may be before the process
        # exists: wait for the start, as dockerd does.
        try:
            await asyncio.wait_for(ex["_started"].wait(), 10)
        except asyncio.TimeoutError:
            raise errors.Conflict(f"exec {eid} is not running") from None
        if not ex["Running"]:
            return
        await self.sup.request("resize", id=eid, height=height, width=width)

    async def exec_wait(self, eid: str) -> int:
        ex = self.execs[eid]
        await ex["_done"].wait()
        return ex["ExitCode"]
