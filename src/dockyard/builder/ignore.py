"""``.dockerignore``: Docker's pattern matching (moby/patternmatcher), sans-IO.

* one pattern a line; ``#`` lines are comments; blanks trimmed; empty lines skipped;
* ``!pattern`` re-includes what an earlier pattern excluded (the last matching pattern wins);
* patterns are cleaned like Go's ``filepath.Clean`` and a leading ``/`` is dropped (they
  are always relative to the context's root);
* ``*`` any run of non-separators, ``?`` one non-separator, ``**`` any number of
  directories (``**/`` none too), ``[...]`` character classes, ``\\`` escapes;
* a pattern matching a directory matches everything below it.
"""

from __future__ import annotations

import posixpath
import re


class Pattern:
    # a plain class: `dockyard build` imports this module, and dataclasses costs ~5 ms
    __slots__ = ("text", "exclusion", "regex")

    def __init__(self, text: str, exclusion: bool, regex: re.Pattern) -> None:
        self.text, self.exclusion, self.regex = text, exclusion, regex


def read_patterns(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    out = []
    for line in text.removeprefix("\ufeff").splitlines():
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line.lstrip("/") or "/"
        out.append(("!" if invert else "") + line)
    return out


def _compile(pattern: str) -> re.Pattern:
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                    out.append("(.*/)?")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            if i < n:
                out.append(re.escape(pattern[i]))
        elif ch == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise ValueError(f"syntax error in pattern {pattern!r}")
            cls = pattern[i + 1:j]
            if cls.startswith("^") or cls.startswith("!"):
                cls = "^" + cls[1:]
            out.append("[" + cls.replace("\\", "\\\\") + "]")
            i = j
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.S)


class Matcher:
    """``excluded(path)``: does the pattern list exclude this context path?"""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[Pattern] = []
        for p in patterns:
            excl = p.startswith("!")
            body = p[1:] if excl else p
            if not body:
                continue
            body = posixpath.normpath(body)
            if body == ".":
                continue
            try:
                rx = _compile(body)
            except (ValueError, re.error) as e:
                from dockyard.errors import InvalidParameter
                raise InvalidParameter(f"invalid .dockerignore pattern {p!r}: {e}") from None
            self.patterns.append(Pattern(p, excl, rx))

    @property
    def has_exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        path = posixpath.normpath(path.lstrip("/"))
        parents = path.split("/")[:-1]
        matched = False
        for p in self.patterns:
            if p.exclusion != matched:
                continue    # an inclusion when already excluded, or the reverse: no change
            m = p.regex.match(path) is not None
            if not m:
                for k in range(1, len(parents) + 1):
                    if p.regex.match("/".join(parents[:k])):
                        m = True
                        break
            if m:
                matched = not p.exclusion
        return matched

    def may_include_below(self, dir_path: str) -> bool:
        """False when ``dir_path`` is excluded and no ``!`` pattern could bring anything
        below it back (the walker may skip the whole directory)."""
        if not self.excluded(dir_path):
            return True
        return self.has_exclusions
