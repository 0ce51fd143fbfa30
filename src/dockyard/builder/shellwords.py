"""Docker's variable substitution for Dockerfile words (sans-IO).

Rules of BuildKit's shell lexer (``ProcessWord``):

* ``$name`` and ``${name}``; ``${name:-word}`` / ``${name-word}`` (default when unset or
  empty / when unset), ``${name:+word}`` / ``${name+word}`` (alternative),
  ``${name:?msg}`` / ``${name?msg}`` (error); ``$`` before anything else is literal;
* single quotes: everything literal; double quotes: the escape character only escapes
  ``"``, ``$`` and itself; unquoted: the escape character makes the next one literal;
* quotes are removed from the result.

:func:`process_word` gives one string; :func:`process_words` splits on unquoted blanks
(after expansion, as the shell would not: a variable's value is not split again, as in
BuildKit). ``lookup`` returns a variable's value or None when unset; every name looked up
is recorded in ``used`` when given (the planner puts the build args a step reads into its
cache key).
"""

from __future__ import annotations

from typing import Callable

from dockyard.errors import InvalidParameter

Lookup = Callable[[str], "str | None"]


class SubstitutionError(InvalidParameter):
    pass


def _is_name_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_"


def _is_name_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class _Lexer:
    def __init__(self, text: str, lookup: Lookup, escape: str, used: set | None) -> None:
        self.s = text
        self.i = 0
        self.lookup = lookup
        self.escape = escape
        self.used = used

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1
        return ch

    def get(self, name: str) -> str | None:
        if self.used is not None:
            self.used.add(name)
        return self.lookup(name)

    # words: list of (text, quoted) pieces; a split point is an unquoted blank
    def words(self, stop: str = "", split: bool = False) -> list[str]:
        out: list[str] = []
        cur: list[str] = []
        have = False
        while self.i < len(self.s):
            ch = self.peek()
            if stop and ch in stop:
                break
            if split and ch in " \t\n":
                self.i += 1
                if have:
                    out.append("".join(cur))
                    cur, have = [], False
                continue
            have = True
            if ch == "'" and not stop:
                self.i += 1
                cur.append(self._single())
            elif ch == '"':
                self.i += 1
                cur.append(self._double())
            elif ch == "$":
                self.i += 1
                cur.append(self._dollar())
            elif ch == self.escape:
                self.i += 1
                if self.i < len(self.s):
                    cur.append(self.next())
                else:
                    cur.append(ch)
            else:
                self.i += 1
                cur.append(ch)
        if have or not split:
            out.append("".join(cur))
        return out

    def _single(self) -> str:
        j = self.s.find("'", self.i)
        if j < 0:
            raise SubstitutionError("unexpected end of statement while looking for matching "
                                    "single-quote")
        text = self.s[self.i:j]
        self.i = j + 1
        return text

    def _double(self) -> str:
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise SubstitutionError("unexpected end of statement while looking for "
                                        "matching double-quote")
            ch = self.next()
            if ch == '"':
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
            elif ch == self.escape:
                nxt = self.peek()
                if nxt in ('"', "$", self.escape) and nxt:
                    out.append(self.next())
                else:
                    out.append(ch)
            else:
                out.append(ch)

    def _dollar(self) -> str:
        ch = self.peek()
        if ch == "{":
            self.i += 1
            return self._braced()
        if ch and _is_name_start(ch):
            j = self.i
            while j < len(self.s) and _is_name_char(self.s[j]):
                j += 1
            name = self.s[self.i:j]
            self.i = j
            return self.get(name) or ""
        return "$"

    def _braced(self) -> str:
        j = self.i
        while j < len(self.s) and _is_name_char(self.s[j]):
            j += 1
        name = self.s[self.i:j]
        self.i = j
        if not name:
            raise SubstitutionError(f"bad substitution: ${{{self.s[self.i:]}")
        ch = self.next()
        if ch == "}":
            return self.get(name) or ""
        if ch == "":
            raise SubstitutionError("syntax error: missing '}'")
        colon = False
        if ch == ":":
            colon = True
            ch = self.next()
        if ch not in ("-", "+", "?"):
            raise SubstitutionError(f"unsupported modifier ({ch}) in substitution")
        # the word runs to the matching brace, with nested substitutions expanded
        word = self._word_to_brace()
        value = self.get(name)
        is_set = value is not None and (value != "" or not colon)
        if ch == "-":
            return value if is_set else word
        if ch == "+":
            return word if is_set else ""
        if not is_set:
            raise SubstitutionError(f"{name}: {word or 'is not allowed to be unset'}")
        return value

    def _word_to_brace(self) -> str:
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise SubstitutionError("syntax error: missing '}'")
            ch = self.next()
            if ch == "}":
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
            elif ch == "'":
                out.append(self._single())
            elif ch == '"':
                out.append(self._double())
            elif ch == self.escape and self.i < len(self.s):
                out.append(self.next())
            else:
                out.append(ch)


def process_word(text: str, lookup: Lookup, escape: str = "\\",
                 used: set | None = None) -> str:
    """Expand and unquote one word."""
    return _Lexer(text, lookup, escape, used).words()[0]


def process_words(text: str, lookup: Lookup, escape: str = "\\",
                  used: set | None = None) -> list[str]:
    """Expand and split on unquoted blanks (EXPOSE, VOLUME, COPY's shell form)."""
    return _Lexer(text, lookup, escape, used).words(split=True)


def env_lookup(*scopes: "dict[str, str] | list[str]") -> Lookup:
    """A lookup over dicts or ``KEY=value`` lists, the first scope that has the name wins."""
    dicts = []
    for s in scopes:
        if isinstance(s, dict):
            dicts.append(s)
        else:
            d = {}
            for kv in s:
                k, _, v = kv.partition("=")
                d[k] = v
            dicts.append(d)

    def lookup(name: str) -> str | None:
        for d in dicts:
            if name in d and d[name] is not None:
                return d[name]
        return None
    return lookup
