"""The planner: a parsed Dockerfile -> stages of steps with content-addressed cache keys.

Pure: the caller hands in the build args, the target, the base images' IDs and configs
(:func:`base_images` says which are needed) and the context's index; the plan is frozen
data. Everything but the filesystem is decided here: the image config after each step,
its history entry (``CreatedBy`` as dockerd's legacy builder writes it), what a RUN runs
and with which environment, which context files a COPY takes. The executor only runs RUN
steps, copies files and stores images.

Cache keys: ``sha256(parent key, the step's material)`` where the first key of a stage is
the base image's ID (or the key of the stage it builds on), and the material is the
instruction with its arguments expanded, the resulting config, the build args a RUN sees,
and for COPY/ADD every selected file's path, type, mode, owner, size and content digest.
Only stages the target needs are planned; a stage's ``deps`` (the stages it copies from or
builds on) tell which ones may run in parallel.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

from dockyard.builder import shellwords
from dockyard.builder.context import Context, Entry, normalize, select_error
from dockyard.builder.dockerfile import Dockerfile, Instruction, ParseError, parse_line
from dockyard.errors import InvalidParameter

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_SHELL = ("/bin/sh", "-c")
# build args every Dockerfile may use without declaring them (dockerd's builtinAllowedBuildArgs)
BUILTIN_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
SCRATCH = "scratch"


@dataclass(frozen=True)
class RunSpec:
    argv: tuple[str, ...]          # the command (shell form: SHELL + [script])
    env: tuple[str, ...]           # config Env + the build args in effect
    user: str
    workdir: str
    network: str = "default"
    mounts: tuple = ()             # runmount.MountSpec, from= resolved


@dataclass(frozen=True)
class CopyItem:
    source: str                    # canonical context path (or in-stage path for --from)
    dest: str                      # absolute destination path in the image
    contents: bool                 # a directory whose contents go to dest
    name: str = ""                 # the base name a file gets in a directory destination
    download: str = ""             # ADD <url>: the downloaded file (a host path of ours)
    mtime: float = 0.0             # ADD <url>: Last-Modified (0: now)
    tree: bool = False             # ADD <git url>: ``download`` is a clone's directory


@dataclass(frozen=True)
class CopySpec:
    items: tuple[CopyItem, ...]
    from_stage: int | None = None  # index of a stage, or
    from_image: str | None = None  # an image ID
    chown: str | None = None
    chmod: int | None = None
    dest_dir: bool = False         # the destination is a directory (ends with "/", or many)
    heredocs: tuple[tuple[str, str], ...] = ()   # (file name, content)
    workdir_only: bool = False     # WORKDIR: only make the directory
    dest: str = ""                 # the absolute destination
    add: bool = False              # ADD: local archives are extracted


@dataclass(frozen=True)
class Download:
    """An ``ADD <url>`` source fetched before planning (by the service)."""
    url: str
    path: str                      # where its content is (a private host file)
    digest: str                    # sha256 of the content
    size: int
    mtime: float = 0.0             # Last-Modified, seconds (0: none given)
    name: str = ""                 # the file name the URL gives
    tree: bool = False             # a git URL: ``path`` is the clone's directory, ``digest``
                                   # its commit

    def digest_of(self, algo: str) -> str:
        """The content's digest by ``algo`` (sha256, sha384, sha512: ADD --checksum's);
        sha256 was taken as it arrived, the others are read from the saved file."""
        if algo == "sha256":
            return self.digest
        import hashlib
        h = hashlib.new(algo)
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return f"{algo}:{h.hexdigest()}"


# ADD --checksum's algorithms (BuildKit's) and their hex lengths
_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}


class MissingDownloads(Exception):
    """:func:`plan` met ``ADD`` URLs not in ``downloads``: fetch them and plan again."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(", ".join(urls))
        self.urls = urls


def url_name(url: str) -> str:
    """The file name an ``ADD <url>`` takes (the URL path's last component)."""
    from urllib.parse import urlsplit
    path = urlsplit(url).path
    return posixpath.basename(path.rstrip("/")) or ""


def is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


def is_git_url(src: str) -> bool:
    """A git repository as ADD takes one (dockerd's IsGitURL: git://, git@, github.com/,
    or an http(s) URL ending in .git, with an optional #ref:subdir)."""
    if src.startswith(("git://", "git@", "github.com/")):
        return True
    return is_url(src) and src.split("#", 1)[0].endswith(".git")


@dataclass(frozen=True)
class Step:
    number: int                    # 1-based, over the whole build (Step N/M)
    stage: int
    text: str                      # as displayed: the instruction as written
    kind: str                      # "meta" | "from" | "config" | "run" | "copy"
    key: str = ""
    config: str = ""               # the image config after the step (JSON)
    created_by: str = ""
    author: str = ""
    run: RunSpec | None = None
    copy: CopySpec | None = None
    base: str | None = None        # FROM: image ID, or None when building on a stage
    base_stage: int | None = None
    trigger: int = 0               # an ONBUILD trigger of the base: its 1-based position
    cc_cmd: tuple[str, ...] = ()   # the Cmd of the image's container_config (dockerd's)


