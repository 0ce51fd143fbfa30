"""``docker pull``: fetch an image from a registry into the image service.

    async for msg in pull(svc, "127.0.0.1:5000/am/busybox:v1", auth=("u", "p")):
        ...   # Docker's JSON progress messages, exactly as dockerd words them

How it goes: the tag (or digest) resolves to a manifest (Docker schema 2 or OCI;
an index or manifest list resolves to this machine's platform, or
``platform``). If the image (its config digest) is already here nothing is
fetched. Otherwise missing layers (by chain ID) are downloaded, three at a
time, through resumable content-store ingests named ``pull-<digest>``: a
connection that breaks mid-layer resumes with ``Range`` from the ingest's
offset. Each layer is unpacked *while* it downloads (the unpacker takes the
received chunks from memory, up to MEMORY_AHEAD bytes ahead of it, else reads the
ingest file; with the overlay snapshotter layers unpack side by side, see
``ImageService._ensure_layers``), the blob being written with O_DIRECT so that it
does not fill the page cache, and its snapshot is committed, in chain order,
only after the blob's digest and the layer's diffID both verified. Finally the
image is registered with its tag and its ``repo@sha256:...`` digest reference.
"""

from __future__ import annotations

import asyncio
import collections
import io
import os
import platform as _platform
import threading
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

import aiohttp

from dockyard.distribution.errors import ErrorCode, RegistryError
from dockyard.distribution.manifest import (DOCKER_FOREIGN_LAYER, INDEXES, Manifest, parse_manifest,
                                            select_platform)
from dockyard.errors import DockyardError, InvalidParameter, NotFound, SystemError_, Unauthorized
from dockyard.images import reference as refs
from dockyard.images.registry_client import RegistryClient, RegistryUnreachable

MAX_CONCURRENT_DOWNLOADS = 3
RETRIES = 5
UPDATE_EVERY = 512 * 1024       # bytes between progress messages (as Docker's progress reader)
UPDATE_INTERVAL = 0.1           # and at most every 100 ms
FLUSH_EVERY = 2 << 20           # bytes buffered before the ingest file grows
MEMORY_AHEAD = 64 << 20         # received bytes kept in memory for the unpacker, per layer
INGEST_PREFIX = "pull-"

_END = object()


# -- progress messages, as dockerd's jsonmessage ---------------------------------------

def progress_string(current: int, total: int) -> str:
    """JSONProgress.String() at the daemon's width (200 columns)."""
    from dockyard.cli.units import human_size

    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    pct = min(int(current / total * 100) // 2, 50)
    bar = "[" + "=" * pct + ">" + " " * max(50 - pct, 0) + "] "
    if current > total:
        return bar + f"{human_size(current):>8}"
    return bar + f"{human_size(current):>8}/{human_size(total)}"


def status(text: str, id: str | None = None, progress: tuple[int, int] | None = None,
           detail: bool = True) -> dict:
    msg: dict = {"status": text}
    if progress is not None:
        msg["progressDetail"] = {"current": progress[0], "total": progress[1]}
        msg["progress"] = progress_string(*progress)
    elif id is not None and detail:
        msg["progressDetail"] = {}
    if id is not None:
        msg["id"] = id
    return msg


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def host_platform() -> tuple[str, str, str | None]:
    m = _platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)
    variant = {"armv7l": "v7", "armv6l": "v6"}.get(m)
    return "linux", arch, variant


def parse_platform(value: str | None) -> tuple[str, str, str | None]:
    if not value:
        return host_platform()
    parts = value.strip().lower().split("/")
    if not parts[0] or len(parts) > 3:
        raise InvalidParameter(f'"{value}": unknown operating system or architecture: '
                               "invalid argument")
    os_ = parts[0]
    arch = parts[1] if len(parts) > 1 and parts[1] else host_platform()[1]
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)
    variant = parts[2] if len(parts) > 2 else None
    return os_, arch, variant


def platform_string(os_: str, arch: str, variant: str | None) -> str:
    return "/".join(p for p in (os_, arch, variant) if p)


# -- errors, as dockerd's translatePullError ------------------------------------------

def _cause(e: RegistryError) -> str:
    return f"{e.code.name.lower().replace('_', ' ')}: {e.message}"


