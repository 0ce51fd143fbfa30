"""The executor: runs a :class:`~dockyard.builder.planner.Plan` with the image and container
services' public methods, and reports as dockerd's legacy builder does.

* config-only steps (ENV, CMD, LABEL, ...) become images with no new layer
  (``ImageService.derive_image``: an ``empty_layer`` history entry);
* RUN: a container on the previous image (entrypoint cleared, the step's Env, User,
  WorkingDir, network mode), its output streamed as it is logged, then committed
  (``commit_rootfs``) — or, if it changed nothing, an empty layer as dockerd does;
* COPY/ADD/WORKDIR: a created (never started) container whose rootfs gets a tar built from
  the context index (or read from another stage's image with ``ArchiveService.get``),
  written through ``ArchiveService.put`` (in-root, fd-based, no symlink followed out of the
  root), then committed.

Every step's image is recorded in the cache under its key; a step whose key is cached is
not run. Stages of one dependency level run concurrently; their output is shown stage by
stage in Dockerfile order. Intermediate containers are removed (``rm``); a failing RUN's
container stays unless ``forcerm`` (dockerd's rule).
"""

from __future__ import annotations

import asyncio
import io
import json
import posixpath
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from dockyard import errors
from dockyard.builder import context as bctx
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
        from dockyard.containers.archive import ArchiveService
        self.archive = ArchiveService(containers)

    async def run(self, plan: Plan, ctx: bctx.Context | None, opts: Options, emit: Emit) -> str:
        """Build; return the final image ID."""
        order = [s.index for s in plan.stages]
        out = _Ordered(emit, order)
        total = plan.total
        for m in plan.meta:
            emit({"stream": f"Step {m.number}/{total} : {m.text}\n"})
        results: dict[int, str] = {}
        by_index = {s.index: s for s in plan.stages}
        for level in plan.levels():
            tasks = [asyncio.ensure_future(self._stage(by_index[i], results, ctx, opts, out,
                                                       total)) for i in level]
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
        return results[plan.stages[plan.target].index]

    async def _stage(self, stage: Stage, results: dict[int, str], ctx, opts: Options,
                     out: _Ordered, total: int) -> str:
        def say(text: str) -> None:
            out.write(stage.index, {"stream": text})

        image = ""
        try:
            for step in stage.steps:
                if step.text.startswith("# Executing"):
                    say(f"{step.text}\n")
                else:
                    say(f"Step {step.number}/{total} : {step.text}\n")
                if step.kind == "from":
                    image = step.base if step.base else results[step.base_stage]
                    if step.base is None and step.base_stage is None:
                        image = ""     # scratch
                    if image:
                        say(f" ---> {short_id(image)}\n")
                    continue
                cached = None if opts.nocache else await asyncio.to_thread(self.cache.get,
                                                                           step.key)
                if cached:
                    say(" ---> Using cache\n")
                    image = cached
                else:
                    image = await self._step(step, image, results, ctx, opts, say)
                    await asyncio.to_thread(self.cache.put, step.key, image)
                say(f" ---> {short_id(image)}\n")
        finally:
            out.finish(stage.index)
        if not image:
            raise errors.InvalidParameter("No image was generated. Is your Dockerfile empty?")
        return image

    # -- one step --------------------------------------------------------------------------
    async def _step(self, step: Step, parent: str, results, ctx, opts: Options, say) -> str:
        config = json.loads(step.config)
        if step.kind == "config":
            return await asyncio.to_thread(
                self.images.derive_image, parent or None, config, (), step.created_by,
                "", step.author)
        if not parent:
            if step.kind == "run":
                raise StepFailed("cannot RUN on an empty (scratch) image: no command to run")
        if step.kind == "run":
            return await self._run(step, parent, config, opts, say)
        return await self._copy(step, parent, config, results, ctx, opts, say)

    async def _container(self, parent: str, body: dict) -> str:
        if not parent:
            raise StepFailed("COPY onto scratch is not supported yet")
        c = await self.containers.create(None, {"Image": parent, **body})
        return c["Id"]

    async def _remove(self, cid: str) -> None:
        try:
            await self.containers.remove(cid, force=True)
        except errors.NotFound:
            pass

    async def _commit(self, cid: str, parent: str, config: dict, step: Step) -> str:
        changes = await asyncio.to_thread(self.images.changes, cid)
        if not changes:
            return await asyncio.to_thread(self.images.derive_image, parent, config, (),
                                           step.created_by, "", step.author)
        return await asyncio.to_thread(
            self.images.commit_rootfs, cid, parent, config=config, author=step.author,
            container_id=cid, created_by=step.created_by)

    async def _run(self, step: Step, parent: str, config: dict, opts: Options, say) -> str:
        r = step.run
        host = {"NetworkMode": "default" if r.network == "default" else r.network}
        body = {"Cmd": list(r.argv), "Entrypoint": [], "Env": list(r.env), "User": r.user,
                "WorkingDir": r.workdir, "AttachStdout": True, "AttachStderr": True,
                "Labels": {}, "HostConfig": host}
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
            image = await self._commit(cid, parent, config, step)
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
        spec = step.copy
        user = ""
        if spec.chown:
            user = spec.chown if ":" in spec.chown else f"{spec.chown}:{spec.chown}"
        nop = list(config.get("Shell") or ["/bin/sh", "-c"]) + ["#(nop) ", step.text]
        cid = await self._container(parent, {"Cmd": nop, "Entrypoint": [], "User": user,
                                             "Labels": {}})
        try:
            spool = tempfile.TemporaryFile(dir=self.tmp_dir)
            try:
                if spec.workdir_only:
                    wd = config.get("WorkingDir") or "/"
                    if await self._exists(cid, wd):
                        await self._remove(cid)
                        return await asyncio.to_thread(
                            self.images.derive_image, parent, config, (), step.created_by, "",
                            step.author)
                    await asyncio.to_thread(_dir_tar, spool, wd)
                else:
                    sources = None
                    if spec.from_stage is not None or spec.from_image:
                        src_image = (results[spec.from_stage] if spec.from_stage is not None
                                     else spec.from_image)
                        sources = await self._read_image(src_image, spec)
                    single = (len(spec.items) + len(spec.heredocs) == 1
                              and not (spec.items and spec.items[0].contents))
                    dest_is_dir = spec.dest_dir or (single and await self._is_dir(cid, spec.dest))
                    # a directory's contents go into dest: made if missing, an existing one
                    # keeps its owner and mode (the tar then has no entry for it)
                    existing = {d for d in {it.dest for it in spec.items}
                                if await self._is_dir(cid, d)}
                    try:
                        await asyncio.to_thread(_copy_tar, spool, spec, ctx, sources,
                                                dest_is_dir, existing)
                    finally:
                        for s in (sources or {}).values():
                            s.close()
                spool.seek(0)
                await self.archive.put(cid, "/", spool, copy_uid_gid=bool(user))
            finally:
                spool.close()
            image = await self._commit(cid, parent, config, step)
        finally:
            await asyncio.shield(self._remove(cid))
        return image

    async def _stat(self, cid: str, path: str) -> dict | None:
        try:
            return await self.archive.stat(cid, path)
        except errors.NotFound:
            return None

    async def _exists(self, cid: str, path: str) -> bool:
        return await self._stat(cid, path + "/") is not None if path != "/" else True

    async def _is_dir(self, cid: str, path: str) -> bool:
        st = await self._stat(cid, path.rstrip("/") + "/.") if path != "/" else {"mode": 1 << 31}
        if st is None:
            return False
        return bool(st["mode"] & (1 << 31))

    async def _read_image(self, image: str, spec) -> dict:
        """Each --from source as a spooled tar (ArchiveService.get: read in-root)."""
        cid = await self._container(image, {"Cmd": ["#(nop)"], "Entrypoint": [], "Labels": {}})
        out: dict = {}
        try:
            for it in spec.items:
                if any(ch in it.source for ch in "*?["):
                    raise StepFailed("COPY --from with wildcards is not supported yet")
                f = tempfile.TemporaryFile(dir=self.tmp_dir)
                out[it.source] = f
                try:
                    await self.archive.get(cid, it.source, lambda st: None, f)
                except errors.NotFound:
                    raise StepFailed(f"COPY failed: stat {it.source}: file does not exist") \
                        from None
                f.seek(0)
        except BaseException:
            for f in out.values():
                f.close()
            raise
        finally:
            await asyncio.shield(self._remove(cid))
        return out


