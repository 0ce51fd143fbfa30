"""The Dockerfile parser (sans-IO: text in, frozen instructions out).

Docker's (BuildKit's) parsing rules:

* parser directives (``# escape=``, ``# syntax=``) only at the very top, before any
  comment, empty line or instruction; a repeated one is an error, unknown ones are comments;
* comment lines (``#`` after optional whitespace) are dropped, inside continuations too;
* a line ending with the escape character (trailing blanks allowed) continues on the next
  one; continuation lines keep their leading whitespace, empty ones are skipped;
* the first word is the instruction (any case), then ``--flag[=value]`` words, then the
  arguments, parsed by the instruction's entry in :data:`INSTRUCTIONS` (JSON or shell form,
  ``name=value`` pairs, ...);
* heredocs (``<<EOF``, ``<<-EOF``, ``<<"EOF"``) on RUN, COPY and ADD take the following
  lines up to their terminator.

Errors are :class:`ParseError` naming the line: ``dockerfile parse error line 3: unknown
instruction: FROMM``. Variables are not substituted here (see :mod:`.shellwords`): that
depends on the build args and the stage's environment, which only the planner knows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from dockyard.errors import InvalidParameter


class ParseError(InvalidParameter):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.detail = message
        super().__init__(f"dockerfile parse error line {line}: {message}")


@dataclass(frozen=True)
class Heredoc:
    name: str            # the terminator word, e.g. EOF
    content: str         # the lines between, each ending with "\n"
    expand: bool         # unquoted terminator: variables are expanded (COPY) / by the shell (RUN)
    chomp: bool = False  # <<- : leading tabs were stripped


@dataclass(frozen=True)
class Instruction:
    cmd: str                              # upper case: FROM, RUN, ...
    line: int                             # first line (1-based)
    end_line: int
    original: str                         # the instruction as written, continuations joined
    args: tuple = ()                      # per instruction, see INSTRUCTIONS
    flags: tuple[tuple[str, str | None], ...] = ()
    json: bool = False                    # JSON (exec) form
    heredocs: tuple[Heredoc, ...] = ()
    sub: "Instruction | None" = None      # ONBUILD's instruction

    def flag(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.flags:
            if k == name:
                return v
        return default

    def flag_all(self, name: str) -> list[str | None]:
        return [v for k, v in self.flags if k == name]


@dataclass(frozen=True)
class Dockerfile:
    instructions: tuple[Instruction, ...]
    escape: str = "\\"
    directives: tuple[tuple[str, str], ...] = field(default=())


# -- the table of instructions -----------------------------------------------------------------
# name -> (argument form, allowed flags, heredocs allowed)
#   json_or_shell: ["a","b"] (json=True, args=list) or a raw string (args=(raw,))
#   json_only (SHELL), words (whitespace separated), raw (one string), pairs (ENV/LABEL),
#   args (ARG), from, healthcheck, onbuild, copy (json or words)
_FLAGS_COPY = {"from", "chown", "chmod", "link", "parents", "exclude"}
_FLAGS_ADD = {"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"}
INSTRUCTIONS: dict[str, tuple[str, frozenset[str], bool]] = {
    "FROM": ("from", frozenset({"platform"}), False),
    "RUN": ("json_or_shell", frozenset({"mount", "network", "security"}), True),
    "CMD": ("json_or_shell", frozenset(), False),
    "ENTRYPOINT": ("json_or_shell", frozenset(), False),
    "SHELL": ("json_only", frozenset(), False),
    "COPY": ("copy", frozenset(_FLAGS_COPY), True),
    "ADD": ("copy", frozenset(_FLAGS_ADD), True),
    "ENV": ("pairs", frozenset(), False),
    "LABEL": ("pairs", frozenset(), False),
    "ARG": ("args", frozenset(), False),
    "EXPOSE": ("words", frozenset(), False),
    "VOLUME": ("json_or_words", frozenset(), False),
    "USER": ("raw", frozenset(), False),
    "WORKDIR": ("raw", frozenset(), False),
    "STOPSIGNAL": ("raw", frozenset(), False),
    "MAINTAINER": ("raw", frozenset(), False),
    "HEALTHCHECK": ("healthcheck", frozenset({"interval", "timeout", "start-period",
                                              "start-interval", "retries"}), False),
    "ONBUILD": ("onbuild", frozenset(), False),
}

_DIRECTIVE_RE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_KNOWN_DIRECTIVES = ("escape", "syntax", "check")
_HEREDOC_RE = re.compile(r"^<<(-?)(['\"]?)([a-zA-Z_][a-zA-Z0-9_]*)\2$")


def _is_comment(line: str) -> bool:
    return line.lstrip(" \t").startswith("#")


def parse(text: str | bytes) -> Dockerfile:
    """Parse a whole Dockerfile."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(1, "the Dockerfile is not UTF-8 text") from None
    text = text.removeprefix("\ufeff")
    lines = text.replace("\r\n", "\n").split("\n")
    escape = "\\"
    directives: list[tuple[str, str]] = []
    i = 0
    # directives
    while i < len(lines):
        m = _DIRECTIVE_RE.match(lines[i])
        if not m:
            break
        name, value = m.group(1).lower(), m.group(2)
        if name in _KNOWN_DIRECTIVES:
            if any(n == name for n, _ in directives):
                raise ParseError(i + 1, f"only one {name} parser directive can be used")
            if name == "escape":
                if value not in ("\\", "`"):
                    raise ParseError(i + 1, f"invalid escape token '{value}' does not match "
                                            "` or \\")
                escape = value
            directives.append((name, value))
        i += 1
    cont_re = re.compile(re.escape(escape) + r"[ \t]*$")
    out: list[Instruction] = []
    while i < len(lines):
        raw = lines[i]
        start = i + 1
        i += 1
        stripped = raw.lstrip(" \t")
        if not stripped.strip() or _is_comment(stripped):
            continue
        line, done = _trim_cont(stripped, cont_re)
        while not done and i < len(lines):
            nxt = lines[i]
            i += 1
            if _is_comment(nxt):
                continue
            if not nxt.strip():
                continue
            part, done = _trim_cont(nxt, cont_re)
            line += part
        end = i
        ins, i = _instruction(line, start, end, escape, lines, i)
        out.append(ins)
    return Dockerfile(tuple(out), escape, tuple(directives))


