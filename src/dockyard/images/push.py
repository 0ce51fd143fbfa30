"""``docker push``: send an image's blobs and manifest to a registry.

    async for msg in push(svc, "127.0.0.1:5000/am/busybox", "v1", auth=("u", "p")):
        ...   # Docker's JSON progress messages

Only blobs the registry lacks are uploaded (HEAD first); a blob this daemon
has seen in another repository of the same registry is mounted from there
(``POST ?mount=&from=``). Layers kept uncompressed (imported, committed,
loaded) are gzipped deterministically (mtime 0, fixed level) into the content
store for the upload, and the diffID -> gzip digest mapping is remembered, so
a second push of the same layer finds "Layer already exists" without
compressing again. Pulled images are pushed with their original manifest
(same digest) when all its blobs are still here; others get a Docker schema 2
manifest (OCI when a layer is zstd).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import uuid
import zlib
from pathlib import Path
from typing import AsyncIterator

from dockyard.distribution.errors import ErrorCode, RegistryError
from dockyard.distribution.manifest import (DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST,
                                            OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
                                            OCI_MANIFEST, parse_manifest)
from dockyard.errors import InvalidParameter, NotFound, SystemError_, Unauthorized
from dockyard.images import reference as refs
from dockyard.images.pull import UPDATE_EVERY, UPDATE_INTERVAL, short, status
from dockyard.images.registry_client import RegistryClient, RegistryUnreachable

MAX_CONCURRENT_UPLOADS = 5
GZIP_LEVEL = 1          # deterministic output for a given zlib: same layer, same digest
SAMPLE = 4 << 20        # bytes looked at to tell incompressible layers
INCOMPRESSIBLE = 0.97   # compressed/plain ratio above which a layer is stored
READ_CHUNK = 1 << 20

GZIP_TYPES = (DOCKER_LAYER, OCI_LAYER_GZIP)
ZSTD_TYPES = (OCI_LAYER_ZSTD,)


class BlobSources:
    """What this daemon knows about where blobs live, under ``<root>/distribution``:

    * ``sources/<hex>``: the ``domain/repo`` names a blob was pulled from or pushed to
      (candidates for a cross-repository mount);
    * ``gzip/<diffid hex>``: the gzip blob made for an uncompressed layer.
    """

    def __init__(self, root: str | os.PathLike):
        self.dir = Path(root) / "distribution"

    def _write(self, path: Path, data: object) -> None:
        from dockyard import statefiles

        statefiles.makedirs(path.parent)    # owner-only, as all of the data root
        statefiles.write(path, json.dumps(data))

    def _read(self, path: Path, default):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return default

    def sources(self, digest: str) -> list[str]:
        return list(self._read(self.dir / "sources" / digest.split(":", 1)[-1], []))

    def add(self, domain: str, repo: str, digests: list[str]) -> None:
        name = f"{domain}/{repo}"
        for d in digests:
            p = self.dir / "sources" / d.split(":", 1)[-1]
            cur = self._read(p, [])
            if name in cur:
                continue
            self._write(p, ([name] + cur)[:16])

    def gzip_of(self, diff_id: str) -> dict | None:
        return self._read(self.dir / "gzip" / diff_id.split(":", 1)[-1], None)

    def set_gzip(self, diff_id: str, digest: str, size: int) -> None:
        self._write(self.dir / "gzip" / diff_id.split(":", 1)[-1], {"digest": digest, "size": size})


def gzip_level(sample: bytes) -> int:
    """The deflate level for a layer, from its first bytes: data that does not
    compress (random, already compressed) is stored (level 0), which is ~30x faster
    than deflating it for nothing. A function of the bytes alone: deterministic."""
    if len(sample) < 64 * 1024:
        return GZIP_LEVEL
    c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
    n = len(c.compress(sample)) + len(c.flush())
    return 0 if n > len(sample) * INCOMPRESSIBLE else GZIP_LEVEL


def gzip_layer(svc, src_digest: str, lease) -> tuple[str, int]:
    """Gzip an uncompressed layer blob into the content store; (digest, size)."""
    w = svc.content.writer(f"write-gzip-{uuid.uuid4().hex}")
    try:
        with svc.content.open(src_digest) as src:
            sample = src.read(SAMPLE)
            level = gzip_level(sample)
            with gzip.GzipFile(filename="", mode="wb", fileobj=w, compresslevel=level,
                               mtime=0) as gz:
                gz.write(sample)
                shutil.copyfileobj(src, gz, READ_CHUNK)
        size = w.offset
        digest = lease.commit(w, size)
    except BaseException:
        w.abort()
        raise
    return digest, size


def _translate(e: Exception, name: str) -> Exception:
    if isinstance(e, RegistryUnreachable):
        return SystemError_(e.message)
    if isinstance(e, RegistryError):
        msg = f"{e.code.name.lower().replace('_', ' ')}: {e.message}"
        if e.code is ErrorCode.UNAUTHORIZED:
            return Unauthorized(msg)
        if e.code is ErrorCode.DENIED:
            return Unauthorized(f"denied: {e.message}") if e.status == 401 else SystemError_(
                f"denied: {e.message}")
        return SystemError_(msg) if e.status >= 500 else InvalidParameter(msg)
    return e


class _Layer:
    def __init__(self, diff_id: str, chain: str, row):
        self.diff_id = diff_id
        self.chain = chain
        self.id = short(diff_id)
        self.blob = row["blob_digest"] if row is not None else None
        self.media = (row["media_type"] if row is not None else None) or OCI_LAYER
        self.size = int(row["size"]) if row is not None else 0
        self.push_digest: str | None = None
        self.push_size = 0
        self.push_media = DOCKER_LAYER


def _tags_to_push(svc, ref: refs.Reference) -> list[tuple[refs.Reference, str]]:
    if ref.tag:
        image_id = svc.image_for_reference(str(ref))
        if image_id is None:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
        return [(ref, image_id)]
    rows = svc.store.query("SELECT name, image_id FROM refs WHERE kind = 'tag' ORDER BY name")
    out = []
    for r in rows:
        rr = refs.parse(r["name"])
        if rr.name == ref.name and rr.tag:
            out.append((rr, r["image_id"]))
    if not out:
        raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
    return out


async def push(svc, name: str, tag: str | None = None, *, auth: tuple[str, str] | None = None,
               insecure_registries: tuple[str, ...] | list[str] = (),
               max_concurrent_uploads: int = MAX_CONCURRENT_UPLOADS,
               chunk_size: int | None = None) -> AsyncIterator[dict]:
    """Push ``name`` (all its tags when no tag is given). Yields progress messages;
    errors before the first message are raised from the first ``__anext__``."""
    try:
        ref = refs.parse_normalized(name)
    except InvalidParameter:
        raise
    if ref.digest:
        raise InvalidParameter("cannot push a digest reference")
    if tag:
        refs.validate_tag(tag)
        ref = ref.with_tag(tag)
    targets = _tags_to_push(svc, ref)
    queue: asyncio.Queue = asyncio.Queue()
    end = object()

    async def run():
        async with RegistryClient(ref.domain, auth, insecure_registries) as client:
            queue.put_nowait(status(f"The push refers to repository [{ref.name}]"))
            for tref, image_id in targets:
                await _push_one(svc, client, tref, image_id, queue.put_nowait,
                                max_concurrent_uploads, chunk_size)

    task = asyncio.ensure_future(run())
    task.add_done_callback(lambda _t: queue.put_nowait(end))
    try:
        while True:
            msg = await queue.get()
            if msg is end:
                break
            yield msg
        try:
            task.result()
        except (RegistryError, RegistryUnreachable) as e:
            raise _translate(e, name) from None
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except BaseException:
                pass


def push_sync(svc, name: str, tag: str | None = None, **kw) -> list[dict]:
    async def go():
        return [m async for m in push(svc, name, tag, **kw)]
    return asyncio.run(go())


async def _push_one(svc, client: RegistryClient, ref: refs.Reference, image_id: str, emit,
                    concurrency: int, chunk_size: int | None) -> None:
    from dockyard.images.service import chain_ids

    loop = asyncio.get_running_loop()
    sources = BlobSources(svc.root)
    repo = ref.path
    config_bytes = svc.get_config_bytes(image_id)
    cfg = json.loads(config_bytes)
    diff_ids = list((cfg.get("rootfs") or {}).get("diff_ids") or [])
    chains = chain_ids(diff_ids)
    layers = [_Layer(d, c, svc.layer_record(c)) for d, c in zip(diff_ids, chains)]
    top_down = list(reversed(layers))
    seen: set[str] = set()
    unique = []
    for layer in top_down:
        if layer.diff_id not in seen:
            seen.add(layer.diff_id)
            unique.append(layer)
    for layer in unique:
        emit(status("Preparing", layer.id))
    for layer in unique[concurrency:]:
        emit(status("Waiting", layer.id))

    sem = asyncio.Semaphore(concurrency)
    with svc.lease() as lease:
        async def one(layer: _Layer) -> None:
            async with sem:
                await _push_layer(svc, client, repo, ref, layer, lease, sources, emit,
                                  chunk_size, loop)

        tasks = [asyncio.ensure_future(one(layer)) for layer in unique]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
        by_diff = {layer.diff_id: layer for layer in unique}
        for layer in layers:
            src = by_diff[layer.diff_id]
            layer.push_digest, layer.push_size, layer.push_media = (
                src.push_digest, src.push_size, src.push_media)

        # config
        if await client.blob_size(repo, image_id) is None:
            _, loc = await client.start_upload(repo)
            await client.put_blob(repo, loc, image_id, len(config_bytes), lambda: config_bytes)

        body, media = _manifest_for(svc, image_id, config_bytes, layers)
        digest = await client.put_manifest(repo, ref.tag, body, media)
    sources.add(ref.domain, repo, [layer.push_digest for layer in layers])
    # the pushed digest becomes one of the image's RepoDigests, as dockerd records it
    try:
        svc.add_digest_reference(f"{ref.name}@{digest}", image_id)
    except Exception:
        pass
    from dockyard.images.pull import _event
    _event(svc, "push", ref)
    emit(status(f"{ref.tag}: digest: {digest} size: {len(body)}"))
    emit({"progressDetail": {}, "aux": {"Tag": ref.tag, "Digest": digest, "Size": len(body)}})


def _manifest_for(svc, image_id: str, config_bytes: bytes, layers: list[_Layer]) -> tuple[bytes, str]:
    row = svc.store.query_one("SELECT manifest_digest FROM images WHERE id = ?", (image_id,))
    stored = row["manifest_digest"] if row is not None else None
    if stored and svc.content.exists(stored):
        try:
            body = svc.content.read(stored)
            m = parse_manifest(body)
            if (str(m.config.digest) == image_id
                    and [str(d.digest) for d in m.layers] == [la.push_digest for la in layers]):
                return body, m.media_type
        except Exception:
            pass
    oci = any(la.push_media in ZSTD_TYPES or la.push_media == OCI_LAYER for la in layers)
    if oci:
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": OCI_CONFIG, "digest": image_id, "size": len(config_bytes)},
               "layers": [{"mediaType": _oci_media(la.push_media), "digest": la.push_digest,
                           "size": la.push_size} for la in layers]}
        return json.dumps(doc, indent=3).encode(), OCI_MANIFEST
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
           "config": {"mediaType": DOCKER_CONFIG, "size": len(config_bytes), "digest": image_id},
           "layers": [{"mediaType": DOCKER_LAYER, "size": la.push_size, "digest": la.push_digest}
                      for la in layers]}
    return json.dumps(doc, indent=3).encode(), DOCKER_MANIFEST


def _oci_media(media: str) -> str:
    if media in GZIP_TYPES:
        return OCI_LAYER_GZIP
    return media


async def _push_layer(svc, client: RegistryClient, repo: str, ref: refs.Reference, layer: _Layer,
                      lease, sources: BlobSources, emit, chunk_size, loop) -> None:
    content = svc.content
    # which blob stands for this layer
    if layer.blob and layer.media in GZIP_TYPES + ZSTD_TYPES:
        layer.push_digest = layer.blob
        layer.push_media = DOCKER_LAYER if layer.media in GZIP_TYPES else layer.media
        lease.add(layer.blob)
    else:
        known = sources.gzip_of(layer.diff_id)
        if known:
            layer.push_digest, layer.push_size = known["digest"], int(known["size"])
            lease.add(layer.push_digest)
        layer.push_media = DOCKER_LAYER
    if layer.push_digest and content.exists(layer.push_digest):
        layer.push_size = content.info(layer.push_digest).size

    # already there?
    if layer.push_digest:
        size = await client.blob_size(repo, layer.push_digest)
        if size is not None:
            layer.push_size = size or layer.push_size
            emit(status("Layer already exists", layer.id))
            return
        for src in sources.sources(layer.push_digest):
            domain, _, src_repo = src.partition("/")
            if domain != ref.domain or src_repo == repo:
                continue
            try:
                mounted, loc = await client.start_upload(repo, mount=layer.push_digest,
                                                         from_repo=src_repo)
            except RegistryError:
                continue
            if mounted:
                emit(status(f"Mounted from {src_repo}", layer.id))
                return
            break   # the registry opened a plain upload instead: use the blob below

    # make the blob if we do not have it
    if not layer.push_digest or not content.exists(layer.push_digest):
        if not layer.blob or not content.exists(layer.blob):
            raise NotFound(f"layer {layer.diff_id} has no stored tar to push")
        digest, size = await loop.run_in_executor(None, gzip_layer, svc, layer.blob, lease)
        if layer.push_digest and digest != layer.push_digest:
            layer.push_digest = None
        layer.push_digest, layer.push_size = digest, size
        sources.set_gzip(layer.diff_id, digest, size)
        if await client.blob_size(repo, digest) is not None:
            emit(status("Layer already exists", layer.id))
            return

    await _upload(svc, client, repo, layer, emit, chunk_size)
    emit(status("Pushed", layer.id))


async def _upload(svc, client: RegistryClient, repo: str, layer: _Layer, emit,
                  chunk_size: int | None) -> None:
    import time

    path = svc.content.path(layer.push_digest)
    total = layer.push_size
    state = {"sent": 0, "last": -UPDATE_EVERY, "t": 0.0}

    def note(n: int) -> None:
        state["sent"] += n
        now = time.monotonic()
        if state["sent"] - state["last"] >= UPDATE_EVERY and now - state["t"] >= UPDATE_INTERVAL:
            state["last"], state["t"] = state["sent"], now
            emit(status("Pushing", layer.id, (state["sent"], total)))

    async def chunks(size: int):
        with open(path, "rb") as f:
            while True:
                b = f.read(size)
                if not b:
                    break
                note(len(b))
                yield b

    for attempt in range(3):
        state["sent"] = 0
        try:
            _, loc = await client.start_upload(repo)
            if chunk_size:
                loc = await client.patch_chunks(repo, loc, chunks(chunk_size))
                await client.finish_upload(repo, loc, layer.push_digest)
            else:
                await client.put_blob(repo, loc, layer.push_digest, total,
                                      lambda: chunks(READ_CHUNK))
            return
        except RegistryUnreachable:
            if attempt == 2:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
