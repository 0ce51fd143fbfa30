"""The Dockerfile parser: Docker's rules, errors naming the line (pure, no daemon)."""

from __future__ import annotations

import pytest

from dockyard.builder.dockerfile import Heredoc, ParseError, parse, parse_line


def cmds(text):
    return [(i.cmd, i.args) for i in parse(text).instructions]


def test_forms_and_case():
    df = parse('from busybox\nrun echo hi\nCmd ["sh", "-c", "x"]\nENTRYPOINT top -b\n')
    a, b, c, d = df.instructions
    assert (a.cmd, a.args) == ("FROM", ("busybox", None))
    assert (b.cmd, b.args, b.json) == ("RUN", ("echo hi",), False)
    assert (c.cmd, c.args, c.json) == ("CMD", ("sh", "-c", "x"), True)
    assert (d.cmd, d.args, d.json) == ("ENTRYPOINT", ("top -b",), False)
    assert [i.line for i in df.instructions] == [1, 2, 3, 4]


def test_not_json_is_shell_form():
    # a bracket that is not a JSON array of strings is a shell command (Docker's rule)
    assert cmds("FROM a\nRUN [ -f x ] && echo y\nCMD [1, 2]\n")[1:] == [
        ("RUN", ("[ -f x ] && echo y",)), ("CMD", ("[1, 2]",))]


def test_from_as_and_errors():
    assert cmds("FROM img:1 AS Build\n") == [("FROM", ("img:1", "build"))]
    with pytest.raises(ParseError, match="line 1: FROM requires either one or three"):
        parse("FROM a b\n")
    with pytest.raises(ParseError, match="invalid name for build stage"):
        parse("FROM a AS 1x\n")


def test_unknown_instruction_names_its_line():
    with pytest.raises(ParseError) as e:
        parse("FROM a\n# c\nFROMM b\n")
    assert str(e.value) == "dockerfile parse error line 3: unknown instruction: FROMM"
    assert e.value.status == 400


def test_unknown_flag_refused():
    with pytest.raises(ParseError, match="line 2: unknown flag: frm"):
        parse("FROM a\nCOPY --frm=x a b\n")
    with pytest.raises(ParseError, match="unknown flag: chown"):
        parse("FROM a\nRUN --chown=1 true\n")


def test_flags():
    i = parse("FROM a\nCOPY --from=b --chown=1:2 --chmod=644 --link x /y\n").instructions[1]
    assert i.flags == (("from", "b"), ("chown", "1:2"), ("chmod", "644"), ("link", None))
    assert i.flag("from") == "b" and i.args == ("x", "/y")
    r = parse("FROM a\nRUN --network=none --mount=type=cache,target=/c true\n").instructions[1]
    assert r.flag("network") == "none" and r.flag_all("mount") == ["type=cache,target=/c"]


def test_continuations_comments_and_empty_lines():
    df = parse("FROM a\nRUN echo a \\\n  # a comment inside\n\n   b \\  \n c\nLABEL x=1\n")
    run = df.instructions[1]
    assert run.args == ("echo a    b  c",)
    assert (run.line, run.end_line) == (2, 6)
    assert df.instructions[2].line == 7


def test_escape_directive():
    df = parse("# escape=`\nFROM a\nRUN dir c:\\ `\n  x\n")
    assert df.escape == "`"
    assert df.instructions[1].args == ("dir c:\\   x",)
    assert df.directives == (("escape", "`"),)


def test_directives_only_at_top():
    # after an instruction (or an empty line, or a comment) it is a comment
    df = parse("FROM a\n# escape=`\nRUN a \\\n b\n")
    assert df.escape == "\\" and df.instructions[1].args == ("a  b",)
    assert parse("\n# escape=`\nFROM a\n").escape == "\\"
    assert parse("# hello\n# escape=`\nFROM a\n").escape == "\\"


def test_directive_errors():
    with pytest.raises(ParseError, match="line 2: only one escape parser directive"):
        parse("# escape=\\\n# escape=`\nFROM a\n")
    with pytest.raises(ParseError, match="invalid escape token"):
        parse("# escape=x\nFROM a\n")
    # syntax is accepted and ignored; unknown directives are comments
    df = parse("# syntax=docker/dockerfile:1\n# foo=bar\nFROM a\n")
    assert df.directives == (("syntax", "docker/dockerfile:1"),)