@dataclass(frozen=True)
class Stage:
    index: int
    name: str | None
    steps: tuple[Step, ...]
    deps: tuple[int, ...]          # stages that must be built first
    key: str = ""                  # the key of its last step

    @property
    def parallel_ok(self) -> bool:
        return True


@dataclass(frozen=True)
class Plan:
    stages: tuple[Stage, ...]      # only those the target needs, in Dockerfile order
    target: int                    # index (in ``stages``) of the stage that makes the image
    total: int                     # M of Step N/M
    meta: tuple[Step, ...] = ()    # global ARG steps (displayed only)
    unused_args: tuple[str, ...] = ()
    epoch: int | None = None       # SOURCE_DATE_EPOCH: image and history times, file mtimes

    def steps(self) -> list[Step]:
        out = list(self.meta)
        for s in self.stages:
            out.extend(s.steps)
        return sorted(out, key=lambda s: s.number)

    def levels(self) -> list[list[int]]:
        """Stages grouped so that each group only depends on earlier groups (a group's
        stages can be built in parallel)."""
        done: set[int] = set()
        left = [s.index for s in self.stages]
        by_index = {s.index: s for s in self.stages}
        out = []
        while left:
            ready = [i for i in left if all(d in done for d in by_index[i].deps)]
            if not ready:
                raise InvalidParameter("circular dependency between build stages")
            out.append(ready)
            done.update(ready)
            left = [i for i in left if i not in ready]
        return out


