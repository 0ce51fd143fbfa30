"""Variable substitution (Docker's ProcessWord) and .dockerignore matching (pure)."""

from __future__ import annotations

import pytest

from dockyard.builder.ignore import Matcher, read_patterns
from dockyard.builder.shellwords import (SubstitutionError, env_lookup, process_word,
                                         process_words)

ENV = env_lookup({"A": "a", "EMPTY": "", "SP": "x y", "P": "/usr/bin"})


@pytest.mark.parametrize("word,want", [
    ("$A", "a"), ("${A}", "a"), ("pre${A}post", "preapost"), ("$Ab", ""), ("$A-b", "a-b"),
    ("$UNSET", ""), ("${UNSET:-def}", "def"), ("${EMPTY:-def}", "def"), ("${EMPTY-def}", ""),
    ("${UNSET-def}", "def"), ("${A:-def}", "a"), ("${A:+alt}", "alt"), ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"), ("${UNSET+alt}", ""), ("${UNSET:-$A$A}", "aa"),
    ("${UNSET:-'q w'}", "q w"),
    ("'$A'", "$A"), ('"$A"', "a"), ('"${A} b"', "a b"), ("\\$A", "$A"), ('"\\$A"', "$A"),
    ('"a\\b"', "a\\b"), ('"a\\"b"', 'a"b'), ("a\\ b", "a b"), ("$", "$"), ("a$", "a$"),
    ("$1", "$1"), ("${P}/x", "/usr/bin/x"), ("it's", None),
])
def test_process_word(word, want):
    if want is None:
        with pytest.raises(SubstitutionError):
            process_word(word, ENV)
    else:
        assert process_word(word, ENV) == want


def test_other_escape_character():
    assert process_word("a`$A", ENV, escape="`") == "a$A"
    assert process_word("c:\\dir", ENV, escape="`") == "c:\\dir"


def test_errors():
    with pytest.raises(SubstitutionError, match="unsupported modifier"):
        process_word("${A%b}", ENV)
    with pytest.raises(SubstitutionError, match="missing '}'"):
        process_word("${A", ENV)
    with pytest.raises(SubstitutionError, match="UNSET: must be set"):
        process_word("${UNSET:?must be set}", ENV)
    assert process_word("${A:?x}", ENV) == "a"


def test_process_words_and_used():
    assert process_words('80/tcp  "a b" $SP', ENV) == ["80/tcp", "a b", "x y"]
    assert process_words("", ENV) == []
    used: set = set()
    process_word("$A ${B:-x} '$C'", ENV, used=used)
    assert used == {"A", "B"}


def test_lookup_scopes():
    look = env_lookup(["X=env", "Y=1"], {"X": "arg", "Z": "z", "N": None})
    assert look("X") == "env" and look("Z") == "z" and look("N") is None and look("Q") is None


# -- .dockerignore ------------------------------------------------------------------------------

def m(text):
    return Matcher(read_patterns(text))


def test_read_patterns():
    assert read_patterns("# c\n\n  a/  \n!  b\n/c/../d\n./e\n  # not a comment\n") == [
        "a", "!b", "d", "e", "# not a comment"]


@pytest.mark.parametrize("patterns,path,excluded", [
    ("*.md", "README.md", True), ("*.md", "docs/a.md", False), ("**/*.md", "docs/x/a.md", True),
    ("**/*.md", "a.md", True), ("docs", "docs/x/y", True), ("docs", "src/docs", False),
    ("/docs", "docs/a", True), ("docs/**", "docs/a/b", True), ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True), ("a?c", "abc", True), ("a?c", "a/c", False),
    ("[a-c]x", "bx", True), ("[^a-c]x", "bx", False), ("[^a-c]x", "dx", True),
    ("*\n!keep.md", "keep.md", False), ("*\n!keep.md", "other", True),
    ("*.md\n!important*.md\nimportant-x.md", "important-x.md", True),
    ("*.md\n!important*.md\nimportant-x.md", "important-y.md", False),
    ("build\n!build/keep", "build/keep", False), ("build\n!build/keep", "build/drop", True),
    ("build\n!build/keep", "build/keep/sub", False),
    ("\\*", "*", True), ("\\*", "a", False), (".git", ".git/config", True),
    ("*/temp*", "somedir/temporary.txt", True), ("*/*/temp*", "somedir/subdir/temp", True),
    ("temp?", "tempa", True),
])
def test_matching(patterns, path, excluded):
    assert m(patterns).excluded(path) is excluded


def test_bad_pattern():
    from dockyard.errors import InvalidParameter
    with pytest.raises(InvalidParameter, match="invalid .dockerignore pattern"):
        m("[abc")


def test_may_include_below():
    assert m("build").may_include_below("build") is False
    assert m("build\n!build/keep").may_include_below("build") is True
    assert m("other").may_include_below("build") is True