# -- tar building (threads) ---------------------------------------------------------------------

def _dir_tar(out, path: str) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo(path.strip("/") + "/")
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        tf.addfile(ti)


def _copy_tar(out, spec, ctx: bctx.Context | None, sources: dict | None,
              dest_is_dir: bool, existing: set[str]) -> None:
    """The tar that ArchiveService.put extracts at "/" for one COPY."""
    chmod = spec.chmod
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        def add(name: str, kind: str, mode: int, size: int = 0, fileobj=None,
                link: str = "", mtime: float = 0) -> None:
            ti = tarfile.TarInfo(name.lstrip("/") or ".")
            ti.uid = ti.gid = 0
            ti.mtime = mtime
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = chmod if chmod is not None else mode
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = link
                ti.mode = 0o777
            else:
                ti.size = size
                ti.mode = chmod if chmod is not None else mode
            tf.addfile(ti, fileobj)

        for name, content in spec.heredocs:
            data = content.encode()
            target = posixpath.join(spec.dest, name) if dest_is_dir else spec.dest
            add(target, "file", 0o644, len(data), io.BytesIO(data))
        if sources is not None:
            for it in spec.items:
                _retar(tf, sources[it.source], it, dest_is_dir, chmod, it.dest in existing)
            return
        if ctx is None:
            return
        for it in spec.items:
            e = ctx.entries.get(it.source)
            if e is None:
                raise StepFailed(f"COPY failed: {it.source} disappeared from the context")
            if it.contents:
                if it.dest not in existing:
                    add(it.dest, "dir", 0o755)
                for sub in ctx.below(e.path):
                    rel = sub.path[len(e.path):].lstrip("/") if e.path else sub.path
                    _add_entry(add, ctx, sub, posixpath.join(it.dest, rel))
            else:
                target = posixpath.join(it.dest, it.name) if dest_is_dir else it.dest
                _add_entry(add, ctx, e, target)