def _h(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def _go_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_q_list(items) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(_go_quote(x) for x in items) + "]"


def go_v_list(items) -> str:
    """Go's %v of a []string: [a b]."""
    return "[" + " ".join(items) + "]"


# -- which base images ----------------------------------------------------------------------

def _meta_args(df: Dockerfile, build_args: dict[str, str | None]
               ) -> tuple[dict[str, str | None], list[Instruction], int]:
    """Global ARGs (before the first FROM): their values; the instructions; the index of
    the first FROM."""
    meta: dict[str, str | None] = {}
    out = []
    for i, ins in enumerate(df.instructions):
        if ins.cmd == "FROM":
            return meta, out, i
        if ins.cmd != "ARG":
            raise ParseError(ins.line, "no build stage in current context")
        for name, default in ins.args:
            lookup = shellwords.env_lookup(meta)
            if default is not None:
                default = shellwords.process_word(default, lookup, df.escape)
            v = build_args.get(name)
            meta[name] = v if v is not None else default
        out.append(ins)
    raise InvalidParameter("the Dockerfile has no FROM instruction" if df.instructions
                           else "the Dockerfile (Dockerfile) cannot be empty")


def _split_stages(df: Dockerfile, start: int) -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for ins in df.instructions[start:]:
        if ins.cmd == "FROM":
            stages.append([ins])
        else:
            stages[-1].append(ins)
    return stages


def _from_ref(ins: Instruction, meta: dict, escape: str) -> str:
    ref = shellwords.process_word(ins.args[0], shellwords.env_lookup(meta), escape)
    if not ref:
        raise ParseError(ins.line, f"base name ({ins.args[0]}) should not be blank")
    return ref


def base_images(df: Dockerfile, build_args: dict[str, str | None], target: str | None = None
                ) -> list[str]:
    """The image references the build needs (FROM names that are not stages, COPY --from
    names that are not stages), for the caller to resolve before :func:`plan`."""
    meta, _, start = _meta_args(df, build_args)
    stages = _split_stages(df, start)
    names: dict[str, int] = {}
    out: list[str] = []
    needed = _needed(df, stages, meta, target)
    for i, st in enumerate(stages):
        ref = _from_ref(st[0], meta, df.escape)
        if i in needed:
            if ref.lower() not in names and ref.lower() != SCRATCH and ref not in out:
                out.append(ref)
            for ins in st[1:]:
                srcs = [ins.flag("from")] if ins.cmd == "COPY" else []
                if ins.cmd == "RUN":
                    srcs = _mount_froms(ins)
                for src in srcs:
                    if not src:
                        continue
                    src = shellwords.process_word(src, shellwords.env_lookup(meta), df.escape)
                    if src.lower() not in names and not src.isdigit() and src not in out:
                        out.append(src)
        if st[0].args[1]:
            names[st[0].args[1]] = i
    return out


def pull_steps(df: Dockerfile, build_args: dict[str, str | None], target: str | None,
               refs: list[str]) -> dict[str, int]:
    """For each of ``refs`` (images the build pulls), the number of the step that first uses
    it: its progress is shown under that step's ``Step N/M`` line, where dockerd's legacy
    builder pulls (a FROM, or a COPY --from / RUN --mount from=)."""
    meta, meta_ins, start = _meta_args(df, build_args)
    stages = _split_stages(df, start)
    needed = _needed(df, stages, meta, target)
    want = set(refs)
    out: dict[str, int] = {}
    number = len(meta_ins)

    def seen(ref: str) -> None:
        if ref in want and ref not in out:
            out[ref] = number
    for i, st in enumerate(stages):
        if i not in needed:
            continue
        number += 1
        seen(_from_ref(st[0], meta, df.escape))
        for ins in st[1:]:
            number += 1
            srcs = [ins.flag("from")] if ins.cmd == "COPY" else []
            if ins.cmd == "RUN":
                srcs = _mount_froms(ins)
            for src in srcs:
                if src:
                    seen(shellwords.process_word(src, shellwords.env_lookup(meta), df.escape))
    return out


def head_steps(df: Dockerfile, build_args: dict[str, str | None], target: str | None,
               n_labels: int = 0) -> tuple[int, list[str]]:
    """M of ``Step N/M`` and the texts of the steps up to the first FROM (the global ARGs
    and that FROM), as :func:`plan` will number them: what can be shown before the bases
    are here."""
    meta, meta_ins, start = _meta_args(df, build_args)
    stages = _split_stages(df, start)
    needed = _needed(df, stages, meta, target)
    total = len(meta_ins) + sum(len(stages[i]) for i in needed) + n_labels
    return total, [ins.original for ins in meta_ins] + [stages[min(needed)][0].original]


def _mount_froms(ins: Instruction) -> list[str]:
    from dockyard.builder import runmount
    return runmount.from_refs(ins.flag_all("mount"), ins.line)


def _needed(df: Dockerfile, stages: list[list[Instruction]], meta: dict, target: str | None
            ) -> set[int]:
    names: dict[str, int] = {}
    deps: list[set[int]] = []
    tindex = len(stages) - 1
    for i, st in enumerate(stages):
        d: set[int] = set()
        ref = _from_ref(st[0], meta, df.escape).lower()
        if ref in names:
            d.add(names[ref])
        for ins in st[1:]:
            froms = [ins.flag("from")] if ins.cmd == "COPY" and ins.flag("from") else []
            if ins.cmd == "RUN":
                froms = _mount_froms(ins)
            for src in froms:
                src = shellwords.process_word(src, shellwords.env_lookup(meta),
                                              df.escape).lower()
                if src in names:
                    d.add(names[src])
                elif src.isdigit():
                    n = int(src)
                    if n >= i:
                        raise ParseError(ins.line, f"invalid from flag value {src}: refers to "
                                                   "current or future build stage")
                    d.add(n)
        deps.append(d)
        if st[0].args[1]:
            names[st[0].args[1]] = i
    if target:
        if target.lower() not in names:
            raise InvalidParameter(f"failed to reach build target {target} in Dockerfile")
        tindex = names[target.lower()]
    needed: set[int] = set()
    todo = [tindex]
    while todo:
        i = todo.pop()
        if i not in needed:
            needed.add(i)
            todo.extend(deps[i])
    return needed


# -- the plan --------------------------------------------------------------------------------

def plan(df: Dockerfile, *, build_args: dict[str, str | None] | None = None,
         target: str | None = None, bases: dict[str, tuple[str, dict]] | None = None,
         context: Context | None = None, labels: dict[str, str] | None = None,
         downloads: dict[str, Download] | None = None, run_defaults: dict | None = None,
         epoch: int | None = None) -> Plan:
    """``bases``: reference -> (image ID, image config) for every name of
    :func:`base_images`. ``downloads``: ``ADD`` URLs already fetched (any other raises
    :class:`MissingDownloads` once the whole Dockerfile is planned). ``run_defaults``:
    the build parameters every RUN container gets (network mode, extra hosts, limits),
    part of RUN keys. ``epoch``: SOURCE_DATE_EPOCH (reproducible builds)."""
    build_args = dict(build_args or {})
    bases = bases or {}
    meta, meta_ins, start = _meta_args(df, build_args)
    stages_ins = _split_stages(df, start)
    needed = _needed(df, stages_ins, meta, target)
    tindex = max(needed) if not target else None
    names: dict[str, int] = {}
    for i, st in enumerate(stages_ins):
        if st[0].args[1]:
            names[st[0].args[1]] = i
    if target:
        tindex = names[target.lower()]
    total = len(meta_ins) + sum(len(stages_ins[i]) for i in needed) + len(labels or {})
    number = 0
    meta_steps = []
    for ins in meta_ins:
        number += 1
        meta_steps.append(Step(number, -1, ins.original, "meta"))
    planned: dict[int, Stage] = {}
    results: dict[int, dict] = {}    # stage -> its final image config (for FROM stage)
    used_args: set[str] = set()
    missing: list[str] = []
    for i, st in enumerate(stages_ins):
        if i not in needed:
            continue
        sp = _StagePlanner(df, i, st, meta, build_args, bases, planned, results, names,
                           context, number, labels if i == tindex else None, used_args)
        sp.downloads = downloads or {}
        sp.missing = missing
        sp.run_defaults = run_defaults or {}
        sp.epoch = epoch
        stage = sp.run()
        number = sp.number      # (a base's ONBUILD triggers take no numbers of their own)
        planned[i] = stage
        results[i] = sp.image
    if missing:
        raise MissingDownloads(missing)
    unused = sorted(k for k in build_args if k not in used_args and k not in meta
                    and k not in BUILTIN_ARGS and k != "SOURCE_DATE_EPOCH")
    stages = tuple(planned[i] for i in sorted(planned))
    return Plan(stages, [s.index for s in stages].index(tindex), total, tuple(meta_steps),
                tuple(unused), epoch)


def _parse_duration(s: str, line: int, flag: str) -> int:
    """Go's time.ParseDuration -> nanoseconds."""
    units = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10 ** 6, "s": 10 ** 9, "m": 60 * 10 ** 9,
             "h": 3600 * 10 ** 9}
    if s == "0":
        return 0
    total = 0.0
    pos = 0
    for m in re.finditer(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)", s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ParseError(line, f"invalid duration for --{flag}: time: invalid duration "
                               f"{_go_quote(s)}")
    return int(total)