def test_bom_and_crlf():
    assert cmds("\ufeffFROM a\r\nRUN x\r\n") == [("FROM", ("a", None)), ("RUN", ("x",))]


def test_env_and_label_forms():
    df = parse('FROM a\nENV A=1 B="two words" C=x\\ y\nENV OLD the rest of it\n'
               'LABEL "k 1"=v a.b=\'c d\'\n')
    assert df.instructions[1].args == (("A", "1"), ("B", '"two words"'), ("C", "x\\ y"))
    assert df.instructions[2].args == (("OLD", "the rest of it"),)
    assert df.instructions[3].args == (('"k 1"', "v"), ("a.b", "'c d'"))
    with pytest.raises(ParseError, match="ENV must have two arguments"):
        parse("FROM a\nENV X\n")
    with pytest.raises(ParseError, match="can't find = in"):
        parse("FROM a\nENV A=1 B\n")
    with pytest.raises(ParseError, match="ENV names can not be blank"):
        parse("FROM a\nENV =1\n")


def test_arg():
    df = parse("ARG A\nARG B=2 C=\nFROM a\n")
    assert df.instructions[0].args == (("A", None),)
    assert df.instructions[1].args == (("B", "2"), ("C", ""))


def test_missing_arguments():
    for text, msg in [("FROM a\nRUN\n", "RUN requires at least one argument"),
                      ("FROM a\nCOPY x\n", "COPY requires at least two arguments"),
                      ("FROM a\nWORKDIR\n", "WORKDIR requires exactly one argument"),
                      ("FROM a\nUSER a b\n", "USER requires exactly one argument"),
                      ("FROM a\nSHELL /bin/bash -c\n", "SHELL requires the arguments to be in JSON"),
                      ("FROM a\nEXPOSE\n", "EXPOSE requires at least one argument")]:
        with pytest.raises(ParseError, match=msg):
            parse(text)


def test_heredocs():
    df = parse("FROM a\nRUN <<EOF\necho one\necho two\nEOF\nRUN cat <<-X >/f\n\thi $A\n\tX\n"
               "COPY <<'A' <<B /dst/\n$x\nA\n$y\nB\nCMD x\n")
    run1, run2, copy, cmd = df.instructions[1:]
    assert run1.heredocs == (Heredoc("EOF", "echo one\necho two\n", expand=True),)
    assert (run1.line, run1.end_line) == (2, 5)
    assert run2.heredocs == (Heredoc("X", "hi $A\n", expand=True, chomp=True),)
    assert [(h.name, h.content, h.expand) for h in copy.heredocs] == [
        ("A", "$x\n", False), ("B", "$y\n", True)]
    assert cmd.line == 14 and cmd.args == ("x",)
    with pytest.raises(ParseError, match="line 2: unterminated heredoc EOF"):
        parse("FROM a\nRUN <<EOF\necho\n")


def test_healthcheck():
    h = parse("FROM a\nHEALTHCHECK --interval=5s --retries=3 CMD curl -f x\n").instructions[1]
    assert h.args == ("CMD", "curl -f x") and h.flag("interval") == "5s"
    h = parse('FROM a\nHEALTHCHECK CMD ["true"]\n').instructions[1]
    assert h.args == ("CMD", ("true",)) and h.json
    assert parse("FROM a\nHEALTHCHECK NONE\n").instructions[1].args == ("NONE",)
    with pytest.raises(ParseError, match='Unknown type "RUN" in HEALTHCHECK'):
        parse("FROM a\nHEALTHCHECK RUN x\n")
    with pytest.raises(ParseError, match="unknown flag: interva"):
        parse("FROM a\nHEALTHCHECK --interva=1s CMD x\n")


def test_onbuild():
    i = parse("FROM a\nONBUILD RUN echo hi\n").instructions[1]
    assert i.sub.cmd == "RUN" and i.sub.args == ("echo hi",)
    for bad in ("ONBUILD", "FROM", "MAINTAINER"):
        with pytest.raises(ParseError, match="isn't allowed as an ONBUILD trigger"):
            parse(f"FROM a\nONBUILD {bad} x\n")
    assert parse_line("COPY a /b").args == ("a", "/b")


def test_not_utf8():
    with pytest.raises(ParseError, match="not UTF-8"):
        parse(b"FROM \xff\n")