def translate_error(e: Exception, ref: refs.Reference) -> Exception:
    if isinstance(e, RegistryUnreachable):
        return SystemError_(e.message)
    if not isinstance(e, RegistryError):
        return e
    if e.code is ErrorCode.DENIED or (e.code is ErrorCode.UNAUTHORIZED and ref.domain == "docker.io"):
        return NotFound(f"pull access denied for {ref.familiar_name}, repository does not exist "
                        f"or may require 'docker login': denied: {e.message}")
    if e.code is ErrorCode.MANIFEST_UNKNOWN:
        return NotFound(f"manifest for {ref.familiar()} not found: {_cause(e)}")
    if e.code is ErrorCode.NAME_UNKNOWN:
        return NotFound(f"repository {ref.familiar_name} not found: {_cause(e)}")
    if e.code is ErrorCode.UNAUTHORIZED:
        url = getattr(e, "url", None)
        prefix = f'Head "{url}": ' if url else ""
        return Unauthorized(f"{prefix}unauthorized: {e.message}")
    return SystemError_(_cause(e)) if e.status >= 500 else InvalidParameter(_cause(e))


# -- a download the unpacker can follow -----------------------------------------------

@dataclass
class _Download:
    digest: str
    size: int
    media_type: str
    id: str
    cond: threading.Condition = field(default_factory=threading.Condition)
    path: str | None = None        # the file that grows (ingest data, or the blob)
    written: int = 0               # bytes of it a reader may read
    done: bool = False             # verified and committed
    error: BaseException | None = None
    extracting: int = 0            # bytes the unpacker has read
    complete_sent: bool = False
    # the received bytes the unpacker has not read yet, as (offset, chunk), at most
    # MEMORY_AHEAD of them (the oldest dropped: the reader then reads the file)
    mem: collections.deque = field(default_factory=collections.deque)
    mem_start: int = 0
    mem_end: int = 0
    mem_bytes: int = 0

    def update(self, **kw) -> None:
        with self.cond:
            for k, v in kw.items():
                setattr(self, k, v)
            self.cond.notify_all()

    def received(self, offset: int, chunk: bytes) -> None:
        """Bytes at ``offset`` arrived (not verified yet: the reader's EOF waits for
        ``done``). A restart at another offset drops what is held."""
        with self.cond:
            if offset != self.mem_end or not self.mem:
                self.mem.clear()
                self.mem_start = self.mem_end = offset
                self.mem_bytes = 0
            self.mem.append((offset, chunk))
            self.mem_end += len(chunk)
            self.mem_bytes += len(chunk)
            while self.mem_bytes > MEMORY_AHEAD and len(self.mem) > 1:
                _, old = self.mem.popleft()
                self.mem_bytes -= len(old)
                self.mem_start += len(old)
            self.cond.notify_all()

    def take(self, pos: int, n: int) -> bytes | None:
        """Up to ``n`` bytes at ``pos`` from memory (None: not held); chunks wholly
        before ``pos`` are let go. Called with ``cond`` held."""
        mem = self.mem
        while mem and mem[0][0] + len(mem[0][1]) <= pos:
            _, old = mem.popleft()
            self.mem_bytes -= len(old)
            self.mem_start += len(old)
        if not mem or not (mem[0][0] <= pos < self.mem_end):
            return None
        off, chunk = mem[0]
        start = pos - off
        if start == 0 and n >= len(chunk):
            return chunk
        return bytes(memoryview(chunk)[start:start + n])


class _Aborted(DockyardError):
    status = 500


class _FollowReader(io.RawIOBase):
    """Reads a download as it arrives: the received chunks from memory (no copy when
    a read takes a whole one), else the ingest file as it grows; EOF only once the
    blob verified."""

    def __init__(self, dl: _Download, abort: threading.Event, on_read):
        self._dl = dl
        self._abort = abort
        self._fd: int | None = None
        self._pos = 0
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return self.readall()
        if n == 0:
            return b""
        dl = self._dl
        with dl.cond:
            while True:
                if self._abort.is_set():
                    raise _Aborted("pull cancelled")
                if dl.error is not None:
                    raise _Aborted(f"download of {dl.digest} failed: {dl.error}")
                b = dl.take(self._pos, n)
                if b is not None:
                    break
                if dl.path is not None and (dl.written > self._pos or dl.done):
                    break
                dl.cond.wait(1.0)
            avail = dl.written - self._pos
            path = dl.path
        if b is None:
            if avail <= 0:
                return b""
            b = os.pread(self._open(path), min(n, avail), self._pos)
        self._pos += len(b)
        self._on_read(dl, self._pos)
        return b

    def readinto(self, b) -> int:
        data = self.read(len(b))
        memoryview(b)[:len(data)] = data
        return len(data)

    def _open(self, path: str) -> int:
        dl = self._dl
        while self._fd is None:
            try:
                self._fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                # committed meanwhile: the ingest file became the blob
                with dl.cond:
                    while not dl.done and dl.error is None and not self._abort.is_set():
                        dl.cond.wait(1.0)
                    if dl.error is not None or self._abort.is_set():
                        raise _Aborted(f"download of {dl.digest} failed: {dl.error}") from None
                    if path == dl.path:
                        raise
                    path = dl.path
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        super().close()


