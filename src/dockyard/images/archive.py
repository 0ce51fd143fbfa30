"""``docker save`` / ``docker load`` archives.

Save writes what Docker 25+ writes and what Docker 20.10's ``load`` also
accepts: an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/*``)
plus Docker's ``manifest.json`` (``Config`` and ``Layers`` pointing into
``blobs/``), ``repositories`` and the legacy per-layer directories
(``<v1 id>/VERSION``, ``json`` and ``layer.tar``, a symlink into ``blobs/``). Config bytes and layer blobs are written
verbatim, so image IDs survive the round trip.

Load reads, in one streaming pass (the archive may be gzip/zstd compressed):
* Docker 20.10 archives (``<id>.json``, ``<layer>/layer.tar``, ``manifest.json``),
* Docker 25+ archives (the above in ``blobs/``, entries may be symlinks),
* plain OCI image layouts (``index.json`` -> manifest or index -> config, layers;
  the tag from ``io.containerd.image.name`` or ``org.opencontainers.image.ref.name``).
Every file is spooled into the content store as it streams by (verified against
its ``blobs/sha256/<hex>`` name), then each image is validated, its layers
unpacked (diffIDs checked) and the image recorded in one transaction. A bad
archive raises InvalidParameter and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
import uuid
from typing import TYPE_CHECKING, BinaryIO, Iterator

from dockyard.errors import InvalidParameter, NotFound
from dockyard.images import reference as refs
from dockyard.images.config import empty_container_config
from dockyard.images.unpack import (_STREAM_ERRORS, HashingReader, UnpackError,
                                    _is_decompress_error, _stream_error, decompressed,
                                    digest_layer, iter_tar)

if TYPE_CHECKING:
    from dockyard.images.service import ImageService

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MAX_META = 16 << 20
_META_NAMES = ("manifest.json", "index.json", "repositories", "oci-layout")


# -- save ------------------------------------------------------------------------------

def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    ti.mtime = 0
    tf.addfile(ti, io.BytesIO(data))


def _add_dir(tf: tarfile.TarFile, name: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    ti.mtime = 0
    tf.addfile(ti)


def _select(svc: "ImageService", names: list[str]) -> list[tuple[str, list[refs.Reference]]]:
    """[(image id, [refs to record])] in the order asked, merged per image."""
    order: list[str] = []
    tags: dict[str, list[refs.Reference]] = {}
    for name in names:
        iid = svc.resolve(name)
        if iid not in tags:
            order.append(iid)
            tags[iid] = []
        chosen: list[refs.Reference] = []
        is_id = refs.ID_RE.match(name) or refs.is_digest(name) or (
            svc._is_id_ref(iid, name) and not svc._ref_lookup(name))
        if not is_id:
            ref = refs.parse_normalized(name)
            if ref.tag is None and ref.digest is None:
                # a bare repository: every tag of it (docker save busybox)
                for r in svc.store.query("SELECT name, image_id FROM refs WHERE kind = 'tag'"):
                    rr = refs.parse(r["name"])
                    if rr.name == ref.name:
                        if r["image_id"] not in tags:
                            order.append(r["image_id"])
                            tags[r["image_id"]] = []
                        if rr not in tags[r["image_id"]]:
                            tags[r["image_id"]].append(rr)
                continue
            if ref.tag:
                chosen.append(ref)
        for r in chosen:
            if r not in tags[iid]:
                tags[iid].append(r)
    return [(i, tags[i]) for i in order]


def export_images(svc: "ImageService", names: list[str], out: BinaryIO) -> None:
    if not names:
        raise InvalidParameter("no images specified")
    selected = _select(svc, names)
    tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
    written: set[str] = set()
    manifest_json = []
    index_manifests = []
    repositories: dict[str, dict[str, str]] = {}
    written_dirs: set[str] = set()
    top_v1: dict[str, str] = {}
    _add_dir(tf, "blobs")
    _add_dir(tf, "blobs/sha256")

    def add_blob(digest: str) -> int:
        info = svc.content.info(digest)
        if digest not in written:
            ti = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
            ti.size = info.size
            ti.mode = 0o644
            ti.mtime = 0
            with svc.content.open(digest) as f:
                tf.addfile(ti, f)
            written.add(digest)
        return info.size

    from dockyard.images.service import chain_ids

    for iid, tags in selected:
        config = svc.get_config_bytes(iid)
        cfg = json.loads(config)
        diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
        layer_descs = []
        for chain in chain_ids(diff_ids):
            row = svc._layer(chain)
            if row is None or not row["blob_digest"] or not svc.content.exists(row["blob_digest"]):
                raise NotFound(f"layer {chain} of image {iid} has no stored tar")
            size = add_blob(row["blob_digest"])
            layer_descs.append({"mediaType": row["media_type"] or MT_OCI_LAYER,
                                "digest": row["blob_digest"], "size": size})
        add_blob(iid)
        # Docker 20.10's legacy layout as well: <v1 id>/{VERSION,json,layer.tar}, the tar a
        # symlink into blobs/ (what Docker 25+ writes too); older tools follow these
        parent_v1 = ""
        for n, (chain, d) in enumerate(zip(chain_ids(diff_ids), layer_descs)):
            top = n == len(layer_descs) - 1
            v1 = hashlib.sha256(f"{parent_v1} {chain} {iid if top else ''}".encode()).hexdigest()
            if v1 not in written_dirs:
                written_dirs.add(v1)
                _add_dir(tf, v1)
                _add_bytes(tf, f"{v1}/VERSION", b"1.0")
                v1json = {"id": v1, **({"parent": parent_v1} if parent_v1 else {}),
                          "created": "1970-01-01T00:00:00Z" if not top else
                          cfg.get("created", "1970-01-01T00:00:00Z"),
                          "container_config": empty_container_config(),
                          "os": cfg.get("os", "linux")}
                if top and cfg.get("config") is not None:
                    v1json["config"] = cfg["config"]
                _add_bytes(tf, f"{v1}/json", json.dumps(v1json, separators=(",", ":")).encode())
                ti = tarfile.TarInfo(f"{v1}/layer.tar")
                ti.type = tarfile.SYMTYPE
                ti.linkname = "../blobs/sha256/" + d["digest"].split(":", 1)[1]
                ti.mtime = 0
                ti.mode = 0o777
                tf.addfile(ti)
            parent_v1 = v1
        top_v1[iid] = parent_v1
        manifest_bytes = _manifest_for(svc, iid, config, layer_descs)
        mdigest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        if mdigest not in written:
            _add_bytes(tf, "blobs/sha256/" + mdigest.split(":", 1)[1], manifest_bytes)
            written.add(mdigest)
        desc = {"mediaType": json.loads(manifest_bytes).get("mediaType", MT_OCI_MANIFEST),
                "digest": mdigest, "size": len(manifest_bytes)}
        if tags:
            for t in tags:
                index_manifests.append({**desc, "annotations": {
                    "io.containerd.image.name": str(t),
                    "org.opencontainers.image.ref.name": t.tag}})
        else:
            index_manifests.append(desc)
        manifest_json.append({
            "Config": "blobs/sha256/" + iid.split(":", 1)[1],
            "RepoTags": [t.familiar() for t in tags] or None,
            "Layers": ["blobs/sha256/" + d["digest"].split(":", 1)[1] for d in layer_descs],
        })
        if tags and layer_descs:
            for t in tags:
                repositories.setdefault(t.familiar_name, {})[t.tag] = top_v1[iid]
        svc._emit("save", iid, {"name": iid})
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": index_manifests}
    _add_bytes(tf, "index.json", json.dumps(index, separators=(",", ":")).encode())
    _add_bytes(tf, "manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode())
    _add_bytes(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    if repositories:
        _add_bytes(tf, "repositories", json.dumps(repositories, separators=(",", ":")).encode())
    tf.close()


def _manifest_for(svc: "ImageService", iid: str, config: bytes, layer_descs: list[dict]) -> bytes:
    row = svc._row(iid)
    md = row["manifest_digest"]
    if md and svc.content.exists(md):
        data = svc.content.read(md)
        try:
            m = json.loads(data)
            if (m.get("config") or {}).get("digest") == iid and \
                    [d.get("digest") for d in m.get("layers") or []] == \
                    [d["digest"] for d in layer_descs]:
                return data
        except ValueError:
            pass
    m = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
         "config": {"mediaType": MT_OCI_CONFIG, "digest": iid, "size": len(config)},
         "layers": layer_descs}
    return json.dumps(m, separators=(",", ":")).encode()


# -- load ------------------------------------------------------------------------------

class _Archive:
    def __init__(self):
        self.files: dict[str, tuple] = {}  # path -> ("blob", digest, size) | ("data", bytes) | ("link", target)

    def resolve(self, path: str, what: str) -> tuple:
        p = _clean(path)
        for _ in range(16):
            e = self.files.get(p)
            if e is None:
                raise InvalidParameter(f"invalid archive: {what} {path!r} not found in the archive")
            if e[0] != "link":
                return e
            p = e[1]
        raise InvalidParameter(f"invalid archive: too many links resolving {path!r}")

    def data(self, path: str, what: str, svc) -> bytes:
        e = self.resolve(path, what)
        if e[0] == "data":
            return e[1]
        if e[2] > MAX_META:
            raise InvalidParameter(f"invalid archive: {what} {path!r} is too large")
        return svc.content.read(e[1])

    def blob(self, digest: str, what: str) -> tuple:
        hexd = digest.split(":", 1)[-1]
        return self.resolve(f"blobs/sha256/{hexd}", what)


def _clean(name: str) -> str:
    if name.startswith("/"):
        raise InvalidParameter(f"invalid archive: absolute path {name!r}")
    p = posixpath.normpath(name)
    if p == ".." or p.startswith("../"):
        raise InvalidParameter(f"invalid archive: path {name!r} escapes the archive")
    return p


def _spool(svc: "ImageService", stream: BinaryIO, leases: list[str]) -> _Archive:
    try:
        return _spool_inner(svc, stream, leases)
    except _STREAM_ERRORS as e:
        raise _stream_error(e) from None
    except Exception as e:
        if _is_decompress_error(e):
            raise _stream_error(e) from None
        raise


def _spool_inner(svc: "ImageService", stream: BinaryIO, leases: list[str]) -> _Archive:
    ar = _Archive()
    src = HashingReader(stream)
    plain, _ = decompressed(src)
    for tf, m in iter_tar(plain):
        name = _clean(m.name)
        if name == ".":
            continue
        if m.isdir():
            continue
        if m.issym():
            target = m.linkname
            target = _clean(target.lstrip("/") if target.startswith("/")
                            else posixpath.join(posixpath.dirname(name), target))
            ar.files[name] = ("link", target)
            continue
        if m.islnk():
            ar.files[name] = ("link", _clean(m.linkname.lstrip("/")))
            continue
        if not m.isreg():
            raise InvalidParameter(f"invalid archive: unexpected entry {m.name!r}")
        f = tf.extractfile(m)
        base = posixpath.basename(name)
        if name in _META_NAMES or base in ("json", "VERSION"):
            if m.size > MAX_META:
                raise InvalidParameter(f"invalid archive: {name} is too large")
            data = f.read()
            if len(data) != m.size:
                raise UnpackError("invalid tar stream: unexpected EOF")
            ar.files[name] = ("data", data)
            continue
        w = svc.content.writer(f"load-{uuid.uuid4().hex}")
        try:
            n = w.copy_from(f, m.size)
            if n != m.size:
                raise UnpackError(f"invalid tar stream: unexpected EOF in {m.name!r}")
            expected = None
            if name.startswith("blobs/sha256/"):
                expected = "sha256:" + name.rsplit("/", 1)[1]
            try:
                with svc._lock:     # no GC between the commit and the lease
                    digest = w.commit(size=m.size, expected=expected)
                    svc._add_lease(digest)
                    leases.append(digest)
            except InvalidParameter:
                raise InvalidParameter(
                    f"invalid archive: blob {name} does not match its digest") from None
        except BaseException:
            w.abort()
            raise
        ar.files[name] = ("blob", digest, m.size)
    return ar


def _index_manifests(index: dict) -> list[dict]:
    ms = index.get("manifests") or []
    if not isinstance(ms, list):
        raise InvalidParameter("invalid archive: index manifests is not a list")
    return ms


class _ImagePlan:
    def __init__(self, config_digest, config_bytes, layers, tags, manifest_digest=None):
        self.config_digest = config_digest
        self.config_bytes = config_bytes
        self.layers = layers          # [(blob digest, media type or None)]
        self.tags = tags              # [Reference]
        self.manifest_digest = manifest_digest
        self.cfg = None
        self.diff_ids: list[str] = []


def _plans(svc: "ImageService", ar: _Archive) -> list[_ImagePlan]:
    plans: list[_ImagePlan] = []
    if "manifest.json" in ar.files:
        try:
            manifest = json.loads(ar.data("manifest.json", "manifest", svc))
        except ValueError as e:
            raise InvalidParameter(f"invalid archive: manifest.json: {e}") from None
        if not isinstance(manifest, list):
            raise InvalidParameter("invalid archive: manifest.json is not a list")
        for entry in manifest:
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
                raise InvalidParameter("invalid archive: bad manifest.json entry")
            ce = ar.resolve(entry["Config"], "config")
            cbytes = ce[1] if ce[0] == "data" else svc.content.read(ce[1])
            layers = []
            for lp in entry.get("Layers") or []:
                le = ar.resolve(lp, "layer")
                if le[0] != "blob":
                    raise InvalidParameter(f"invalid archive: layer {lp!r} is not a file")
                layers.append((le[1], None))
            tags = []
            for t in entry.get("RepoTags") or []:
                tags.append(refs.parse_normalized(t).with_default_tag())
            plans.append(_ImagePlan(None, cbytes, layers, tags))
        return plans
    if "index.json" in ar.files:
        try:
            index = json.loads(ar.data("index.json", "index", svc))
        except ValueError as e:
            raise InvalidParameter(f"invalid archive: index.json: {e}") from None
        by_manifest: dict[str, _ImagePlan] = {}
        for desc in _index_manifests(index):
            for mdigest, tagname in _walk_index(svc, ar, desc, None):
                plan = by_manifest.get(mdigest)
                if plan is None:
                    mbytes = svc.content.read(ar.blob(mdigest, "manifest")[1])
                    m = json.loads(mbytes)
                    cdesc = m.get("config") or {}
                    ce = ar.blob(cdesc.get("digest", ""), "config")
                    if ce[1] != cdesc.get("digest"):
                        raise InvalidParameter("invalid archive: config digest mismatch")
                    layers = []
                    for ld in m.get("layers") or []:
                        le = ar.blob(ld.get("digest", ""), "layer")
                        if le[1] != ld.get("digest"):
                            raise InvalidParameter("invalid archive: layer digest mismatch")
                        layers.append((le[1], ld.get("mediaType")))
                    plan = _ImagePlan(ce[1], svc.content.read(ce[1]), layers, [], mdigest)
                    by_manifest[mdigest] = plan
                    plans.append(plan)
                if tagname:
                    r = _ref_from_annotation(tagname)
                    if r is not None and r not in plan.tags:
                        plan.tags.append(r)
        return plans
    raise InvalidParameter("invalid archive: no manifest.json or index.json found")


def _ref_from_annotation(name: str) -> refs.Reference | None:
    try:
        if "/" in name or ":" in name or refs.REFERENCE_RE.match(name) is None:
            return refs.parse_normalized(name).with_default_tag()
    except InvalidParameter:
        return None
    return None  # a bare tag ("latest") names no repository


def _walk_index(svc, ar: _Archive, desc: dict, tagname, depth=0) -> Iterator[tuple[str, str]]:
    if depth > 4:
        raise InvalidParameter("invalid archive: nested indexes too deep")
    ann = desc.get("annotations") or {}
    tagname = ann.get("io.containerd.image.name") or ann.get(
        "org.opencontainers.image.ref.name") or tagname
    mt = desc.get("mediaType")
    digest = desc.get("digest") or ""
    if not refs.is_digest(digest):
        raise InvalidParameter(f"invalid archive: bad digest {digest!r}")
    entry = ar.blob(digest, "manifest")
    data = svc.content.read(entry[1])
    try:
        doc = json.loads(data)
    except ValueError:
        raise InvalidParameter(f"invalid archive: manifest {digest} is not JSON") from None
    mt = mt or doc.get("mediaType")
    if mt in INDEX_TYPES or "manifests" in doc:
        children = doc.get("manifests") or []
        chosen = [c for c in children if (c.get("platform") or {}).get("os", "linux") == "linux"
                  and (c.get("platform") or {}).get("architecture", "amd64") == "amd64"]
        if not chosen and children:
            chosen = children[:1]
        for c in chosen[:1]:
            yield from _walk_index(svc, ar, c, tagname, depth + 1)
        return
    yield digest, tagname


def _progress_bar(current: int, total: int) -> str:
    width = 50
    filled = width if total <= 0 else min(width, current * width // total)
    arrow = "=" * max(filled - 1, 0) + (">" if filled < width else "=")
    bar = arrow.ljust(width)
    return f"[{bar}] {_human(current)}/{_human(total)}"


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}B"


def load_images(svc: "ImageService", stream: BinaryIO, quiet: bool = False) -> Iterator[dict]:
    """Generator of progress messages, yielded image by image. The archive is read and
    every image validated before the first message, so a bad archive fails on the first
    ``next()``; a generator closed early leaves no garbage behind."""
    from dockyard.images.service import chain_ids

    leases: list[str] = []
    messages: list[dict] = []
    loaded: list[tuple[str, list]] = []
    ok = False
    try:
        ar = _spool(svc, stream, leases)
        plans = _plans(svc, ar)
        # validate every image before unpacking anything
        for p in plans:
            try:
                p.cfg = json.loads(p.config_bytes)
            except ValueError as e:
                raise InvalidParameter(f"invalid archive: image config is not JSON: {e}") from None
            if not isinstance(p.cfg, dict):
                raise InvalidParameter("invalid archive: image config is not an object")
            p.diff_ids = list((p.cfg.get("rootfs") or {}).get("diff_ids") or [])
            if not all(refs.is_digest(d) for d in p.diff_ids):
                raise InvalidParameter("invalid archive: bad diff_id in image config")
            if len(p.diff_ids) != len(p.layers):
                raise InvalidParameter(f"invalid manifest, layers length mismatch: expected "
                                       f"{len(p.diff_ids)}, got {len(p.layers)}")
            for (blob, _), diff_id in zip(p.layers, p.diff_ids):
                if blob == diff_id:
                    continue
                with svc.content.open(blob) as f:
                    head = f.read(4)
                from dockyard.images.unpack import detect_compression
                if detect_compression(head) == "none":
                    raise InvalidParameter(f"invalid archive: layer {blob} does not match "
                                           f"diff_id {diff_id}")
                # compressed: checked while unpacking (or here if already unpacked)
                if svc._layer(chain_ids(p.diff_ids)[p.diff_ids.index(diff_id)]) is not None:
                    with svc.content.open(blob) as f:
                        got, _, _ = digest_layer(f)
                    if got != diff_id:
                        raise InvalidParameter(f"invalid archive: layer {blob} does not match "
                                               f"diff_id {diff_id}")
        for p in plans:
            def open_layer(i, p=p):
                return svc.content.open(p.layers[i][0])

            def blob_info(i, p=p):
                blob, mt = p.layers[i]
                if not mt:
                    from dockyard.images.unpack import detect_compression
                    from dockyard.images.service import LAYER_MEDIA
                    with svc.content.open(blob) as f:
                        mt = LAYER_MEDIA[detect_compression(f.read(4))]
                return blob, mt

            def progress(i, diff_id, state, p=p):
                if quiet:
                    return
                size = svc.content.info(p.layers[i][0]).size
                cur = size if state in ("done", "exists") else 0
                messages.append({"status": "Loading layer", "progressDetail":
                                 {"current": cur, "total": size},
                                 "progress": _progress_bar(cur, size), "id": diff_id[7:19]})

            top = svc._ensure_layers(p.diff_ids, open_layer, leases, progress, blob_info)
            blobs = [b for b, _ in p.layers]
            iid, replaced = svc._store_image(p.config_bytes, top, p.tags, blobs=blobs,
                                             manifest=p.manifest_digest)
            for ref, old in replaced:
                messages.append({"stream": f"The image {ref.familiar()} already exists, renaming "
                                           f"the old one with ID {old} to empty string\n"})
            if p.tags:
                for t in p.tags:
                    messages.append({"stream": f"Loaded image: {t.familiar()}\n"})
            else:
                messages.append({"stream": f"Loaded image ID: {iid}\n"})
            loaded.append((iid, p.tags))
            svc._emit("load", iid, {"name": iid})
            for t in p.tags:
                svc._emit("tag", iid, {"name": t.familiar()})
            while messages:
                yield messages.pop(0)
        ok = True
    finally:
        for item in leases:
            svc._drop_lease(item)
        if not ok:
            svc.gc()

