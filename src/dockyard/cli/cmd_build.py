"""`dockyard build`: the docker CLI's classic `build` over ``POST /build``.

The context (a directory, ``-``, a URL or a git URL) is made by :mod:`dockyard.cli.buildctx`
and streamed as the request body; the answer is the legacy builder's JSON stream, shown as
it comes (``--progress=plain``, or anything not a terminal) or as a live step list on a
terminal (:mod:`dockyard.cli.buildview`). A failing step's exit code is the command's.
"""

from __future__ import annotations

import json
import os
import sys

from dockyard.cli.docker import CommandError
from dockyard.cli.parser import CommandParser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _parser() -> CommandParser:
    p = CommandParser("build", "[OPTIONS] PATH | URL | -",
                      "Build an image from a Dockerfile", nargs=(1, 1),
                      nargs_text="requires 1 argument")
    a = p.add_argument
    a("--add-host", action="append", default=[], help="Add a custom host-to-IP mapping "
      "(\"host:ip\")")
    a("--build-arg", action="append", default=[], help="Set build-time variables")
    a("--cache-from", action="append", default=[], help="Images to consider as cache sources")
    a("--cgroup-parent", help="Set the parent cgroup for the \"RUN\" instructions during build")
    a("--cpu-period", help="Limit the CPU CFS (Completely Fair Scheduler) period")
    a("--cpu-quota", help="Limit the CPU CFS (Completely Fair Scheduler) quota")
    a("-c", "--cpu-shares", help="CPU shares (relative weight)")
    a("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    a("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    a("-f", "--file", help="Name of the Dockerfile (Default is \"PATH/Dockerfile\")")
    p.add_flag("--force-rm", help="Always remove intermediate containers")
    a("--iidfile", help="Write the image ID to the file")
    a("--label", action="append", default=[], help="Set metadata for an image")
    a("-m", "--memory", help="Memory limit")
    a("--memory-swap", help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
    a("--network", default="default", help="Set the networking mode for the RUN instructions "
      "during build")
    p.add_flag("--no-cache", help="Do not use cache when building the image")
    a("--platform", help="Set platform if server is multi-platform capable")
    a("--progress", default="auto", help="Set type of progress output (auto, plain, tty)")
    p.add_flag("--pull", help="Always attempt to pull a newer version of the image")
    p.add_flag("-q", "--quiet", help="Suppress the build output and print image ID on success")
    p.add_argument("--rm", action="store_true", default=True,
                   help="Remove intermediate containers after a successful build")
    a("--shm-size", help="Size of \"/dev/shm\"")
    a("-t", "--tag", action="append", default=[], help="Name and optionally a tag in the "
      "\"name:tag\" format")
    a("--target", help="Set the target build stage to build.")
    a("--ulimit", action="append", default=[], help="Ulimit options")
    return p


def _kv_map(items: list[str], from_env: bool) -> dict:
    out: dict = {}
    for it in items:
        k, eq, v = it.partition("=")
        if eq:
            out[k] = v
        elif from_env:
            out[k] = os.environ.get(k)   # unset: null, the daemon uses the default
        else:
            out[k] = ""
    return out


def _size(flag: str, v: str | None) -> int | None:
    if not v:
        return None
    from dockyard.cli.runopts import ram_in_bytes
    try:
        return ram_in_bytes(v)
    except ValueError as e:
        from dockyard.cli.parser import UsageError
        raise UsageError(f'invalid argument "{v}" for "{flag}" flag: {e}\n'
                         "See 'dockyard build --help'.", 125) from None


def query(o: Any, dockerfile: str) -> list[tuple[str, Any]]:
    """The query string the docker CLI sends for these flags (imageBuildOptionsToQuery)."""
    q: list[tuple[str, Any]] = [("t", t) for t in o.tag]
    q += [("extrahosts", h) for h in o.add_host]
    if dockerfile:
        q.append(("dockerfile", dockerfile))
    if o.quiet:
        q.append(("q", "1"))
    if o.no_cache:
        q.append(("nocache", "1"))
    q.append(("rm", "1" if o.rm else "0"))
    if o.force_rm:
        q.append(("forcerm", "1"))
    if o.pull:
        q.append(("pull", "1"))
    if o.target:
        q.append(("target", o.target))
    if o.platform:
        q.append(("platform", o.platform))
    if o.network and o.network != "default":
        q.append(("networkmode", o.network))
    if o.cgroup_parent:
        q.append(("cgroupparent", o.cgroup_parent))
    for name, v in (("cpusetcpus", o.cpuset_cpus), ("cpusetmems", o.cpuset_mems),
                    ("cpushares", o.cpu_shares), ("cpuquota", o.cpu_quota),
                    ("cpuperiod", o.cpu_period)):
        if v:
            q.append((name, v))
    for name, flag, v in (("memory", "-m, --memory", o.memory),
                          ("memswap", "--memory-swap", o.memory_swap),
                          ("shmsize", "--shm-size", o.shm_size)):
        n = _size(flag, v)
        if n:
            q.append((name, n))
    if o.ulimit:
        from dockyard.cli.runopts import parse_ulimit
        try:
            q.append(("ulimits", json.dumps([parse_ulimit(u) for u in o.ulimit])))
        except ValueError as e:
            raise CommandError(str(e), 125) from None
    if o.build_arg:
        q.append(("buildargs", json.dumps(_kv_map(o.build_arg, True))))
    if o.label:
        q.append(("labels", json.dumps(_kv_map(o.label, False))))
    if o.cache_from:
        q.append(("cachefrom", json.dumps(o.cache_from)))
    return q


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CommandError(f"unable to prepare context: unable to read {path}: "
                           f"{(e.strerror or str(e)).lower()}") from None


def _dir_body(ctx_dir: str, dockerfile: str | None, stdin_df: bytes | None):
    """(body, dockerfile parameter) for a context directory."""
    if not os.path.isdir(ctx_dir):
        if not os.path.exists(ctx_dir):
            raise CommandError(f'unable to prepare context: path "{ctx_dir}" not found')
        raise CommandError(f"unable to prepare context: context must be a directory: "
                           f"{ctx_dir}")
    extra = None
    rel: str | None
    if stdin_df is not None:
        rel = ".dockerfile." + os.urandom(10).hex()
        extra = (rel, stdin_df)
    else:
        df_path = dockerfile or os.path.join(ctx_dir, "Dockerfile")
        if dockerfile and not os.path.isabs(dockerfile):
            df_path = os.path.abspath(dockerfile)
        root = os.path.realpath(ctx_dir)
        real_df = os.path.realpath(df_path)
        if not os.path.exists(real_df):
            if dockerfile:
                raise CommandError(f"unable to prepare context: the Dockerfile ({dockerfile})"
                                   " cannot be found")
            alt = os.path.join(ctx_dir, "dockerfile")
            if not os.path.exists(alt):
                raise CommandError(f"unable to prepare context: unable to evaluate symlinks "
                                   f"in Dockerfile path: lstat {real_df}: no such file or "
                                   "directory")
            real_df = os.path.realpath(alt)
        if real_df.startswith(root + "/"):
            rel = os.path.relpath(real_df, root).replace(os.sep, "/")
        else:
            # outside the context: it travels inside it under a random name
            rel = ".dockerfile." + os.urandom(10).hex()
            extra = (rel, _read_file(real_df))
    return _DirContext(ctx_dir, rel, extra), rel


class _DirContext:
    """A context directory: sent whole (a tar) or, to a daemon that keeps context
    sessions, only what changed since the last build of the same directory."""

    def __init__(self, ctx_dir: str, rel: str | None, extra) -> None:
        self.ctx_dir, self.rel, self.extra = ctx_dir, rel, extra
        self.session = True

    def full(self):
        from dockyard.cli import buildctx
        return buildctx.dir_tar(self.ctx_dir, self.rel, self.extra)

    def session_key(self) -> str:
        try:    # the builtin one: hashlib loads OpenSSL (~5 ms)
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256
        who = f"{os.path.realpath(self.ctx_dir)}\0{self.rel if not self.extra else '-'}"
        return sha256(who.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    def offer(self, c, params: list, headers: dict):
        """(token, body) of a context session, (None, the build's response) when the daemon
        needed no file and built at once, or None when the daemon has no sessions."""
        import base64

        from dockyard import errors
        from dockyard.cli import buildctx

        items = buildctx.manifest(self.ctx_dir, self.rel)
        if self.extra is not None:
            import time
            items.append([self.extra[0], "file", 0o600, len(self.extra[1]), time.time_ns(),
                          ""])
        # what the daemon plans with, to ask only for the files the build reads
        sizes = {m[0]: m[3] for m in items if m[1] == "file"}
        files = {}
        for name in {self.rel or "Dockerfile", (self.rel or "Dockerfile") + ".dockerignore",
                     ".dockerignore"}:
            if name in sizes and sizes[name] <= (1 << 20) and name != (self.extra or ("",))[0]:
                files[name] = _read_file(os.path.join(self.ctx_dir, name))
        if self.extra is not None:
            files[self.extra[0]] = self.extra[1]
        q = dict(params)
        offer = {"Manifest": items, "Dockerfile": self.rel or "",
                 "BuildArgs": json.loads(q.get("buildargs") or "{}"),
                 "Target": q.get("target") or "",
                 "Plan": not q.get("pull"),       # a base to pull first: plan at build time
                 "Files": {k: base64.b64encode(v).decode() for k, v in files.items()}}
        try:
            # with the build's parameters: if no file is missing the build runs at once
            resp = c.request("POST", "/build/session",
                             [("key", self.session_key()), ("build", "1"), *params],
                             body=json.dumps(offer, separators=(",", ":")).encode(),
                             headers={**headers, "Content-Type": "application/json"})
            if resp.headers.get("X-Dockyard-Build") == "1":
                return None, resp
            answer = json.loads(resp.read())
        except (errors.NotFound, errors.InvalidParameter, errors.Conflict):
            # an engine without sessions, a context they cannot carry (or a build that
            # failed before its stream: the whole context's build answers it again)
            return None
        missing = [m for m in answer.get("Missing") or [] if m != (self.extra or ("",))[0]]
        return answer["Token"], buildctx.files_tar(self.ctx_dir, missing, self.extra)


def cmd_build(g, argv: list[str]) -> int:
    p = _parser()
    o = p.parse(argv)
    if o.progress not in ("auto", "plain", "tty", "rawjson", "quiet"):
        raise CommandError(f"invalid progress mode {o.progress!r}: auto, plain or tty", 125)
    if o.iidfile:
        try:
            os.remove(o.iidfile)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise CommandError(f"Removing image ID file: {e}") from None
    from dockyard.cli import buildctx

    spec = o.args[0]
    tmpdir = None
    stdin_df = None
    if o.file == "-":
        if spec == "-":
            raise CommandError("invalid argument: can't use stdin for both build context and "
                               "dockerfile")
        stdin_df = sys.stdin.buffer.read()
    try:
        try:
            if spec == "-":
                body = buildctx.stream_context(sys.stdin.buffer, o.file or "Dockerfile")
                dockerfile = o.file or ""
            elif buildctx.is_git_url(spec):
                import tempfile
                tmpdir = tempfile.mkdtemp(prefix="docker-build-git")
                ctx_dir = buildctx.clone_git(spec, tmpdir)
                df = os.path.join(ctx_dir, o.file) if o.file and o.file != "-" else None
                body, dockerfile = _dir_body(ctx_dir, df, stdin_df)
                body.session = False    # a fresh clone each time: nothing to reuse
            elif buildctx.is_url(spec):
                body, dockerfile = _url_body(spec, o.file), o.file or ""
            else:
                body, dockerfile = _dir_body(spec, o.file, stdin_df)
            return _run(g, o, body, dockerfile)
        except buildctx.ContextError as e:
            raise CommandError(str(e)) from None
    finally:
        if tmpdir:
            import shutil
            shutil.rmtree(tmpdir, ignore_errors=True)


def _url_body(url: str, dockerfile: str | None):
    """A context the CLI downloads itself (a tar, or a Dockerfile) and forwards."""
    import urllib.request

    from dockyard.cli import buildctx

    try:
        resp = urllib.request.urlopen(url, timeout=60)
    except Exception as e:   # urllib's errors are many; docker prints the reason
        raise CommandError(f"unable to prepare context: unable to download remote context "
                           f"{url}: {e}") from None

    def gen():
        with resp:
            yield from buildctx.stream_context(resp, dockerfile or "Dockerfile")
    return gen()


def _run(g, o, body, dockerfile: str) -> int:
    c = g.client()
    params = query(o, dockerfile)
    if o.quiet:
        mode = "quiet"
    elif o.progress in ("plain", "rawjson"):
        mode = o.progress
    elif o.progress == "tty" or (o.progress == "auto" and sys.stderr.isatty()):
        mode = "tty"
    else:
        mode = "plain"
    from dockyard.images import credentials
    # the logins the daemon may need to pull a base image, as the docker CLI sends them
    headers = {"Content-Type": "application/x-tar",
               "X-Registry-Config": credentials.encode_config_header()}
    resp = None
    if isinstance(body, _DirContext):
        dir_ctx = body
        offered = None
        if dir_ctx.session and not os.environ.get("DOCKYARD_BUILD_FULL_CONTEXT"):
            offered = dir_ctx.offer(c, params, headers)
        if offered is not None and offered[0] is None:
            resp = offered[1]   # nothing to send: the build's stream
        elif offered is not None:
            from dockyard import errors
            token, body = offered
            try:
                resp = c.request("POST", "/build", params + [("contextsession", token)],
                                 body=body, headers=headers)
            except errors.Conflict:
                resp = None     # the kept context went meanwhile: send it all
        if resp is None:
            body = dir_ctx.full()
    if resp is None:
        resp = c.request("POST", "/build", params, body=body, headers=headers)
    from dockyard.cli import buildview

    view = buildview.make(mode)
    image_id = ""
    error = None
    try:
        for m in _messages(resp):
            if "errorDetail" in m or m.get("error"):
                error = m
                break
            aux = m.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
            view.message(m)
    finally:
        resp.close()
        view.close(error is None)
    if error is not None:
        detail = error.get("errorDetail") or {}
        msg = detail.get("message") or error.get("error") or "build failed"
        code = detail.get("code") or 1
        raise CommandError(msg, int(code))
    if o.quiet and image_id:
        sys.stdout.write(image_id + "\n")
    if o.iidfile and image_id:
        try:
            with open(o.iidfile, "w") as f:
                f.write(image_id)
        except OSError as e:
            raise CommandError(f"Failed to write image ID to file: {e}") from None
    return 0


def _messages(resp):
    dec = json.JSONDecoder()
    buf = b""
    for chunk in resp.iter_chunks():
        buf += chunk
        nl = buf.rfind(b"\n")
        if nl < 0:
            continue
        lines, buf = buf[:nl + 1], buf[nl + 1:]
        for line in lines.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if line:
                obj, _ = dec.raw_decode(line)
                if isinstance(obj, dict):
                    yield obj
    if buf.strip():
        obj, _ = dec.raw_decode(buf.decode("utf-8", "replace").strip())
        if isinstance(obj, dict):
            yield obj