def _trim_cont(line: str, cont_re: re.Pattern) -> tuple[str, bool]:
    m = cont_re.search(line)
    if m:
        return line[:m.start()], False
    return line, True


def parse_line(line: str, lineno: int = 1, escape: str = "\\") -> Instruction:
    """One instruction (ONBUILD triggers stored in an image config are parsed with this)."""
    ins, _ = _instruction(line, lineno, lineno, escape, [], 0)
    return ins


def _instruction(line: str, start: int, end: int, escape: str, lines: list[str], i: int
                 ) -> tuple[Instruction, int]:
    parts = line.strip().split(None, 1)
    word = parts[0]
    rest = parts[1] if len(parts) > 1 else ""
    cmd = word.upper()
    spec = INSTRUCTIONS.get(cmd)
    if spec is None:
        raise ParseError(start, f"unknown instruction: {word}")
    form, allowed, heredoc_ok = spec
    original = line.strip()
    flags, rest = _extract_flags(rest, start)
    for name, _ in flags:
        if name not in allowed:
            raise ParseError(start, f"unknown flag: {name}")
    heredocs: tuple[Heredoc, ...] = ()
    if heredoc_ok and "<<" in rest and not rest.lstrip().startswith("["):
        heredocs, i, end = _read_heredocs(rest, lines, i, start, end, escape)
    try:
        args, is_json, sub = _args(cmd, form, rest, start, escape)
    except ParseError:
        raise
    except ValueError as e:
        raise ParseError(start, str(e)) from None
    return Instruction(cmd, start, end, original, args, tuple(flags), is_json, heredocs,
                       sub), i


def _extract_flags(rest: str, line: int) -> tuple[list[tuple[str, str | None]], str]:
    flags: list[tuple[str, str | None]] = []
    while True:
        s = rest.lstrip()
        if not s.startswith("--"):
            return flags, s
        m = re.match(r"\S+", s)
        word = m.group(0)
        after = s[m.end():]
        if word == "--":
            return flags, after.lstrip()
        body = word[2:]
        name, eq, value = body.partition("=")
        if not name:
            raise ParseError(line, f"invalid flag: {word}")
        flags.append((name, value if eq else None))
        rest = after


def _read_heredocs(rest: str, lines: list[str], i: int, start: int, end: int, escape: str):
    docs: list[Heredoc] = []
    for w in rest.split():
        # a heredoc word may be glued to a redirection such as `cat <<EOF >file`
        m = _HEREDOC_RE.match(w)
        if not m:
            continue
        chomp, quote, name = m.group(1) == "-", m.group(2), m.group(3)
        body: list[str] = []
        while True:
            if i >= len(lines):
                raise ParseError(start, f"unterminated heredoc {name}")
            ln = lines[i]
            i += 1
            check = ln.lstrip("\t") if chomp else ln
            if check == name:
                break
            body.append(check + "\n")
        docs.append(Heredoc(name, "".join(body), expand=not quote, chomp=chomp))
        end = i
    return tuple(docs), i, end


def _json_list(rest: str) -> list[str] | None:
    s = rest.strip()
    if not s.startswith("["):
        return None
    try:
        v = json.loads(s)
    except ValueError:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        return None
    return v