# -- the pull ----------------------------------------------------------------------------

@dataclass
class PullOptions:
    platform: str | None = None
    all_tags: bool = False
    auth: tuple[str, str] | None = None
    insecure_registries: tuple[str, ...] = ()
    max_concurrent_downloads: int = MAX_CONCURRENT_DOWNLOADS


def parse_pull_reference(image: str, tag: str | None = None) -> refs.Reference:
    """``fromImage`` + ``tag`` as the API gets them -> a normalized reference."""
    try:
        ref = refs.parse_normalized(image)
        if tag:
            if refs.is_digest(tag) or tag.startswith("sha256:"):
                ref = refs.parse_normalized(f"{ref.name}@{tag}")
            else:
                refs.validate_tag(tag)
                ref = ref.with_tag(tag)
    except InvalidParameter as e:
        raise InvalidParameter(f"invalid reference format: {e}".replace(
            "invalid reference format: invalid reference format", "invalid reference format")) from None
    return ref


async def pull(svc, image: str, tag: str | None = None, *, platform: str | None = None,
               all_tags: bool = False, auth: tuple[str, str] | None = None,
               insecure_registries: tuple[str, ...] | list[str] = (),
               max_concurrent_downloads: int = MAX_CONCURRENT_DOWNLOADS) -> AsyncIterator[dict]:
    """Pull ``image`` (``tag`` may also be given apart, as the API does).

    Yields JSON progress messages. An error before the first message (unknown
    repository, bad credentials, bad reference) is raised from the first
    ``__anext__``; later errors are raised mid-stream (the API turns them into
    in-band error messages)."""
    ref = parse_pull_reference(image, tag)
    if not all_tags:
        ref = ref.with_default_tag()
    opts = PullOptions(platform, all_tags, auth, tuple(insecure_registries or ()),
                       max_concurrent_downloads)
    if platform:
        parse_platform(platform)
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.ensure_future(_run(svc, ref, opts, queue.put_nowait))
    task.add_done_callback(lambda _t: queue.put_nowait(_END))
    try:
        while True:
            msg = await queue.get()
            if msg is _END:
                break
            yield msg
        while not queue.empty():
            msg = queue.get_nowait()
            if msg is not _END:
                yield msg
        task.result()
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except BaseException:
                pass


def pull_sync(svc, image: str, tag: str | None = None, **kw) -> list[dict]:
    """Blocking pull (tests, tools): all messages, or the error."""
    async def go():
        return [m async for m in pull(svc, image, tag, **kw)]
    return asyncio.run(go())


async def _run(svc, ref: refs.Reference, opts: PullOptions, emit) -> None:
    async with RegistryClient(ref.domain, opts.auth, opts.insecure_registries) as client:
        if opts.all_tags and not ref.tag and not ref.digest:
            try:
                tags = await client.tags(ref.path)
            except (RegistryError, RegistryUnreachable) as e:
                raise translate_error(e, ref) from None
            updated = False
            for t in tags:
                updated |= await _pull_one(svc, client, ref.with_tag(t), opts, emit)
                _event(svc, "pull", ref.with_tag(t))
            what = "Downloaded newer image" if updated else "Image is up to date"
            emit(status(f"Status: {what} for {ref.familiar_name}"))
            return
        updated = await _pull_one(svc, client, ref, opts, emit)
        what = "Downloaded newer image" if updated else "Image is up to date"
        emit(status(f"Status: {what} for {ref.familiar()}"))
        _event(svc, "pull", ref)


def _event(svc, action: str, ref: refs.Reference) -> None:
    """dockerd's image event: actor = the familiar reference, attribute name."""
    svc.emit_event(action, ref.familiar(), {"name": ref.familiar_name})