def _expose_ports(words: list[str], line: int) -> list[str]:
    out = []
    for w in words:
        port, _, proto = w.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise ParseError(line, f"invalid proto: {proto}")
        lo, _, hi = port.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ParseError(line, f"invalid containerPort: {port}")
        a, b = int(lo), int(hi or lo)
        if b < a or b > 65535:
            raise ParseError(line, f"invalid port range: {port}")
        out.extend(f"{p}/{proto}" for p in range(a, b + 1))
    return out


class _StagePlanner:
    def __init__(self, df, index, ins, meta, build_args, bases, planned, results, names,
                 context, number, labels, used_args) -> None:
        self.df = df
        self.index = index
        self.ins = ins
        self.meta = meta
        self.build_args = build_args
        self.bases = bases
        self.planned = planned
        self.results = results
        self.names = names
        self.context = context
        self.number = number
        self.labels = labels
        self.used_args = used_args
        self.deps: set[int] = set()
        self.args: dict[str, str | None] = {}      # ARGs declared in this stage
        self.image: dict = {}
        self.cmd_set = False
        self.downloads: dict[str, Download] = {}
        self.missing: list[str] = []
        self.run_defaults: dict = {}
        self.epoch: int | None = None

    # the variables a word may use: the config's Env first, then the stage's ARGs
    def lookup(self, used: set | None = None):
        env = {}
        for kv in self.config.get("Env") or []:
            k, _, v = kv.partition("=")
            env[k] = v
        args = self.args

        def look(name: str) -> str | None:
            if name in env:
                return env[name]
            if name in args:
                if used is not None:
                    used.add(name)
                return args[name]
            return None
        return look

    def word(self, text: str, used: set | None = None) -> str:
        return shellwords.process_word(text, self.lookup(used), self.df.escape)

    def words(self, text: str) -> list[str]:
        return shellwords.process_words(text, self.lookup(), self.df.escape)

    @property
    def config(self) -> dict:
        return self.image.setdefault("config", {})

    def run(self) -> Stage:
        steps: list[Step] = []
        first = self.ins[0]
        ref = _from_ref(first, self.meta, self.df.escape)
        base_id: str | None = None
        base_stage: int | None = None
        if ref.lower() in self.names and self.names[ref.lower()] < self.index:
            base_stage = self.names[ref.lower()]
            self.deps.add(base_stage)
            self.image = json.loads(json.dumps(self.results[base_stage]))
            key = self.planned[base_stage].key
        elif ref.lower() == SCRATCH:
            self.image = {"config": {}}
            key = _h("scratch")
        else:
            if ref not in self.bases:
                raise InvalidParameter(f"the base image {ref} was not resolved")
            base_id, cfg = self.bases[ref]
            self.image = {"config": json.loads(json.dumps(cfg.get("config") or {})),
                          "author": ""}
            key = _h("image", base_id)
        # dockerd's setDefaultPath: a stage whose base sets no PATH gets the default one
        env = self.config.get("Env") or []
        if not any(e.split("=", 1)[0] == "PATH" for e in env):
            self.config["Env"] = list(env) + ["PATH=" + DEFAULT_PATH]
        platform = first.flag("platform")
        if platform:
            key = _h(key, "platform", self.word(platform))
        if self.epoch is not None:
            key = _h(key, "epoch", str(self.epoch))
        self.image.pop("author", None)
        self.number += 1
        steps.append(Step(self.number, self.index, first.original, "from", key,
                          json.dumps(self.config, sort_keys=True), base=base_id,
                          base_stage=base_stage))
        # ONBUILD triggers of the base run first (and are then cleared)
        triggers = list(self.config.get("OnBuild") or [])
        if triggers:
            self.config["OnBuild"] = None
        body = []
        for t in triggers:
            try:
                body.append(("trigger", parse_line(t, first.line, self.df.escape)))
            except ParseError as e:
                raise ParseError(first.line, f"invalid ONBUILD trigger {t!r}: {e.detail}")
        body += [("ins", ins) for ins in self.ins[1:]]
        n_trig = len(triggers)
        for kind, ins in body:
            if kind == "ins":
                self.number += 1
            step = self.step(ins, key, self.number)
            if kind == "trigger":
                # triggers have no step number of their own: they belong to the FROM step,
                # announced once, as dockerd does ("# Executing 2 build triggers")
                key = step.key
                pos = sum(1 for s in steps if s.trigger) + 1
                text = (f"# Executing {n_trig} build trigger{'s' if n_trig > 1 else ''}"
                        if pos == 1 else "")
                steps.append(Step(steps[-1].number, self.index, text, step.kind, step.key,
                                  step.config, step.created_by, step.author, step.run,
                                  step.copy, trigger=pos, cc_cmd=step.cc_cmd))
                continue
            key = step.key
            steps.append(step)
        # the labels parameter: one LABEL step per label, sorted, at the end (dockerd's
        # buildLabelOptions); their values are not expanded
        for k in sorted(self.labels or {}):
            self.number += 1
            ins = Instruction("LABEL", 0, 0, f"LABEL {k}={self.labels[k]}",
                              ((k, self.labels[k]),))
            step = self.step(ins, key, self.number)
            key = step.key
            steps.append(step)
        return Stage(self.index, self.ins[0].args[1], tuple(steps), tuple(sorted(self.deps)),
                     key)

    def _shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    def _nop(self, comment: str) -> str:
        self._cc_cmd = self._shell() + ["#(nop) ", comment]
        return " ".join(self._cc_cmd)

    def _nop_commit(self, comment: str) -> str:
        """Steps dockerd commits from a container (WORKDIR, COPY, ADD): one space after
        ``#(nop)`` (its withCmdCommentString), where config-only steps have two."""
        self._cc_cmd = self._shell() + ["#(nop) " + comment]
        return " ".join(self._cc_cmd)

    def _arg_env(self) -> list[str]:
        """Build args in effect for RUN (declared, with a value, not shadowed by Env)."""
        env_names = {kv.partition("=")[0] for kv in self.config.get("Env") or []}
        out = []
        for k in sorted(self.args):
            v = self.args[k]
            if v is not None and k not in env_names:
                out.append(f"{k}={v}")
        for k in BUILTIN_ARGS:
            if k in self.build_args and k not in self.args and self.build_args[k] is not None:
                out.append(f"{k}={self.build_args[k]}")
        return out

    def step(self, ins: Instruction, parent: str, number: int) -> Step:
        c = ins.cmd
        cfg = self.config
        created_by = ""
        self._cc_cmd: list[str] = []
        run = copy = None
        material: list[str] = [c]
        kind = "config"
        line = ins.line
        if c == "RUN":
            network = ins.flag("network") or "default"
            if network not in ("default", "none", "host"):
                raise ParseError(line, f"unsupported network mode: {network}")
            if ins.flag("security") not in (None, "sandbox"):
                raise ParseError(line, "RUN --security=insecure is not supported")
            mounts, mount_material = self._run_mounts(ins)
            if ins.json:
                argv = list(ins.args)
            elif ins.heredocs:
                argv = self._shell() + [self._heredoc_script(ins)]
            else:
                argv = self._shell() + [ins.args[0]]
            arg_env = self._arg_env()
            self.used_args.update(kv.partition("=")[0] for kv in arg_env)
            save = argv
            if arg_env:
                save = [f"|{len(arg_env)}"] + arg_env + argv
            created_by = " ".join(save)
            self._cc_cmd = list(save)
            env = list(cfg.get("Env") or []) + arg_env
            run = RunSpec(tuple(argv), tuple(env), cfg.get("User") or "",
                          cfg.get("WorkingDir") or "/", network, mounts)
            material += [json.dumps(argv), json.dumps(arg_env), network, *mount_material]
            kind = "run"
        elif c in ("CMD", "ENTRYPOINT"):
            if ins.json:
                value = list(ins.args)
            else:
                value = self._shell() + [ins.args[0]]
            if c == "CMD":
                cfg["Cmd"] = value
                self.cmd_set = True
            else:
                cfg["Entrypoint"] = value
                if not self.cmd_set:
                    cfg["Cmd"] = None
            created_by = self._nop(f"{c} {go_q_list(value)}")
        elif c == "ENV":
            env = list(cfg.get("Env") or [])
            parts = []
            for k, v in ins.args:
                k = self.word(k)
                v = self.word(v)
                parts.append(f"{k}={v}")
                names = [e.partition("=")[0] for e in env]
                if k in names:
                    env[names.index(k)] = f"{k}={v}"
                else:
                    env.append(f"{k}={v}")
                cfg["Env"] = env
            created_by = self._nop("ENV " + " ".join(parts))
        elif c == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            parts = []
            for k, v in ins.args:
                if ins.line:   # line 0: from the labels parameter, taken as they are
                    k, v = self.word(k), self.word(v)
                if not k:
                    raise ParseError(line, "LABEL names can not be blank")
                labels[k] = v
                parts.append(f"{k}={v}")
            cfg["Labels"] = labels
            created_by = self._nop("LABEL " + " ".join(parts))
        elif c == "ARG":
            parts = []
            for name, default in ins.args:
                if default is not None:
                    default = self.word(default)
                v = self.build_args.get(name)
                if v is None and name in self.meta and default is None:
                    v = self.meta[name]   # a global ARG redeclared without a value
                self.args[name] = v if v is not None else default
                if name in self.build_args:
                    self.used_args.add(name)
                parts.append(name if default is None else f"{name}={default}")
            created_by = self._nop("ARG " + " ".join(parts))
            material.append(json.dumps({k: self.args[k] for k in sorted(self.args)}))
        elif c == "EXPOSE":
            ports = _expose_ports(self.words(" ".join(ins.args)), line)
            exposed = dict(cfg.get("ExposedPorts") or {})
            for p in ports:
                exposed[p] = {}
            cfg["ExposedPorts"] = exposed
            created_by = self._nop("EXPOSE " + " ".join(self.words(" ".join(ins.args))))
        elif c == "VOLUME":
            vols = [self.word(a) for a in ins.args] if ins.json else self.words(" ".join(ins.args))
            volumes = dict(cfg.get("Volumes") or {})
            for v in vols:
                if not v.strip():
                    raise ParseError(line, "VOLUME specified can not be an empty string")
                volumes[v] = {}
            cfg["Volumes"] = volumes
            created_by = self._nop("VOLUME " + go_v_list(vols))
        elif c == "USER":
            cfg["User"] = self.word(ins.args[0])
            created_by = self._nop("USER " + cfg["User"])
        elif c == "WORKDIR":
            path = self.word(ins.args[0])
            cur = cfg.get("WorkingDir") or "/"
            path = posixpath.normpath(posixpath.join(cur, path))
            if path.startswith("//"):
                path = "/" + path.lstrip("/")
            cfg["WorkingDir"] = path
            created_by = self._nop_commit("WORKDIR " + path)
            copy = CopySpec((), workdir_only=True)
            kind = "copy"
        elif c == "STOPSIGNAL":
            sig = self.word(ins.args[0])
            if not re.fullmatch(r"(SIG)?[A-Z0-9+-]+|[0-9]+", sig.upper()):
                raise ParseError(line, f"Invalid signal: {sig}")
            cfg["StopSignal"] = sig
            created_by = self._nop("STOPSIGNAL " + sig)
        elif c == "SHELL":
            cfg["Shell"] = list(ins.args)
            created_by = self._nop("SHELL " + go_v_list(ins.args))
        elif c == "MAINTAINER":
            self.image["author"] = self.word(ins.args[0])
            created_by = self._nop("MAINTAINER " + self.image["author"])
        elif c == "ONBUILD":
            trigger = re.sub(r"(?i)^\s*ONBUILD\s*", "", ins.original)
            cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [trigger]
            created_by = self._nop("ONBUILD " + trigger)
        elif c == "HEALTHCHECK":
            created_by = self._healthcheck(ins)
        elif c in ("COPY", "ADD"):
            copy, desc = self._copy(ins)
            created_by = self._nop_commit(desc)
            material.append(desc)
            kind = "copy"
        elif c == "FROM":
            raise AssertionError("FROM inside a stage")
        else:
            raise ParseError(line, f"unknown instruction: {c}")
        cfgj = json.dumps(cfg, sort_keys=True)
        author = self.image.get("author", "")
        key = _h(parent, *material, created_by, cfgj, author)
        return Step(number, self.index, ins.original, kind, key, cfgj, created_by, author,
                    run, copy, cc_cmd=tuple(self._cc_cmd))

    def _run_mounts(self, ins: Instruction) -> tuple[tuple, list[str]]:
        """RUN --mount specs (from= resolved to a stage or an image) and what the cache
        key takes of them (a bind's content: its context files' digests, the stage's key
        or the image's ID; a cache mount's content is not part of the key)."""
        import dataclasses
        from dockyard.builder import runmount
        out, material = [], []
        workdir = self.config.get("WorkingDir") or "/"
        for v in ins.flag_all("mount"):
            m = runmount.parse(self.word(v) if v else v, ins.line, workdir)
            desc = [json.dumps(dataclasses.asdict(m), sort_keys=True)]
            if m.type in ("bind", "cache") and m.from_:
                ref = shellwords.process_word(m.from_, shellwords.env_lookup(self.meta),
                                              self.df.escape)
                if ref.lower() in self.names and self.names[ref.lower()] < self.index:
                    m = dataclasses.replace(m, from_stage=self.names[ref.lower()])
                elif ref.isdigit() and int(ref) < self.index:
                    m = dataclasses.replace(m, from_stage=int(ref))
                elif ref.lower() in self.names or ref.isdigit():
                    raise ParseError(ins.line, f"invalid from flag value {ref}: refers to "
                                               "current or future build stage")
                elif ref in self.bases:
                    m = dataclasses.replace(m, from_image=self.bases[ref][0])
                else:
                    raise InvalidParameter(f"the image {ref} was not resolved")
                if m.from_stage is not None:
                    self.deps.add(m.from_stage)
                    desc.append(self.planned[m.from_stage].key)
                else:
                    desc.append(m.from_image)
            elif m.type == "bind":
                if self.context is None:
                    raise select_error("RUN --mount", m.source or ".")
                e = self.context.resolve(normalize(m.source))
                if e is None:
                    raise select_error("RUN --mount", m.source or ".")
                desc.append(e.path + " " + self.context.meta(e))
                if e.kind == "dir":
                    desc += [sub.path + " " + self.context.meta(sub)
                             for sub in self.context.below(e.path)]
            out.append(m)
            material.append(_h(*desc))
        return tuple(out), material

    def _heredoc_script(self, ins: Instruction) -> str:
        words = ins.args[0].split()
        if len(ins.heredocs) == 1 and len(words) == 1:
            return ins.heredocs[0].content   # RUN <<EOF: the body is the script
        lines = [ins.args[0]]
        for h in ins.heredocs:
            lines.append(h.content.rstrip("\n"))
            lines.append(h.name)
        return "\n".join(lines)

    def _healthcheck(self, ins: Instruction) -> str:
        cfg = self.config
        if ins.args[0] == "NONE":
            cfg["Healthcheck"] = {"Test": ["NONE"]}
            return self._nop('HEALTHCHECK &{["NONE"] "0s" "0s" "0s" \'\\x00\'}')
        test = (["CMD"] + list(ins.args[1])) if ins.json else ["CMD-SHELL", ins.args[1]]
        hc: dict[str, Any] = {"Test": test}
        durs = {}
        for flag, field_ in (("interval", "Interval"), ("timeout", "Timeout"),
                             ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
            v = ins.flag(flag)
            ns = _parse_duration(v, ins.line, flag) if v is not None else 0
            if ns and ns < 10 ** 6:
                raise ParseError(ins.line, f"Interval \"{flag}\" cannot be less than 1ms")
            if ns:
                hc[field_] = ns
            durs[flag] = ns
        r = ins.flag("retries")
        if r is not None:
            if not r.lstrip("-").isdigit():
                raise ParseError(ins.line, f"invalid --retries value: {r}")
            if int(r) < 0:
                raise ParseError(ins.line, "--retries cannot be negative")
            if int(r):
                hc["Retries"] = int(r)
        cfg["Healthcheck"] = hc

        def d(ns: int) -> str:
            return _go_quote(_fmt_duration(ns))
        # Debian's dockerd (20.10) prints its HealthConfig without StartInterval (a later
        # field): shown only when the Dockerfile sets it
        start_interval = f"{d(durs['start-interval'])} " if durs["start-interval"] else ""
        return self._nop(f"HEALTHCHECK &{{{go_q_list(test)} {d(durs['interval'])} "
                         f"{d(durs['timeout'])} {d(durs['start-period'])} "
                         f"{start_interval}'\\x{int(r or 0):02x}'}}")

    def _copy(self, ins: Instruction) -> tuple[CopySpec, str]:
        c = ins.cmd
        line = ins.line
        if ins.flag("link") not in (None, "", "true", "false"):
            raise ParseError(line, f"invalid --link value: {ins.flag('link')}")
        for unsupported in ("parents", "exclude", "keep-git-dir"):
            if ins.flag(unsupported) is not None:
                raise ParseError(line, f"{c} --{unsupported} is not supported yet")
        checksum = ins.flag("checksum")
        if checksum is not None:
            # BuildKit's ADD --checksum: the fetched URL's content must have this digest
            checksum = self.word(checksum)
            algo, _, hexd = checksum.partition(":")
            if _DIGEST_HEX.get(algo) != len(hexd) or not re.fullmatch(r"[0-9a-f]+", hexd):
                raise ParseError(line, f"invalid checksum digest format: {checksum}")
        chown = ins.flag("chown")
        chown = self.word(chown) if chown else None
        chmod = ins.flag("chmod")
        mode = None
        if chmod is not None:
            chmod = self.word(chmod)
            if not re.fullmatch(r"[0-7]{1,4}", chmod):
                raise ParseError(line, f"invalid chmod parameter: {chmod} (only octal modes "
                                       "are supported)")
            mode = int(chmod, 8)
        words = list(ins.args)
        heredoc_names = {h.name: h for h in ins.heredocs}
        raw_srcs, raw_dest = words[:-1], words[-1]
        dest = self.word(raw_dest)
        heredocs: list[tuple[str, str]] = []
        srcs: list[str] = []
        for s in raw_srcs:
            m = re.match(r"^<<-?(['\"]?)([a-zA-Z_][a-zA-Z0-9_]*)\1$", s)
            if m and m.group(2) in heredoc_names:
                h = heredoc_names[m.group(2)]
                content = self.word(h.content) if h.expand else h.content
                heredocs.append((h.name, content))
            else:
                srcs.append(self.word(s))
        n_src = len(srcs) + len(heredocs)
        workdir = self.config.get("WorkingDir") or "/"
        dest_dir = dest.endswith("/") or dest.endswith("/.") or dest == "."
        if n_src > 1 and not dest_dir:
            raise ParseError(line, f"When using {c} with more than one source file, the "
                                   "destination must be a directory and end with a /")
        abs_dest = posixpath.normpath(posixpath.join(workdir, dest))
        from_ = ins.flag("from")
        from_stage = from_image = None
        items: list[CopyItem] = []
        digest_parts: list[str] = []
        if from_:
            if c == "ADD":
                raise ParseError(line, "ADD --from is not supported")
            ref = shellwords.process_word(from_, shellwords.env_lookup(self.meta),
                                          self.df.escape)
            if ref.lower() in self.names and self.names[ref.lower()] < self.index:
                from_stage = self.names[ref.lower()]
            elif ref.isdigit() and int(ref) < self.index:
                from_stage = int(ref)
            elif ref.lower() in self.names:
                raise ParseError(line, f"invalid from flag value {ref}: refers to current or "
                                       "future build stage")
            else:
                if ref not in self.bases:
                    raise InvalidParameter(f"the image {ref} was not resolved")
                from_image = self.bases[ref][0]
            if from_stage is not None:
                self.deps.add(from_stage)
                digest_parts.append(self.planned[from_stage].key)
            else:
                digest_parts.append(from_image)
            for s in srcs:
                p = "/" + posixpath.normpath("/" + s).lstrip("/")
                items.append(CopyItem(p, abs_dest, False, posixpath.basename(p)))
                digest_parts.append(s)
        else:
            ctx = self.context
            if checksum is not None and (heredocs or not all(is_url(s) for s in srcs)):
                raise ParseError(line, "checksum can't be specified for non-HTTP(S) sources")
            for s in srcs:
                if c == "ADD" and is_git_url(s):
                    # BuildKit's ADD <git url>: the repository's tree (no .git) into dest
                    d = self.downloads.get(s)
                    if d is None:
                        if s not in self.missing:
                            self.missing.append(s)
                        continue
                    items.append(CopyItem("/", abs_dest, True, "", d.path, 0.0, True))
                    digest_parts.append(f"git {s} {d.digest}")
                    continue
                if c == "ADD" and is_url(s):
                    d = self.downloads.get(s)
                    if d is None:
                        if s not in self.missing:
                            self.missing.append(s)
                        continue
                    if checksum is not None:
                        got = d.digest_of(checksum.partition(":")[0])
                        if got != checksum:
                            raise InvalidParameter(f"ADD {s}: digest mismatch {got}: "
                                                   f"{checksum}")
                    name = d.name or url_name(s)
                    if not name and (dest_dir or n_src > 1):
                        raise ParseError(line, f"cannot determine filename from url: {s}")
                    items.append(CopyItem(s, abs_dest, False, name, d.path, d.mtime))
                    digest_parts.append(f"url {name} {d.size} {d.digest}")
                    continue
                if re.match(r"^[a-z][a-z0-9+.-]*://", s):
                    raise ParseError(line, f"{c} from a URL is not supported: {s} (only "
                                           "http and https)")
                if ctx is None:
                    raise select_error(c, s)
                matches = self._select(ctx, s, c)
                for name, e in matches:
                    contents = e.kind == "dir"
                    items.append(CopyItem(e.path, abs_dest, contents, name))
                    if contents:
                        digest_parts.append("dir " + e.path)
                        for sub in ctx.below(e.path):
                            digest_parts.append(sub.path[len(e.path):].lstrip("/") + " "
                                                + ctx.meta(sub))
                    else:
                        digest_parts.append("file " + e.path + " " + ctx.meta(e))
            if len(items) > 1:
                dest_dir = True
        for name, content in heredocs:
            digest_parts.append("heredoc " + name + " " + hashlib.sha256(content.encode())
                                .hexdigest())
        digest = _h(*digest_parts).split(":", 1)[1]
        # a --from source is known to be a directory here only by its trailing "/"
        from_dir = bool(from_) and len(srcs) == 1 and (srcs[0].endswith(("/", "/.")) or
                                                        srcs[0] in (".", "/"))
        if len(items) + len(heredocs) == 1 and items and (items[0].contents or from_dir):
            what = "dir"
        elif len(items) + len(heredocs) == 1:
            what = "file"
        else:
            what = "multi"
        desc = f"{c} {what}:{digest} in {dest} "
        if chown:
            # sic: dockerd 20.10 writes no space between the flag and the source
            desc = f"{c} --chown={chown}{what}:{digest} in {dest} "
        if c == "ADD":
            digest_parts.append("add")     # archives are extracted: not COPY's result
        spec = CopySpec(tuple(items), from_stage, from_image, chown, mode, dest_dir,
                        tuple(heredocs), dest=abs_dest, add=c == "ADD")
        return spec, desc

    def _select(self, ctx: Context, src: str, c: str) -> list[tuple[str, Entry]]:
        """(name as written, entry after following symlinks) of each source."""
        norm = normalize(src)
        if any(ch in norm for ch in "*?["):
            pat = re.compile(_glob_to_re(norm))
            out = [e for p, e in sorted(ctx.entries.items()) if p and pat.fullmatch(p)]
            if not out:
                raise InvalidParameter(f"{c} failed: no source files were specified")
            # each match: follow a symlink inside the context
            res = []
            for e in out:
                r = ctx.resolve(e.path)
                if r is not None:
                    res.append((posixpath.basename(e.path), r))
            return res
        e = ctx.resolve(norm)
        if e is None:
            raise select_error(c, src)
        return [(posixpath.basename(norm), e)]


def _glob_to_re(pattern: str) -> str:
    """Go's filepath.Match: * and ? do not cross '/'."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(ch))
            else:
                cls = pattern[i + 1:j]
                if cls.startswith("^"):
                    cls = "^" + cls[1:]
                out.append("[" + cls + "]")
                i = j
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _fmt_duration(ns: int) -> str:
    """Go's Duration.String for whole units (0s, 30s, 1m30s, 1.5s)."""
    if ns == 0:
        return "0s"
    h, rem = divmod(ns, 3600 * 10 ** 9)
    m, rem = divmod(rem, 60 * 10 ** 9)
    s = rem / 10 ** 9
    out = ""
    if h:
        out += f"{h}h"
    if h or m:
        out += f"{m}m"
    out += (f"{s:.9f}".rstrip("0").rstrip(".") or "0") + "s"
    return out