def _args(cmd: str, form: str, rest: str, line: int, escape: str):
    """(args, json, sub) of one instruction."""
    if form == "onbuild":
        if not rest.strip():
            raise ParseError(line, "ONBUILD requires at least one argument")
        sub_word = rest.split(None, 1)[0].upper()
        if sub_word in ("ONBUILD", "FROM", "MAINTAINER"):
            raise ParseError(line, f"{sub_word} isn't allowed as an ONBUILD trigger")
        sub = parse_line(rest.strip(), line, escape)
        return (rest.strip(),), False, sub
    if form in ("json_or_shell", "json_only", "copy", "json_or_words"):
        lst = _json_list(rest)
        if lst is not None:
            if form == "copy" and len(lst) < 2:
                raise ParseError(line, f"{cmd} requires at least two arguments, but only "
                                       f"one was provided. Destination could not be determined")
            if not lst and cmd != "CMD" and cmd != "ENTRYPOINT":
                raise ParseError(line, f"{cmd} requires at least one argument")
            return tuple(lst), True, None
        if form == "json_only":
            raise ParseError(line, f"{cmd} requires the arguments to be in JSON form")
        if not rest.strip():
            raise ParseError(line, f"{cmd} requires at least one argument")
        if form == "copy":
            words = tuple(rest.split())
            if len(words) < 2:
                raise ParseError(line, f"{cmd} requires at least two arguments, but only "
                                       f"one was provided. Destination could not be determined")
            return words, False, None
        if form == "json_or_words":
            return tuple(rest.split()), False, None
        return (rest.strip(),), False, None
    if form == "from":
        words = rest.split()
        if len(words) == 3 and words[1].lower() == "as":
            if not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_.-]*", words[2]):
                raise ParseError(line, f"invalid name for build stage: \"{words[2]}\", name "
                                       "can't start with a number or contain symbols")
            return (words[0], words[2].lower()), False, None
        if len(words) != 1:
            raise ParseError(line, "FROM requires either one or three arguments")
        return (words[0], None), False, None
    if form == "pairs":
        return tuple(_pairs(cmd, rest, line, escape)), False, None
    if form == "args":
        words = _split_words(rest, escape)
        if not words:
            raise ParseError(line, "ARG requires at least one argument")
        out = []
        for w in words:
            name, eq, value = w.partition("=")
            if not name:
                raise ParseError(line, "ARG names can not be blank")
            out.append((name, value if eq else None))
        return tuple(out), False, None
    if form == "words":
        words = tuple(rest.split())
        if not words:
            raise ParseError(line, f"{cmd} requires at least one argument")
        return words, False, None
    if form == "raw":
        if not rest.strip():
            raise ParseError(line, f"{cmd} requires exactly one argument" if cmd != "MAINTAINER"
                             else "MAINTAINER requires exactly one argument")
        if cmd in ("USER", "WORKDIR", "STOPSIGNAL") and len(_split_words(rest, escape)) != 1:
            raise ParseError(line, f"{cmd} requires exactly one argument")
        return (rest.strip(),), False, None
    if form == "healthcheck":
        words = rest.split(None, 1)
        if not words:
            raise ParseError(line, "HEALTHCHECK requires at least one argument")
        kind = words[0].upper()
        if kind == "NONE":
            if len(words) > 1:
                raise ParseError(line, "HEALTHCHECK NONE takes no arguments")
            return ("NONE",), False, None
        if kind != "CMD":
            raise ParseError(line, f"Unknown type \"{kind}\" in HEALTHCHECK (try CMD)")
        body = words[1] if len(words) > 1 else ""
        if not body.strip():
            raise ParseError(line, "Missing command after HEALTHCHECK CMD")
        lst = _json_list(body)
        if lst is not None:
            return ("CMD", tuple(lst)), True, None
        return ("CMD", body.strip()), False, None
    raise AssertionError(form)


def _split_words(rest: str, escape: str) -> list[str]:
    """Whitespace-separated words; quotes and escapes keep their blanks (and stay in the
    word: substitution removes them later)."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(rest):
        ch = rest[i]
        if not quote and ch in " \t":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        in_word = True
        if ch == escape and quote != "'" and i + 1 < len(rest):
            cur.append(ch + rest[i + 1])
            i += 2
            continue
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
        cur.append(ch)
        i += 1
    if in_word:
        words.append("".join(cur))
    return words


def _pairs(cmd: str, rest: str, line: int, escape: str) -> list[tuple[str, str]]:
    words = _split_words(rest, escape)
    if not words:
        raise ParseError(line, f"{cmd} requires at least one argument")
    if "=" not in words[0]:
        # the legacy form: ENV name value (the rest of the line is the value)
        if cmd == "LABEL":
            raise ParseError(line, "LABEL requires at least one key=value pair" if len(words) < 2
                             else f"LABEL names can not be blank")
        parts = rest.strip().split(None, 1)
        if len(parts) < 2:
            raise ParseError(line, f"{cmd} must have two arguments")
        return [(parts[0], parts[1].strip())]
    out = []
    for w in words:
        if "=" not in w:
            raise ParseError(line, f"Syntax error - can't find = in \"{w}\". Must be of the "
                                   "form: name=value")
        k, _, v = w.partition("=")
        if not k:
            raise ParseError(line, f"{cmd} names can not be blank")
        out.append((k, v))
    return out