async def _pull_one(svc, client: RegistryClient, ref: refs.Reference, opts: PullOptions,
                    emit) -> bool:
    reference = ref.digest or ref.tag or "latest"
    repo = ref.path
    try:
        body, ctype, digest = await client.get_manifest(repo, reference)
        manifest = parse_manifest(body, ctype)
    except (RegistryError, RegistryUnreachable) as e:
        raise translate_error(e, ref) from None
    repo_digest = str(digest)
    blobs: list[tuple[bytes, str]] = [(body, repo_digest)]
    os_, arch, variant = parse_platform(opts.platform)
    emit(status(f"Pulling from {repo}", reference, detail=False))
    if manifest.media_type in INDEXES:
        desc = select_platform(manifest, os_, arch, variant)
        if desc is None:
            raise NotFound(f"no matching manifest for {platform_string(os_, arch, variant)} "
                           "in the manifest list entries")
        try:
            body, ctype, d = await client.get_manifest(repo, str(desc.digest))
            manifest = parse_manifest(body, ctype or desc.media_type)
        except (RegistryError, RegistryUnreachable) as e:
            raise translate_error(e, ref) from None
        if manifest.media_type in INDEXES:
            raise InvalidParameter("nested manifest lists are not supported")
        blobs.append((body, str(d)))
    manifest_digest = blobs[-1][1]
    config_digest = str(manifest.config.digest)
    repo_digest_ref = f"{ref.name}@{repo_digest}"
    look = str(ref) if not ref.digest else repo_digest_ref
    before = svc.image_for_reference(look)

    layers = [(str(d.digest), d.media_type) for d in manifest.layers]
    if svc.has_image(config_digest):
        config_bytes = svc.get_config_bytes(config_digest)
    else:
        try:
            config_bytes = await client.get_blob_bytes(repo, config_digest)
        except (RegistryError, RegistryUnreachable) as e:
            raise translate_error(e, ref) from None
        _check_platform(config_bytes, opts.platform, os_, arch)
    image_id = await _fetch_and_register(svc, client, ref, repo, manifest, config_bytes,
                                         layers, blobs, manifest_digest, repo_digest_ref,
                                         opts, emit)
    _remember_sources(svc, ref, [d for d, _ in layers])
    emit(status(f"Digest: {repo_digest}"))
    return before != image_id


def _check_platform(config_bytes: bytes, wanted: str | None, os_: str, arch: str) -> None:
    if not wanted:
        return
    import json
    try:
        cfg = json.loads(config_bytes)
    except ValueError:
        raise InvalidParameter("invalid image config") from None
    if cfg.get("os", os_) != os_ or cfg.get("architecture", arch) != arch:
        raise NotFound(f"image with reference was found but does not match the specified "
                       f"platform: wanted {os_}/{arch}, actual: "
                       f"{cfg.get('os')}/{cfg.get('architecture')}")


