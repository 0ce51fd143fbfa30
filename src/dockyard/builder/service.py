"""The build service: context in, image out (no HTTP here).

``receive`` unpacks the context (blocking, in a thread), ``prepare`` parses the Dockerfile,
resolves the base images and plans (errors here come before any output, so the API can
answer them with a status), ``execute`` runs the plan and streams plain progress messages
(``{"stream": ...}``, ``{"aux": ...}``), ``tag`` names the result.
"""

from __future__ import annotations

import os
import shutil
import uuid
from typing import Any

from dockyard import errors
from dockyard.builder import context as bctx
from dockyard.builder import dockerfile as dfparse
from dockyard.builder import planner
from dockyard.builder.cache import BuildCache
from dockyard.builder.executor import Executor, Options


class BuildService:
    def __init__(self, images: Any, containers: Any, store: Any, root: str) -> None:
        self.images = images
        self.containers = containers
        self.tmp = os.path.join(str(root), "builder", "tmp")
        # contexts and spools of builds a crash interrupted
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp, mode=0o700, exist_ok=True)
        from dockyard.builder.sessions import SessionStore
        self.sessions = SessionStore(os.path.join(str(root), "builder", "sessions"))
        self.cache = BuildCache(store, images.has_image)
        self.executor = Executor(images, containers, self.cache, self.tmp)

    def receive(self, stream, dockerfile: str = "Dockerfile") -> bctx.Context:
        return bctx.receive(stream, os.path.join(self.tmp, "ctx-" + uuid.uuid4().hex),
                            dockerfile or "Dockerfile")

    def receive_session(self, token: str, stream, dockerfile: str = "Dockerfile"
                        ) -> bctx.Context:
        """A context session's build: the changed files in ``stream``, the rest kept."""
        return self.sessions.receive(token, stream,
                                     os.path.join(self.tmp, "ctx-" + uuid.uuid4().hex),
                                     dockerfile or "Dockerfile")

    def session_offer(self, key: str, raw: bytes) -> dict:
        """A context session's offer (``POST /build/session``'s body) -> ``{"Token",
        "Missing"}``. An offer byte for byte the same as the key's last one, with the same
        base images, is not parsed or planned again (a rebuild with no change); one of the
        same shape (the same paths, kinds, links, Dockerfile, args and target) is parsed
        but not planned again (a file changed)."""
        from hashlib import sha256

        from dockyard.builder import sessions
        digest = sha256(raw).hexdigest()
        last = self.sessions.recall(key)
        if last is not None and not self._same_images(last.bases):
            last = None
        known = last if last is not None and last.digest == digest else None
        if known is None:
            offer = sessions.parse_offer(raw)
            shape = offer.shape()
            if last is not None and last.shape == shape:
                # only modes, sizes or times changed: the same files are read
                needed, bases = last.needed, last.bases
            elif offer.plan:
                needed, bases = self.needed_files(offer.manifest, offer.files,
                                                  offer.dockerfile, offer.args, offer.target)
            else:
                needed, bases = None, {}
            known = sessions.Offered(digest, shape, offer.manifest, needed, bases)
            if needed is not None or not offer.plan:
                self.sessions.remember(key, known)
        return self.sessions.offer(key, known.manifest, known.needed, known.stamp)

    def _same_images(self, ids: dict[str, str]) -> bool:
        for ref, image_id in ids.items():
            try:
                if self.images.resolve(ref) != image_id:
                    return False
            except errors.NotFound:
                return False
        return True

    def needed_files(self, manifest: list, files: dict[str, bytes], dockerfile: str,
                     build_args=None, target: str | None = None
                     ) -> tuple[set[str] | None, dict[str, str]]:
        """Which of a context session's files the build reads, planned on the manifest
        alone, and the base images (ref -> ID) that planning used; None (all of them)
        when that cannot be told before the build (a base image to pull, an ADD URL, a
        Dockerfile error: the build itself reports those)."""
        from dockyard.builder import sessions
        root = os.path.join(self.tmp, "probe-" + uuid.uuid4().hex)
        bases: dict[str, tuple[str, dict]] = {}
        try:
            ctx = sessions.probe_context(root, manifest, files, dockerfile)
            df = self.dockerfile(ctx, dockerfile)
            for ref in planner.base_images(df, build_args or {}, target):
                image_id = self.images.resolve(ref)
                bases[ref] = (image_id, self.images.get_config(image_id))
            plan = planner.plan(df, build_args=build_args or {}, target=target, bases=bases,
                                context=ctx, downloads={})
            needed = sessions.read_paths(plan, ctx)
        except Exception:   # noqa: BLE001 - any doubt: every file
            return None, {}
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return needed | set(files), {ref: b[0] for ref, b in bases.items()}

    def receive_remote(self, remote: str, dockerfile: str = "") -> tuple[bctx.Context, str]:
        """The ``remote`` parameter's context (an http(s) tar or Dockerfile, a git URL)
        and the Dockerfile's name in it."""
        from dockyard.builder import remote as rem
        work = os.path.join(self.tmp, "remote-" + uuid.uuid4().hex)
        os.makedirs(work, mode=0o700)
        try:
            stream, name = rem.fetch_context(remote, work, dockerfile or "Dockerfile")
            with stream:
                return self.receive(stream, name), dockerfile
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def dockerfile(self, ctx: bctx.Context, dockerfile: str = "") -> dfparse.Dockerfile:
        name = bctx.normalize(dockerfile or "Dockerfile")
        e = ctx.resolve(name) or ctx.build_files.get(name)
        if e is None and not dockerfile:
            name = "dockerfile"
            e = ctx.resolve(name) or ctx.build_files.get(name)
        if e is None or e.kind != "file":
            raise errors.InvalidParameter(f"Cannot locate specified Dockerfile: "
                                          f"{dockerfile or 'Dockerfile'}")
        df = dfparse.parse(ctx.read(e.path))
        if not df.instructions:
            raise errors.InvalidParameter("the Dockerfile (Dockerfile) cannot be empty")
        return df

    def base_refs(self, ctx: bctx.Context, *, dockerfile: str = "", build_args=None,
                  target: str | None = None) -> list[str]:
        """The images the build starts from (what ``pull`` refreshes)."""
        return planner.base_images(self.dockerfile(ctx, dockerfile), build_args or {}, target)

    def missing(self, refs: list[str]) -> list[str]:
        """Those of ``refs`` not here (dockerd's legacy builder pulls them)."""
        out = []
        for ref in refs:
            try:
                self.images.resolve(ref)
            except errors.NotFound:
                out.append(ref)
        return out

    def pull_layout(self, ctx: bctx.Context, refs: list[str], *, dockerfile: str = "",
                    build_args=None, target: str | None = None, labels=None
                    ) -> tuple[dict[str, int], int, list[str]]:
        """Where the pulls of ``refs`` show, as dockerd's legacy builder pulls while it
        runs the step that uses an image: each ref's step number, M of ``Step N/M`` and
        the texts of the steps up to the first FROM (``planner.head_steps``)."""
        df = self.dockerfile(ctx, dockerfile)
        sites = planner.pull_steps(df, build_args or {}, target, refs)
        total, head = planner.head_steps(df, build_args or {}, target, len(labels or {}))
        return sites, total, head

    async def pull(self, refs: list[str], insecure=(), auths=None):
        """Pull each of ``refs`` (missing bases, or all of them with ``pull``), yielding
        the pull's progress messages as ``POST /images/create`` does; ``auths`` maps
        registries to credentials (``credentials.decode_config_header``)."""
        from dockyard.images import credentials
        from dockyard.images import reference
        from dockyard.images.pull import pull
        for ref in refs:
            domain = reference.parse_normalized(ref).domain
            auth = credentials.for_registry(auths or {}, domain)
            async for msg in pull(self.images, ref, insecure_registries=insecure, auth=auth):
                yield msg

    def prepare(self, ctx: bctx.Context, *, dockerfile: str = "", build_args=None,
                target: str | None = None, labels=None) -> planner.Plan:
        df = self.dockerfile(ctx, dockerfile)
        bases = {}
        for ref in planner.base_images(df, build_args or {}, target):
            try:
                image_id = self.images.resolve(ref)
            except errors.NotFound:
                raise errors.NotFound(f"No such image: {ref}") from None
            bases[ref] = (image_id, self.images.get_config(image_id))
        epoch = None
        sde = (build_args or {}).get("SOURCE_DATE_EPOCH")
        if sde:
            if not sde.isdigit():
                raise errors.InvalidParameter(f"invalid SOURCE_DATE_EPOCH: {sde} (seconds "
                                              "since 1970 are needed)")
            epoch = int(sde)
        downloads: dict[str, planner.Download] = {}
        while True:
            try:
                return planner.plan(df, build_args=build_args or {}, target=target,
                                    bases=bases, context=ctx, labels=labels or None,
                                    downloads=downloads, epoch=epoch)
            except planner.MissingDownloads as e:
                from dockyard.builder import remote
                for url in e.urls:
                    if url in downloads:
                        raise errors.InvalidParameter(f"ADD {url}: fetched but not found")
                    downloads[url] = (remote.git_tree(url, ctx.root)
                                      if planner.is_git_url(url)
                                      else remote.download(url, ctx.root))

    async def execute(self, plan: planner.Plan, ctx: bctx.Context, opts: Options, emit) -> str:
        image_id = await self.executor.run(plan, ctx, opts, emit)
        if plan.unused_args:
            emit({"stream": f"[Warning] One or more build-args [{' '.join(plan.unused_args)}]"
                            " were not consumed\n"})
        return image_id

    def tag(self, image_id: str, tags: list[str]) -> list[str]:
        out = []
        for t in tags:
            self.images.tag(image_id, t)
            out.append(t)
        return out