def _add_entry(add, ctx: bctx.Context, e: bctx.Entry, target: str) -> None:
    if e.kind == "dir":
        add(target, "dir", e.mode, mtime=e.mtime)
    elif e.kind == "symlink":
        add(target, "symlink", 0o777, link=e.digest, mtime=e.mtime)
    else:
        with ctx.open(e) as f:
            add(target, "file", e.mode, e.size, f, mtime=e.mtime)


def _retar(tf: tarfile.TarFile, src, it, dest_is_dir: bool, chmod: int | None,
           dest_exists: bool) -> None:
    """Re-root a tar read from a stage (its top entry is the source's base name)."""
    with tarfile.open(fileobj=src, mode="r|") as st:
        top = None
        for m in st:
            parts = [p for p in m.name.split("/") if p not in ("", ".")]
            if top is None:
                top = m
                is_dir = m.isdir()
            if is_dir:
                rel = parts[1:] if parts and m.name not in (".", "./") else parts
                if m.name in (".", "./"):
                    rel = []
                if not rel and dest_exists:
                    continue    # an existing destination keeps its owner and mode
                name = posixpath.join(it.dest, *rel) if rel else it.dest
            else:
                name = posixpath.join(it.dest, it.name) if dest_is_dir else it.dest
            m2 = tarfile.TarInfo(name.lstrip("/") or ".")
            m2.type, m2.linkname, m2.size, m2.mtime = m.type, m.linkname, m.size, m.mtime
            m2.mode = chmod if (chmod is not None and not m.issym()) else m.mode
            m2.uid = m2.gid = 0
            if m.islnk():
                # hardlinks name the source's path: point them at the copy
                lparts = [p for p in m.linkname.split("/") if p not in ("", ".")]
                m2.linkname = posixpath.join(it.dest, *lparts[1:]).lstrip("/")
            tf.addfile(m2, st.extractfile(m) if m.isreg() else None)