async def _fetch_and_register(svc, client: RegistryClient, ref: refs.Reference, repo: str,
                              manifest: Manifest, config_bytes: bytes,
                              layers: list[tuple[str, str]], blobs: list[tuple[bytes, str]],
                              manifest_digest: str, repo_digest_ref: str, opts: PullOptions,
                              emit) -> str:
    import json

    from dockyard.images.service import chain_ids

    loop = asyncio.get_running_loop()
    try:
        diff_ids = list((json.loads(config_bytes).get("rootfs") or {}).get("diff_ids") or [])
    except (ValueError, AttributeError):
        raise InvalidParameter("invalid image config: not a JSON object") from None
    if len(diff_ids) != len(layers):
        raise InvalidParameter(f"invalid manifest, layers length mismatch: expected "
                               f"{len(diff_ids)}, got {len(layers)}")
    if any(mt == DOCKER_FOREIGN_LAYER for _, mt in layers):
        raise InvalidParameter("foreign layers are not supported")
    config_digest = str(manifest.config.digest)
    chains = chain_ids(diff_ids)
    image_known = svc.has_image(config_digest)
    abort = threading.Event()
    dls: dict[str, _Download] = {}
    order: list[_Download] = []
    if not image_known:
        for (digest, media), chain, desc in zip(layers, chains, manifest.layers):
            if svc.layer_record(chain) is not None:
                emit(status("Already exists", short(digest)))
                continue
            if digest in dls:
                continue
            dl = _Download(digest, desc.size, media, short(digest))
            dls[digest] = dl
            order.append(dl)
            emit(status("Pulling fs layer", dl.id))
        for dl in order[opts.max_concurrent_downloads:]:
            emit(status("Waiting", dl.id))

    last_extract: dict[str, tuple[int, float]] = {}

    def on_read(dl: _Download, pos: int) -> None:
        # unpacker thread: "Extracting" once the download itself is complete
        dl.extracting = pos
        if not dl.complete_sent:
            return
        prev, t = last_extract.get(dl.digest, (0, 0.0))
        now = time.monotonic()
        if pos - prev >= UPDATE_EVERY and now - t >= UPDATE_INTERVAL or pos >= dl.size:
            last_extract[dl.digest] = (pos, now)
            loop.call_soon_threadsafe(emit, status("Extracting", dl.id, (pos, dl.size)))

    def progress(i: int, diff_id: str, what: str) -> None:
        if what == "done" and not image_known:
            d = layers[i][0]
            if d in dls:
                loop.call_soon_threadsafe(emit, status("Pull complete", short(d)))

    def open_layer(i: int):
        dl = dls.get(layers[i][0])
        if dl is None:
            return svc.content.open(layers[i][0])
        return _FollowReader(dl, abort, on_read)

    with svc.lease() as lease:
        for body, d in blobs:
            await loop.run_in_executor(None, lease.write_blob, body, d)
        sem = asyncio.Semaphore(opts.max_concurrent_downloads)
        tasks = [asyncio.ensure_future(_download(svc, client, repo, dl, sem, lease, emit))
                 for dl in order]

        def wake_readers() -> None:
            # another layer failed: readers waiting for bytes stop now
            abort.set()
            for dl in order:
                with dl.cond:
                    dl.cond.notify_all()

        def register() -> str:
            tags = [str(ref)] if ref.tag and not ref.digest else []
            return svc.register_image(config_bytes, layers, tags=tags,
                                      manifest_digest=manifest_digest,
                                      repo_digests=[repo_digest_ref], progress=progress,
                                      open_layer=open_layer, on_abort=wake_readers)

        extract = loop.run_in_executor(None, register)
        try:
            if tasks:
                done, _ = await asyncio.wait(tasks + [extract],
                                             return_when=asyncio.FIRST_EXCEPTION)
                for t in done:
                    if t.exception() is not None:
                        raise t.exception()
                await asyncio.gather(*tasks)
            image_id = await extract
        except BaseException as e:
            abort.set()
            for t in tasks:
                t.cancel()
            if tasks:
                # their ingests are closed (unlocked) before the pull answers, so a
                # retry right away resumes them instead of finding them busy
                await asyncio.wait(tasks)
                for t in tasks:
                    if not t.cancelled():
                        t.exception()
            for dl in order:
                if not dl.done:
                    dl.update(error=e)
            try:
                await extract
            except BaseException:
                pass
            if isinstance(e, (RegistryError, RegistryUnreachable)):
                raise translate_error(e, ref) from None
            if isinstance(e, _Aborted) and e.__cause__ is None:
                raise
            raise
    return image_id


async def _download(svc, client: RegistryClient, repo: str, dl: _Download,
                    sem: asyncio.Semaphore, lease, emit) -> None:
    loop = asyncio.get_running_loop()
    async with sem:
        key = (str(svc.root), dl.digest)
        while True:
            # one download of a blob at a time per data root (another pull may be
            # fetching it): wait for that one, then use its blob or take over
            with _INFLIGHT_LOCK:
                other = _INFLIGHT.get(key)
                if other is None:
                    mine = threading.Event()
                    _INFLIGHT[key] = mine
                    break
            await loop.run_in_executor(None, other.wait)
        try:
            await _download_locked(svc, client, repo, dl, lease, emit, loop)
        finally:
            with _INFLIGHT_LOCK:
                _INFLIGHT.pop(key, None)
            mine.set()


_INFLIGHT: dict[tuple[str, str], threading.Event] = {}
_INFLIGHT_LOCK = threading.Lock()


