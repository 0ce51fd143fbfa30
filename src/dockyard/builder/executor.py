"""The executor: runs a :class:`~dockyard.builder.planner.Plan` with the image and container
services' public methods, and reports as dockerd's legacy builder does.

* config-only steps (ENV, CMD, LABEL, ...) become images with no new layer
  (``ImageService.derive_image``: an ``empty_layer`` history entry);
* RUN: a container on the previous image (entrypoint cleared, the step's Env, User,
  WorkingDir, network mode), its output streamed as it is logged, then committed
  (``commit_rootfs``) — or, if it changed nothing, an empty layer as dockerd does;
* COPY/ADD/WORKDIR: no container: a snapshot on the previous image is mounted once under
  the builder's tmp directory and the files are written straight into it (``copier``:
  fd-based, nothing followed out of the root; a ``--from`` image is mounted read-only
  beside it); the snapshot then becomes the layer as it is (``ImageService.commit_layer``:
  its tar written from one walk, never unpacked again). A COPY from the context is
  written ahead, while the steps before it run, into a snapshot on nothing, and its
  layer tar below the destination is made then too (``_Ahead``).

Every step's image is recorded in the cache under its key; a step whose key is cached is
not run. Stages of one dependency level run concurrently; their output is shown stage by
stage in Dockerfile order. Intermediate containers are removed (``rm``); a failing RUN's
container stays unless ``forcerm`` (dockerd's rule).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from dockyard import errors
from dockyard.builder import context as bctx
from dockyard.builder.boot import LABEL
from dockyard.builder.cache import BuildCache
from dockyard.builder.planner import Plan, Stage, Step
from dockyard.images.service import short_id

Emit = Callable[[dict], None]


class StepFailed(errors.DockyardError):
    status = 500

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Options:
    nocache: bool = False
    rm: bool = True
    forcerm: bool = False
    quiet: bool = False
    host: dict = field(default_factory=dict)   # every RUN container's HostConfig
    cache_from: tuple[str, ...] = ()           # images whose layers may stand for steps
    epoch: int | None = None                   # SOURCE_DATE_EPOCH (from the plan)
    shown: int = 0                             # Step lines 1..shown already sent
    after_step: dict = field(default_factory=dict)   # step number -> messages shown under
                                                     # its Step line (a base's pull)


class _Ordered:
    """Stage outputs in Dockerfile order: the current stage streams live, later ones of
    the same level are held until it is done."""

    def __init__(self, emit: Emit, order: list[int]) -> None:
        self.emit = emit
        self.order = order
        self.pos = 0
        self.held: dict[int, list[dict]] = {i: [] for i in order}
        self.done: set[int] = set()

    def write(self, stage: int, msg: dict) -> None:
        if self.pos < len(self.order) and self.order[self.pos] == stage:
            self.emit(msg)
        else:
            self.held[stage].append(msg)

    def finish(self, stage: int) -> None:
        self.done.add(stage)
        while self.pos < len(self.order) and self.order[self.pos] in self.done:
            self.pos += 1
            if self.pos < len(self.order):
                nxt = self.order[self.pos]
                for m in self.held[nxt]:
                    self.emit(m)
                self.held[nxt] = []

    def flush_all(self) -> None:
        for i in self.order[self.pos:]:
            for m in self.held[i]:
                self.emit(m)
            self.held[i] = []


class Executor:
    def __init__(self, images: Any, containers: Any, cache: BuildCache, tmp_dir: str) -> None:
        self.images = images
        self.containers = containers
        self.cache = cache
        self.tmp_dir = tmp_dir

    async def run(self, plan: Plan, ctx: bctx.Context | None, opts: Options, emit: Emit) -> str:
        """Build; return the final image ID."""
        import dataclasses
        if plan.epoch is not None:
            opts = dataclasses.replace(opts, epoch=plan.epoch)
        if opts.cache_from:
            opts = dataclasses.replace(opts, cache_from=tuple(
                await asyncio.to_thread(self._cache_sources, opts.cache_from)))
        order = [s.index for s in plan.stages]
        out = _Ordered(emit, order)
        total = plan.total
        for m in plan.meta:
            if m.number > opts.shown:
                emit({"stream": f"Step {m.number}/{total} : {m.text}\n"})
        results: dict[int, str] = {}
        by_index = {s.index: s for s in plan.stages}
        ahead = _Ahead(self, plan, ctx, opts)
        try:
            await ahead.start()
            for level in plan.levels():
                tasks = [asyncio.ensure_future(self._stage(by_index[i], results, ctx, opts,
                                                           out, total, ahead))
                         for i in level]
                try:
                    done = await asyncio.gather(*tasks)
                except BaseException:
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    out.flush_all()
                    raise
                for i, image_id in zip(level, done):
                    results[i] = image_id
        finally:
            await asyncio.shield(ahead.close())
        return results[plan.stages[plan.target].index]

    async def _stage(self, stage: Stage, results: dict[int, str], ctx, opts: Options,
                     out: _Ordered, total: int, ahead: "_Ahead") -> str:
        def say(text: str) -> None:
            out.write(stage.index, {"stream": text})

        image = ""
        try:
            steps = stage.steps
            for i, step in enumerate(steps):
                # the base's ONBUILD triggers belong to its FROM step: the image ID is
                # shown once, after the last of them (as dockerd)
                more = i + 1 < len(steps) and steps[i + 1].trigger > 0
                if step.trigger:
                    if step.text:
                        say(f"{step.text}\n")
                else:
                    if step.number > opts.shown:
                        say(f"Step {step.number}/{total} : {step.text}\n")
                    for msg in opts.after_step.pop(step.number, ()):
                        out.write(stage.index, msg)
                if step.kind == "from":
                    if step.base is None and step.base_stage is None:
                        image = ""     # scratch
                    else:
                        image = step.base if step.base else results[step.base_stage]
                    if image and not more:
                        say(f" ---> {short_id(image)}\n")
                    continue
                cached = None if opts.nocache else await asyncio.to_thread(self.cache.get,
                                                                           step.key)
                if cached is None and opts.cache_from and not opts.nocache:
                    cached = await asyncio.to_thread(
                        self.images.cached_step, image or None, list(opts.cache_from),
                        step.created_by, json.loads(step.config))
                    if cached:
                        await asyncio.to_thread(self.cache.put, step.key, cached)
                if cached:
                    say(" ---> Using cache\n")
                    image = cached
                else:
                    image = await self._step(step, image, results, ctx, opts, say, ahead)
                    await asyncio.to_thread(self.cache.put, step.key, image)
                if not more:
                    say(f" ---> {short_id(image)}\n")
        finally:
            out.finish(stage.index)
        if not image:
            raise errors.InvalidParameter("No image was generated. Is your Dockerfile empty?")
        return image

    # -- one step --------------------------------------------------------------------------
    async def _step(self, step: Step, parent: str, results, ctx, opts: Options, say,
                    ahead: "_Ahead") -> str:
        config = json.loads(step.config)
        if step.kind == "config" or (step.kind == "copy" and step.copy.workdir_only):
            # dockerd's legacy builder commits these through a container of their own and
            # says so; here they need none: the lines carry a step ID no container has
            import secrets
            sid = secrets.token_hex(6)
            say(f" ---> Running in {sid}\n")
            if step.kind == "config":
                image = await asyncio.to_thread(
                    self.images.derive_image, parent or None, config, (), step.created_by,
                    "", step.author, None, None, opts.epoch,
                    container_config(step, parent, config))
            else:
                image = await self._copy(step, parent, config, results, ctx, opts, say)
            if opts.rm or opts.forcerm:
                say(f"Removing intermediate container {sid}\n")
            return image
        if not parent:
            if step.kind == "run":
                raise StepFailed("cannot RUN on an empty (scratch) image: no command to run")
        if step.kind == "run":
            return await self._run(step, parent, config, opts, say, results, ctx)
        if step.key in ahead.tasks:
            image = await ahead.commit(step, parent or None, config)
            if image:
                return image
        return await self._copy(step, parent, config, results, ctx, opts, say)

    def _cache_sources(self, names) -> list[str]:
        """``cachefrom`` names as image IDs; unknown ones are skipped (as dockerd)."""
        out = []
        for n in names:
            try:
                iid = self.images.resolve(n)
            except (errors.NotFound, errors.InvalidParameter):
                continue
            if iid not in out:
                out.append(iid)
        return out

    async def _container(self, parent: str, body: dict) -> str:
        c = await self.containers.create(None, {"Image": parent, **body})
        return c["Id"]

    async def _remove(self, cid: str) -> None:
        try:
            await self.containers.remove(cid, force=True, volumes=True)   # image VOLUMEs: anonymous, per step
        except errors.NotFound:
            pass

    async def _commit(self, cid: str, parent: str, config: dict, step: Step,
                      epoch: int | None = None) -> str:
        changes = await asyncio.to_thread(self.images.changes, cid)
        cc = container_config(step, parent, config)
        if not changes:
            return await asyncio.to_thread(self.images.derive_image, parent, config, (),
                                           step.created_by, "", step.author, None, None, epoch,
                                           cc)
        return await asyncio.to_thread(
            self.images.commit_rootfs, cid, parent, config=config, author=step.author,
            container_id=cid, created_by=step.created_by, epoch=epoch, container_config=cc)

    async def _run(self, step: Step, parent: str, config: dict, opts: Options, say,
                   results=None, ctx=None) -> str:
        r = step.run
        host = json.loads(json.dumps(opts.host))
        if r.network != "default":
            host["NetworkMode"] = r.network    # RUN --network
        host.setdefault("NetworkMode", "default")
        if not r.mounts:
            return await self._run_in(step, parent, config, opts, say, host)
        from dockyard.builder import mounts
        data_root = os.path.dirname(os.path.dirname(self.tmp_dir))
        rm = mounts.RunMounts(self.images, self.tmp_dir, data_root, r.mounts, ctx, results)
        try:
            host.update(await _blocking(rm.setup))
            return await self._run_in(step, parent, config, opts, say, host)
        finally:
            await asyncio.shield(_blocking(rm.close))

    async def _run_in(self, step: Step, parent: str, config: dict, opts: Options, say,
                      host: dict) -> str:
        r = step.run
        body = {"Cmd": list(r.argv), "Entrypoint": [], "Env": list(r.env), "User": r.user,
                "WorkingDir": r.workdir, "AttachStdout": True, "AttachStderr": True,
                "Labels": {LABEL: "1"}, "HostConfig": host}
        cid = await self._container(parent, body)
        keep = False
        try:
            say(f" ---> Running in {cid[:12]}\n")
            await self.containers.start(cid)
            async for e in self.containers.logs(cid, follow=True):
                say(e.data.decode("utf-8", errors="replace"))
            code = await self.containers.wait(cid)
            if code != 0:
                keep = not opts.forcerm    # dockerd keeps the failing step's container
                raise StepFailed(f"The command '{' '.join(r.argv)}' returned a non-zero "
                                 f"code: {code}", code)
            if r.mounts:
                await asyncio.to_thread(self.images.remove_stubs, cid,
                                        [m.target for m in r.mounts])
            image = await self._commit(cid, parent, config, step, opts.epoch)
        except BaseException:
            if not keep:
                await asyncio.shield(self._remove(cid))
            raise
        if opts.rm or opts.forcerm:
            say(f"Removing intermediate container {cid[:12]}\n")
            await self._remove(cid)
        return image

    async def _copy(self, step: Step, parent: str, config: dict, results, ctx, opts: Options,
                    say) -> str:
        """COPY/ADD/WORKDIR: written straight into a new snapshot of the parent image
        (mounted once, no container), which then becomes the layer as it is."""
        from dockyard.builder import copier
        spec = step.copy
        src_image = None
        if spec.from_stage is not None or spec.from_image:
            src_image = (results[spec.from_stage] if spec.from_stage is not None
                         else spec.from_image)
        async with _Mounted(self, parent or None) as dst:
            if spec.workdir_only:
                changed = await _blocking(copier.workdir, dst.path,
                                          config.get("WorkingDir") or "/")
            else:
                changed = True
                if src_image is not None:
                    async with _Mounted(self, src_image, view=True) as src:
                        await _blocking(copier.copy, dst.path, spec, ctx, src.path)
                else:
                    await _blocking(copier.copy, dst.path, spec, ctx, None)
            await dst.unmount()
            cc = container_config(step, parent, config)
            if not changed:
                return await asyncio.to_thread(
                    self.images.derive_image, parent or None, config, (), step.created_by, "",
                    step.author, None, None, opts.epoch, cc)
            return await _blocking(self.images.commit_layer, dst.key, parent or None, config,
                                   step.created_by, step.author, None, opts.epoch, cc)


def container_config(step: Step, parent: str, config: dict) -> dict | None:
    """The image's ``container_config`` as dockerd's legacy builder records it: the
    config after the step with the step's command (``#(nop)`` form, or the RUN's as in
    its history) as Cmd and the parent image as Image (a RUN's without Entrypoint)."""
    if not step.cc_cmd:
        return None
    from dockyard.images.config import empty_container_config
    cc = {**empty_container_config(), **config, "Cmd": list(step.cc_cmd),
          "Image": parent or ""}
    if step.kind == "run":
        cc["Entrypoint"] = None
    return cc


async def _blocking(fn, *args):
    """``fn(*args)`` in a thread; a cancelled caller still waits for the thread to end (so
    what it writes into is not unmounted or removed under it)."""
    fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        try:
            await fut
        except BaseException:  # noqa: BLE001 - the cancellation is what is raised
            pass
        raise


class _Ahead:
    """COPYs from the context written ahead, while the steps before them run: each into a
    snapshot on nothing (one at a time, in a thread), placed on its parent when the step
    is reached (``ImageService.commit_layer(implied=...)``), or dropped (and the step
    written the usual way) when the parent makes the result differ."""

    def __init__(self, ex: "Executor", plan: Plan, ctx, opts: Options) -> None:
        self.ex, self.plan, self.ctx, self.opts = ex, plan, ctx, opts
        self.tasks: dict[str, asyncio.Future] = {}
        self.keys: dict[str, str] = {}        # step key -> snapshot key not yet committed
        self.bodies: dict[str, str] = {}      # step key -> its layer's body file
        self.body_tasks: dict[str, tuple[asyncio.Future, Any]] = {}
        self.reached: set[str] = set()        # steps whose commit is waiting already
        self._gate = asyncio.Lock()

    async def start(self) -> None:
        from dockyard.builder import copier
        if self.ctx is None or not self.ex.images.independent_layers():
            return
        for st in self.plan.stages:
            for i, step in enumerate(st.steps):
                if step.kind != "copy" or not copier.can_write_ahead(step.copy):
                    continue
                if not any(s.kind in ("run", "copy") for s in st.steps[:i]) \
                        and st.steps[0].base_stage is None:
                    continue    # nothing to wait for before it
                if not self.opts.nocache and await asyncio.to_thread(self.ex.cache.get,
                                                                     step.key):
                    continue
                self.tasks[step.key] = asyncio.ensure_future(self._write(step))

    async def _write(self, step: Step):
        import threading
        import uuid
        from dockyard.builder import copier
        async with self._gate:      # one at a time: the steps before it need the CPU too
            key = self.ex.images.BUILD_PREFIX + uuid.uuid4().hex
            self.keys[step.key] = key
            await _blocking(self.ex.images.prepare_layer, None, key)
            path = self.ex.images.layer_path(key)
            implied = await _blocking(copier.write_ahead, path, step.copy, self.ctx)
            if self.opts.epoch is None and step.key not in self.reached:
                # the layer's tar, all but its top directories (they take the parent's
                # metadata), made now too: the step's commit then only adds those (not
                # when the step is waiting already: its commit's own walk costs less)
                bpath = os.path.join(self.ex.tmp_dir, "body-" + uuid.uuid4().hex)
                self.bodies[step.key] = bpath
                stop = threading.Event()
                task = asyncio.ensure_future(_blocking(self.ex.images.layer_body, key,
                                                       implied, bpath, stop.is_set))
                self.body_tasks[step.key] = (task, stop)
            return implied

    async def commit(self, step: Step, parent: str | None, config: dict) -> str | None:
        """The step's image from its layer written ahead, or None (write it again)."""
        task = self.tasks.pop(step.key)
        key = self.keys.get(step.key)
        self.reached.add(step.key)
        try:
            implied = await task
            body = None
            bt = self.body_tasks.pop(step.key, None)
            if bt is not None:
                # one still being made is waited for: what is left of it costs no more
                # than the walk of the whole layer the commit would make instead
                btask, _ = bt
                try:
                    size = await asyncio.shield(btask)
                except asyncio.CancelledError:
                    await self._drop(bt)
                    raise
                except Exception:  # noqa: BLE001 - no body: the commit walks the layer
                    size = None
                body = None if size is None else (self.bodies[step.key], size)
            image = await _blocking(self.ex.images.commit_layer, key, parent, config,
                                    step.created_by, step.author, implied, self.opts.epoch,
                                    container_config(step, parent or "", config), body)
            self.keys.pop(step.key, None)
            return image
        except errors.Conflict:
            return None
        finally:
            if step.key in self.keys:
                await asyncio.shield(_blocking(self.ex.images.remove_rootfs,
                                               self.keys.pop(step.key)))
            if step.key in self.bodies:
                _unlink(self.bodies.pop(step.key))

    @staticmethod
    async def _drop(bt) -> None:
        """A body not made yet is given up (its thread stops at the next entry)."""
        task, stop = bt
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        for t in self.tasks.values():
            t.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for t in self.body_tasks.values():
            await self._drop(t)
        self.body_tasks.clear()
        for key in list(self.keys.values()):
            try:
                await _blocking(self.ex.images.remove_rootfs, key)
            except Exception:  # noqa: BLE001 - swept at the next start
                pass
        self.keys.clear()
        for path in self.bodies.values():
            _unlink(path)
        self.bodies.clear()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _Mounted:
    """A builder snapshot of ``image`` (writable, or a read-only view) mounted under the
    builder's tmp directory; unmounted and removed at exit unless committed meanwhile."""

    def __init__(self, ex: "Executor", image: str | None, view: bool = False) -> None:
        import uuid
        self.ex, self.image, self.view = ex, image, view
        self.key = ex.images.BUILD_PREFIX + uuid.uuid4().hex
        self.path = os.path.join(ex.tmp_dir, "mnt-" + self.key[-32:])
        self.mounted = False

    def _setup(self) -> None:
        from dockyard.snapshots import mount
        mounts = self.ex.images.prepare_layer(self.image, self.key, view=self.view)
        os.mkdir(self.path, 0o700)
        mount.mount_all(mounts, self.path)
        self.mounted = True

    def _unmount(self) -> None:
        from dockyard.snapshots import mount
        if self.mounted:
            mount.unmount(self.path)
            self.mounted = False
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass

    async def unmount(self) -> None:
        await _blocking(self._unmount)

    def _teardown(self) -> None:
        try:
            self._unmount()
        finally:
            self.ex.images.remove_rootfs(self.key)   # a no-op once committed

    async def __aenter__(self) -> "_Mounted":
        try:
            await _blocking(self._setup)
        except BaseException:
            await asyncio.shield(_blocking(self._teardown))
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.shield(_blocking(self._teardown))
