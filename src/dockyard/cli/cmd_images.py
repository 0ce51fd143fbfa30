"""Image commands: images, inspect, tag, rmi, history, import, save, load, image prune."""

from __future__ import annotations

import json
import os
import sys

from dockyard import errors
from dockyard.cli.docker import CommandError
from dockyard.cli.format import Context, Template, format_rows
from dockyard.cli.parser import CommandParser, UsageError
from dockyard.cli.units import ellipsis, human_size, since, truncate_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def familiar(name: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if prefix == "docker.io/" and "/" not in rest.split(":")[0].split("@")[0]:
                return "library/" + rest
            return rest
    return name


def _split_tag(ref: str) -> tuple[str, str]:
    slash, colon = ref.rfind("/"), ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, ""


def _parse_filter_flags(values: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not eq:
            raise UsageError(f"invalid argument \"{v}\" for \"-f, --filter\" flag: bad format "
                             "of filter (expected name=value)\nSee 'dockyard --help'.", 125)
        out.setdefault(k.strip().lower(), []).append(val)
    return out


# -------------------------------------------------------------------------- images


class ImageRow(Context):
    FIELDS = ("Containers", "CreatedAt", "CreatedSince", "Digest", "ID", "Repository",
              "SharedSize", "Size", "Tag", "UniqueSize", "VirtualSize")
    HEADER = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
              "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
              "Containers": "CONTAINERS", "VirtualSize": "SIZE", "SharedSize": "SHARED SIZE",
              "UniqueSize": "UNIQUE SIZE"}

    def __init__(self, img: dict, repo: str, tag: str, digest: str, trunc: bool):
        self.img, self.Repository, self.Tag, self.Digest, self.trunc = img, repo, tag, digest, trunc

    @property
    def ID(self) -> str:
        return truncate_id(self.img["Id"]) if self.trunc else self.img["Id"]

    @property
    def CreatedSince(self) -> str:
        return since(self.img.get("Created", 0))

    @property
    def CreatedAt(self) -> str:
        from datetime import datetime

        t = datetime.fromtimestamp(self.img.get("Created", 0)).astimezone()
        z = t.strftime("%z")
        return t.strftime("%Y-%m-%d %H:%M:%S ") + z + " " + (t.tzname() or "")

    @property
    def Size(self) -> str:
        return human_size(self.img.get("Size", 0), 3)

    @property
    def VirtualSize(self) -> str:
        return human_size(self.img.get("Size", 0))

    @property
    def Containers(self) -> str:
        c = self.img.get("Containers", -1)
        return "N/A" if c == -1 else str(c)

    @property
    def SharedSize(self) -> str:
        s = self.img.get("SharedSize", -1)
        return "N/A" if s == -1 else human_size(s)

    @property
    def UniqueSize(self) -> str:
        s, sh = self.img.get("Size", -1), self.img.get("SharedSize", -1)
        return "N/A" if s == -1 or sh == -1 else human_size(s - sh)


def _is_dangling(img: dict) -> bool:
    tags, digs = img.get("RepoTags") or [], img.get("RepoDigests") or []
    if not tags and not digs:
        return True
    return tags == ["<none>:<none>"] and digs == ["<none>@<none>"]


def image_rows(images: list[dict], digests: bool, trunc: bool,
               need_digest: bool = False) -> list[ImageRow]:
    rows: list[ImageRow] = []
    for img in images:
        if _is_dangling(img):
            rows.append(ImageRow(img, "<none>", "<none>", "<none>", trunc))
            continue
        repo_tags: dict[str, list[str]] = {}
        repo_digests: dict[str, list[str]] = {}
        for ref in img.get("RepoTags") or []:
            if ref == "<none>:<none>":
                continue
            r, t = _split_tag(familiar(ref))
            if t:
                repo_tags.setdefault(r, []).append(t)
        for ref in img.get("RepoDigests") or []:
            if "@" in ref and ref != "<none>@<none>":
                r, d = ref.split("@", 1)
                repo_digests.setdefault(familiar(r), []).append(d)
        for repo in sorted(repo_tags):
            ds = repo_digests.pop(repo, [])
            if not (digests or need_digest):
                ds = []
            for tag in repo_tags[repo]:
                if not ds:
                    rows.append(ImageRow(img, repo, tag, "<none>", trunc))
                for d in ds:
                    rows.append(ImageRow(img, repo, tag, d, trunc))
        for repo in sorted(repo_digests):
            if digests:
                for d in repo_digests[repo]:
                    rows.append(ImageRow(img, repo, "<none>", d, trunc))
            else:
                rows.append(ImageRow(img, repo, "<none>", "", trunc))
    return rows


_IMAGES_TABLE = ("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{if .CreatedSince }}"
                 "{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}")
_IMAGES_TABLE_DIGEST = ("table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t"
                        "{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}")


def cmd_images(g, argv: list[str]) -> int:
    p = CommandParser("images", "[OPTIONS] [REPOSITORY[:TAG]]", "List images", nargs=(0, 1))
    p.add_flag("-a", "--all", help="Show all images (default hides intermediate images)")
    p.add_flag("--digests", help="Show digests")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_flag("--no-trunc", help="Don't truncate output")
    p.add_flag("-q", "--quiet", help="Only show image IDs")
    o = p.parse(argv)
    filters = _parse_filter_flags(o.filter)
    if o.args:
        filters.setdefault("reference", []).append(o.args[0])
    images = g.client().images(all=o.all, filters=filters)
    fmt = o.format or "table"
    if fmt == "table":
        fmt = "{{.ID}}" if o.quiet else (_IMAGES_TABLE_DIGEST if o.digests else _IMAGES_TABLE)
    elif fmt.startswith("table") and o.digests and "{{.Digest}}" not in fmt:
        fmt += "\t{{.Digest}}"
    need_digest = o.digests or "{{.Digest}}" in fmt
    rows = image_rows(images, o.digests, not o.no_trunc, need_digest)
    sys.stdout.write(format_rows(fmt, rows, ImageRow.HEADER))
    return 0


# -------------------------------------------------------------------------- inspect


def _print_inspect(objs: list[Any], fmt: str | None) -> None:
    if not fmt:
        sys.stdout.write(json.dumps(objs, indent=4, ensure_ascii=False) + "\n")
        return
    if fmt == "json":  # docker 28: one JSON array of every object found
        from dockyard.cli.format import go_json

        sys.stdout.write(go_json(objs, escape_html=True) + "\n")
        return
    tmpl = Template(fmt.replace("\\n", "\n").replace("\\t", "\t"))
    for o in objs:
        sys.stdout.write(tmpl.execute(o) + "\n")


def _inspect(g, names: list[str], fmt: str | None, kind: str | None) -> int:
    c = g.client()
    found: list[Any] = []
    errs: list[str] = []
    for name in names:
        try:
            if kind in (None, "image"):
                found.append(c.inspect_image(name))
            else:
                raise CommandError(f'"{kind}" is not a valid value for --type')
        except errors.NotFound as e:
            errs.append(f"Error: No such object: {name}" if kind is None
                        else f"Error response from daemon: {e}")
        except errors.DockyardError as e:
            errs.append(f"Error response from daemon: {e}")
    if found or not fmt:
        _print_inspect(found, fmt)
    if errs:
        sys.stderr.write("\n".join(errs) + "\n")
        return 1
    return 0


def cmd_inspect(g, argv: list[str]) -> int:
    p = CommandParser("inspect", "[OPTIONS] NAME|ID [NAME|ID...]",
                      "Return low-level information on Dockyard objects", nargs=(1, None))
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_flag("-s", "--size", help="Display total file sizes if the type is container")
    p.add_argument("--type", help="Only inspect objects of the given type")
    o = p.parse(argv)
    return _inspect(g, o.args, o.format, o.type)


def cmd_image_inspect(g, argv: list[str]) -> int:
    p = CommandParser("image inspect", "[OPTIONS] IMAGE [IMAGE...]",
                      "Display detailed information on one or more images", nargs=(1, None))
    p.add_argument("-f", "--format", help="Format output using a custom template")
    o = p.parse(argv)
    return _inspect(g, o.args, o.format, "image")


# -------------------------------------------------------------------------- tag / rmi


def _check_ref(ref: str) -> None:
    """Client-side reference check, with the Docker CLI's wording."""
    import re

    name, tag = _split_tag(ref.split("@", 1)[0])
    first, slash, rest = name.partition("/")
    # like distribution/reference: a first component with '.', ':' or capitals is a domain
    if slash and (any(c in first for c in ".:") or first == "localhost" or
                  first != first.lower()):
        path = rest
    else:
        path = name
    component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    valid_path = re.fullmatch(rf"{component}(?:/{component})*", path)
    if valid_path is None and re.fullmatch(rf"{component}(?:/{component})*", path.lower()):
        if path is name and "/" not in path:
            path = "library/" + path
        raise CommandError(f'Error parsing reference: "{ref}" is not a valid repository/tag: '
                           f"invalid reference format: repository name ({path}) must be "
                           "lowercase")
    domain_ok = path is name or re.fullmatch(r"[a-zA-Z0-9.-]+(?::[0-9]+)?", first)
    if valid_path is None or not domain_ok or \
            (tag and not re.fullmatch(r"[\w][\w.-]{0,127}", tag)) or ref.endswith(":"):
        raise CommandError(f'Error parsing reference: "{ref}" is not a valid repository/tag: '
                           "invalid reference format")


def cmd_tag(g, argv: list[str]) -> int:
    p = CommandParser("tag", "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
                      "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", nargs=(2, 2))
    o = p.parse(argv)
    src, target = o.args
    _check_ref(target)
    repo, tag = _split_tag(target)
    g.client().tag(src, familiar(repo), tag or "latest")
    return 0


def cmd_rmi(g, argv: list[str]) -> int:
    p = CommandParser("rmi", "[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images",
                      nargs=(1, None))
    p.add_flag("-f", "--force", help="Force removal of the image")
    p.add_flag("--no-prune", help="Do not delete untagged parents")
    o = p.parse(argv)
    c = g.client()
    failed = []
    for name in o.args:
        try:
            for item in c.remove_image(name, force=o.force, noprune=o.no_prune):
                if item.get("Untagged"):
                    print(f"Untagged: {item['Untagged']}")
                if item.get("Deleted"):
                    print(f"Deleted: {item['Deleted']}")
        except errors.DockyardError as e:
            from dockyard.client import DaemonUnreachable

            if isinstance(e, DaemonUnreachable):
                raise
            failed.append(f"Error response from daemon: {e}")
    if failed:
        sys.stdout.flush()
        sys.stderr.write("\n".join(failed) + "\n")
        return 1
    return 0


# -------------------------------------------------------------------------- history


class HistoryRow(Context):
    FIELDS = ("Comment", "CreatedAt", "CreatedBy", "CreatedSince", "ID", "Size")
    HEADER = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
              "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}

    def __init__(self, h: dict, trunc: bool, human: bool):
        self.h, self.trunc, self.human = h, trunc, human

    @property
    def ID(self) -> str:
        return truncate_id(self.h["Id"]) if self.trunc else self.h["Id"]

    @property
    def CreatedAt(self) -> str:
        from datetime import datetime

        t = datetime.fromtimestamp(self.h.get("Created", 0)).astimezone()
        s = t.isoformat(timespec="seconds")
        return s.replace("+00:00", "Z") if t.utcoffset() is not None and \
            not t.utcoffset().total_seconds() else s

    @property
    def CreatedSince(self) -> str:
        return since(self.h.get("Created", 0)) if self.human else self.CreatedAt

    @property
    def CreatedBy(self) -> str:
        by = (self.h.get("CreatedBy") or "").replace("\t", " ")
        return ellipsis(by, 45) if self.trunc else by

    @property
    def Size(self) -> str:
        size = self.h.get("Size", 0)
        return human_size(size, 3) if self.human else str(size)

    @property
    def Comment(self) -> str:
        return self.h.get("Comment", "")


def cmd_history(g, argv: list[str]) -> int:
    p = CommandParser("history", "[OPTIONS] IMAGE", "Show the history of an image",
                      nargs=(1, 1))
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("-H", "--human", action="store_true", default=True,
                   help="Print sizes and dates in human readable format (default true)")
    p.add_flag("--no-trunc", help="Don't truncate output")
    p.add_flag("-q", "--quiet", help="Only show image IDs")
    o = p.parse(argv)
    hist = g.client().history(o.args[0])
    fmt = o.format or "table"
    if fmt == "table":
        created = "{{.CreatedSince}}" if o.human else "{{.CreatedAt}}"
        fmt = "{{.ID}}" if o.quiet else \
            f"table {{{{.ID}}}}\t{created}\t{{{{.CreatedBy}}}}\t{{{{.Size}}}}\t{{{{.Comment}}}}"
    rows = [HistoryRow(h, not o.no_trunc, o.human) for h in hist]
    sys.stdout.write(format_rows(fmt, rows, HistoryRow.HEADER))
    return 0


# -------------------------------------------------------------------------- import/save/load


def _display_stream(msgs, tty: bool) -> None:
    """Print a JSON progress stream like docker's jsonmessage display."""
    from dockyard.cli.progress import ProgressPrinter

    ProgressPrinter(sys.stdout, tty).run(msgs)


def cmd_import(g, argv: list[str]) -> int:
    p = CommandParser("import", "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                      "Import the contents from a tarball to create a filesystem image",
                      nargs=(1, 2))
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", help="Set commit message for imported image")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    o = p.parse(argv)
    src = o.args[0]
    repo = o.args[1] if len(o.args) > 1 else None
    if repo:
        _check_ref(repo)
    c = g.client()
    if src == "-":
        body: Any = sys.stdin.buffer
        msgs = c.import_image(body, repo=repo, changes=o.change, message=o.message)
    elif src.startswith(("http://", "https://")):
        msgs = c.import_image(src, repo=repo, changes=o.change, message=o.message)
    else:
        try:
            f = open(src, "rb")
        except OSError as e:
            raise CommandError(f"open {src}: {e.strerror.lower() if e.strerror else e}")
        with f:
            msgs = c.import_image(f, repo=repo, changes=o.change, message=o.message)
            _display_stream(msgs, False)
        return 0
    _display_stream(msgs, False)
    return 0


def cmd_save(g, argv: list[str]) -> int:
    p = CommandParser("save", "[OPTIONS] IMAGE [IMAGE...]",
                      "Save one or more images to a tar archive (streamed to STDOUT by default)",
                      nargs=(1, None))
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("--platform", action="append", help="Save only the given platform(s)")
    o = p.parse(argv)
    if not o.output and sys.stdout.isatty():
        raise CommandError("cowardly refusing to save to a terminal. Use the -o flag or "
                           "redirect")
    write_stream(g.client().save(o.args), o.output)
    return 0


def write_stream(resp, output: str | None) -> None:
    """A tar stream to ``output`` (atomically, as docker does: temp file, then rename)
    or to stdout; the response is closed either way."""
    try:
        if output:
            import tempfile

            out_dir = os.path.dirname(os.path.abspath(output))
            fd, tmp = tempfile.mkstemp(prefix=".docker_temp_", dir=out_dir)
            try:
                with os.fdopen(fd, "wb") as f:
                    for chunk in resp.iter_chunks():
                        f.write(chunk)
                os.chmod(tmp, 0o644 & ~_umask())
                os.replace(tmp, output)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        else:
            out = sys.stdout.buffer
            for chunk in resp.iter_chunks():
                out.write(chunk)
            out.flush()
    finally:
        resp.close()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def cmd_load(g, argv: list[str]) -> int:
    p = CommandParser("load", "[OPTIONS]", "Load an image from a tar archive or STDIN")
    p.add_argument("-i", "--input", help="Read from tar archive file, instead of STDIN")
    p.add_flag("-q", "--quiet", help="Suppress the load output")
    p.add_argument("--platform", action="append", help="Load only the given platform(s)")
    o = p.parse(argv)
    tty = sys.stdout.isatty()
    quiet = o.quiet or not tty
    c = g.client()
    if o.input:
        try:
            f = open(o.input, "rb")
        except OSError as e:
            raise CommandError(f"open {o.input}: {(e.strerror or str(e)).lower()}")
    else:
        if sys.stdin.isatty():
            raise CommandError("requested load from stdin, but stdin is empty")
        f = sys.stdin.buffer
    try:
        msgs = c.load(f, quiet=quiet)
        _display_stream(msgs, tty and not o.quiet)
    finally:
        if o.input:
            f.close()
    return 0


# -------------------------------------------------------------------------- prune


def cmd_image_prune(g, argv: list[str]) -> int:
    p = CommandParser("image prune", "[OPTIONS]", "Remove unused images")
    p.add_flag("-a", "--all", help="Remove all unused images, not just dangling ones")
    p.add_argument("--filter", action="append", default=[],
                   help='Provide filter values (e.g. "until=<timestamp>")')
    p.add_flag("-f", "--force", help="Do not prompt for confirmation")
    o = p.parse(argv)
    filters = _parse_filter_flags(o.filter)
    filters["dangling"] = ["false" if o.all else "true"]
    if not o.force:
        warning = ("WARNING! This will remove all images without at least one container "
                   "associated to them." if o.all else
                   "WARNING! This will remove all dangling images.")
        sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    report = g.client().prune_images(filters)
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        lines = ["Deleted Images:"]
        for st in deleted:
            if st.get("Untagged"):
                lines.append(f"untagged: {st['Untagged']}")
            else:
                lines.append(f"deleted: {st.get('Deleted', '')}")
        sys.stdout.write("\n".join(lines) + "\n\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed', 0))}\n")
    return 0