async def _download_locked(svc, client: RegistryClient, repo: str, dl: _Download, lease, emit,
                           loop) -> None:
    content = svc.content
    lease.add(dl.digest)
    if content.exists(dl.digest):
        dl.update(path=str(content.path(dl.digest)), written=content.info(dl.digest).size,
                  done=True)
        emit(status("Download complete", dl.id))
        dl.complete_sent = True
        return
    ref = INGEST_PREFIX + dl.digest
    # O_DIRECT: the unpacker gets the bytes from memory, so the blob need not pass
    # through the page cache (half the pages a pull would otherwise fill)
    writer = content.writer(ref, direct=True)
    committed = False
    try:
        dl.update(path=str(content.ingest_path(ref)), written=writer.offset)
        failures = 0
        last_sent, last_t = -UPDATE_EVERY, 0.0
        while writer.offset < dl.size or dl.size == 0:
            try:
                stream = await client.open_blob(repo, dl.digest, writer.offset)
                try:
                    skip = writer.offset - stream.offset
                    buf: list[bytes] = []       # chunks as received (no copying them together)
                    buffered = 0
                    received = writer.offset
                    pending: list = []

                    def write_block(chunks: list[bytes]) -> None:
                        # in a thread: hashing and writing leave the event loop free
                        for c in chunks:
                            writer.write(c)
                        writer.flush()
                        dl.update(written=writer.flushed)

                    async def flush() -> None:
                        nonlocal buffered
                        # at most one block in flight per download, overlapping the next;
                        # shielded: a cancel must not forget a write its thread still does
                        if pending:
                            await asyncio.shield(pending[-1])
                            pending.pop()
                        pending.append(loop.run_in_executor(None, write_block, buf[:]))
                        buf.clear()
                        buffered = 0

                    try:
                        async for chunk in stream.chunks():
                            if skip > 0:
                                if len(chunk) <= skip:
                                    skip -= len(chunk)
                                    continue
                                chunk, skip = chunk[skip:], 0
                            if received + len(chunk) > dl.size:
                                raise RegistryError(ErrorCode.SIZE_INVALID, f"blob {dl.digest} "
                                                    f"is larger than its descriptor says ({dl.size})")
                            dl.received(received, chunk)
                            buf.append(chunk)
                            buffered += len(chunk)
                            received += len(chunk)
                            if buffered < FLUSH_EVERY:
                                continue
                            await flush()
                            now = time.monotonic()
                            if received - last_sent >= UPDATE_EVERY and now - last_t >= UPDATE_INTERVAL:
                                last_sent, last_t = received, now
                                emit(status("Downloading", dl.id, (received, dl.size)))
                        if buf:
                            await flush()
                        while pending:
                            await asyncio.shield(pending[-1])
                            pending.pop()
                    finally:
                        # on any failure the last block's thread may still be writing:
                        # it ends before the writer is closed below
                        for fut in pending:
                            await asyncio.wait([fut])
                            if not fut.cancelled():
                                fut.exception()
                        pending.clear()
                finally:
                    stream.close()
                if dl.size == 0:
                    break
                if writer.offset < dl.size:
                    raise aiohttp.ClientPayloadError("connection closed before the blob ended")
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
                    aiohttp.ClientOSError, ConnectionError, asyncio.TimeoutError,
                    RegistryUnreachable) as e:
                failures += 1
                if failures > RETRIES:
                    raise RegistryUnreachable(f"downloading {dl.digest}: {e}") from None
                await asyncio.sleep(min(0.1 * 2 ** failures, 2.0))
        emit(status("Verifying Checksum", dl.id))
        commit = loop.run_in_executor(None, lease.commit, writer, dl.size, dl.digest)
        try:
            try:
                await asyncio.shield(commit)
            except asyncio.CancelledError:
                # the commit goes on in its thread: it must end before anything below
                # touches the writer again (closing it meanwhile raced the commit)
                try:
                    await commit
                    committed = True
                except InvalidParameter:
                    committed = True
                except BaseException:
                    pass
                raise
            committed = True
        except InvalidParameter:
            committed = True   # the ingest was discarded
            raise InvalidParameter(f"filesystem layer verification failed for digest "
                                   f"{dl.digest}") from None
        dl.update(done=True, path=str(content.path(dl.digest)), written=dl.size)
        emit(status("Download complete", dl.id))
        dl.complete_sent = True
        if dl.extracting:
            emit(status("Extracting", dl.id, (dl.extracting, dl.size)))
    except BaseException as e:
        if not committed:
            writer.close()      # keep the ingest: the next pull resumes it
        dl.update(error=e)
        raise


def _remember_sources(svc, ref: refs.Reference, digests: list[str]) -> None:
    try:
        from dockyard.images.push import BlobSources
        BlobSources(svc.root).add(ref.domain, ref.path, digests)
    except Exception:
        pass

