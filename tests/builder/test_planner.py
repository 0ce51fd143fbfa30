"""The planner: configs, history, cache keys, stage selection (pure, no daemon)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from dockyard.builder.context import receive
from dockyard.builder.dockerfile import ParseError, parse
from dockyard.builder.planner import base_images, plan
from dockyard.errors import InvalidParameter, NotFound

BASE = ("sha256:" + "b" * 64, {"config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["sh"]}})
OTHER = ("sha256:" + "c" * 64, {"config": {"Env": ["PATH=/bin"]}})


def ctx_of(tmp_path, files: dict, name="c"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for path, data in files.items():
            ti = tarfile.TarInfo(path)
            if isinstance(data, tuple):   # (kind, target)
                ti.type = tarfile.SYMTYPE
                ti.linkname = data[1]
                tf.addfile(ti)
                continue
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return receive(buf, str(tmp_path / name))


def mk(text, ctx=None, **kw):
    kw.setdefault("bases", {"busybox": BASE, "other": OTHER})
    return plan(parse(text), context=ctx, **kw)


def final_config(p):
    return json.loads(p.stages[p.target].steps[-1].config)


def test_config_and_history():
    p = mk('FROM busybox\nENV A=1 B="x y"\nENV C=$A-${B}\nLABEL l=$C\nEXPOSE 80 53/udp 8000-8001\n'
           'WORKDIR /app\nWORKDIR sub\nUSER $A\nVOLUME ["/data"]\nSTOPSIGNAL SIGINT\n'
           'ENTRYPOINT ["/e"]\nCMD echo hi\nSHELL ["/bin/bash", "-c"]\nCMD run\n'
           'ONBUILD RUN echo later\nMAINTAINER me\n')
    cfg = final_config(p)
    assert cfg["Env"] == ["PATH=/usr/bin:/bin", "A=1", "B=x y", "C=1-x y"]
    assert cfg["Labels"] == {"l": "1-x y"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert cfg["WorkingDir"] == "/app/sub" and cfg["User"] == "1"
    assert cfg["Volumes"] == {"/data": {}} and cfg["StopSignal"] == "SIGINT"
    assert cfg["Entrypoint"] == ["/e"] and cfg["Shell"] == ["/bin/bash", "-c"]
    assert cfg["Cmd"] == ["/bin/bash", "-c", "run"]
    assert cfg["OnBuild"] == ["RUN echo later"]
    steps = p.stages[0].steps
    by = [s.created_by for s in steps]
    assert by[1] == "/bin/sh -c #(nop)  ENV A=1 B=x y"
    assert by[5] == "/bin/sh -c #(nop) WORKDIR /app"
    assert by[8] == "/bin/sh -c #(nop)  VOLUME [/data]"
    assert by[10] == '/bin/sh -c #(nop)  ENTRYPOINT ["/e"]'
    assert by[11] == '/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "echo hi"]'
    assert by[13] == '/bin/bash -c #(nop)  CMD ["/bin/bash" "-c" "run"]'
    assert steps[-1].author == "me"
    assert [s.kind for s in steps[:3]] == ["from", "config", "config"]
    assert steps[5].kind == "copy" and steps[5].copy.workdir_only


def test_entrypoint_resets_inherited_cmd():
    assert final_config(mk("FROM busybox\nENTRYPOINT [\"x\"]\n"))["Cmd"] is None
    assert final_config(mk("FROM busybox\nCMD [\"c\"]\nENTRYPOINT [\"x\"]\n"))["Cmd"] == ["c"]


def test_run_spec_and_build_args():
    p = mk("ARG V=1\nFROM busybox\nARG V\nARG W=w\nENV E=e\nUSER u\nRUN echo $V\n"
           "RUN [\"/bin/x\", \"a\"]\n", build_args={"W": "cli", "UNUSED": "1", "HTTP_PROXY": "p"})
    run = p.stages[0].steps[-2]
    assert run.kind == "run"
    assert run.run.argv == ("/bin/sh", "-c", "echo $V")
    assert run.run.env == ("PATH=/usr/bin:/bin", "E=e", "V=1", "W=cli", "HTTP_PROXY=p")
    assert run.run.user == "u" and run.run.workdir == "/"
    assert run.created_by == "|3 V=1 W=cli HTTP_PROXY=p /bin/sh -c echo $V"
    assert p.stages[0].steps[-1].run.argv == ("/bin/x", "a")
    assert p.unused_args == ("UNUSED",)
    assert p.total == 8 and p.meta[0].text == "ARG V=1"


def test_env_shadows_arg():
    p = mk("FROM busybox\nARG X=arg\nENV X=env\nRUN echo\nLABEL x=$X\n")
    assert p.stages[0].steps[3].run.env[-1] == "X=env"
    assert final_config(p)["Labels"] == {"x": "env"}


def test_global_arg_in_from_and_redeclared():
    df = "ARG IMG=busybox\nARG TAG\nFROM $IMG\nRUN echo $IMG\nARG IMG\nRUN echo $IMG\n"
    assert base_images(parse(df), {}) == ["busybox"]
    assert base_images(parse(df), {"IMG": "other"}) == ["other"]
    p = mk(df)
    # a global ARG is not in a stage's scope until redeclared (then with its global value)
    assert p.stages[0].steps[1].run.env == ("PATH=/usr/bin:/bin",)
    assert p.stages[0].steps[3].run.env[-1] == "IMG=busybox"


def test_keys_are_content_addressed(tmp_path):
    text = "FROM busybox\nCOPY a /a\nRUN echo\nCMD x\n"
    c1 = ctx_of(tmp_path, {"Dockerfile": b"", "a": b"one", "b": b"x"}, "c1")
    c2 = ctx_of(tmp_path, {"Dockerfile": b"", "a": b"one", "b": b"changed"}, "c2")
    c3 = ctx_of(tmp_path, {"Dockerfile": b"", "a": b"two", "b": b"x"}, "c3")
    k1, k2, k3 = ([s.key for s in mk(text, c).stages[0].steps] for c in (c1, c2, c3))
    assert k1 == k2                      # an unused file does not matter
    assert k1[:1] == k3[:1] and all(a != b for a, b in zip(k1[1:], k3[1:]))
    # the base image is part of every key
    k4 = [s.key for s in mk(text, c1, bases={"busybox": OTHER}).stages[0].steps]
    assert all(a != b for a, b in zip(k1, k4))
    # a build arg changes the keys of the RUN steps that see it, not those before
    t2 = "FROM busybox\nARG V\nCOPY a /a\nRUN echo\n"
    ka = [s.key for s in mk(t2, c1, build_args={"V": "1"}).stages[0].steps]
    kb = [s.key for s in mk(t2, c1, build_args={"V": "2"}).stages[0].steps]
    assert ka[0] == kb[0] and ka[1] != kb[1] and ka[3] != kb[3]
    for c in (c1, c2, c3):
        c.close()


def test_copy_selection(tmp_path):
    ctx = ctx_of(tmp_path, {"Dockerfile": b"", "src/a.txt": b"a", "src/b.txt": b"b",
                            "src/c.md": b"c", "ln": ("l", "/src/a.txt"), "top": ("l", "..")})
    p = mk("FROM busybox\nWORKDIR /w\nCOPY src/*.txt ln dst/\nCOPY src .\nCOPY top /t/\n", ctx)
    s1, s2, s3 = p.stages[0].steps[2:]
    assert [(i.source, i.dest, i.name, i.contents) for i in s1.copy.items] == [
        ("src/a.txt", "/w/dst", "a.txt", False), ("src/b.txt", "/w/dst", "b.txt", False),
        ("src/a.txt", "/w/dst", "ln", False)]
    assert s1.copy.dest_dir and s1.created_by.startswith("/bin/sh -c #(nop) COPY multi:")
    assert [(i.source, i.dest, i.contents) for i in s2.copy.items] == [("src", "/w", True)]
    assert s2.created_by.startswith("/bin/sh -c #(nop) COPY dir:")
    assert s2.created_by.endswith(" in . ")
    assert s3.copy.items[0].source == ""      # a link to .. stays at the context's root
    with pytest.raises(NotFound, match="file not found in build context or excluded by "
                                       ".dockerignore: stat nope: file does not exist"):
        mk("FROM busybox\nCOPY nope /\n", ctx)
    with pytest.raises(ParseError, match="must be a directory and end with a /"):
        mk("FROM busybox\nCOPY src/a.txt src/b.txt /d\n", ctx)
    with pytest.raises(ParseError, match="only http and https"):
        mk("FROM busybox\nADD ftp://x/y /\n", ctx)
    ctx.close()


def test_add_url_needs_its_download_then_keys_on_content(tmp_path):
    from dockyard.builder.planner import Download, MissingDownloads
    text = "FROM busybox\nADD http://h/a/f.txt https://h/g.bin /d/\nADD http://h/a/f.txt /one\n"
    with pytest.raises(MissingDownloads) as e:
        mk(text)
    assert e.value.urls == ["http://h/a/f.txt", "https://h/g.bin"]
    dl = {"http://h/a/f.txt": Download("http://h/a/f.txt", "/x/1", "sha256:aa", 3, 5.0, "f.txt"),
          "https://h/g.bin": Download("https://h/g.bin", "/x/2", "sha256:bb", 4, 0.0, "g.bin")}
    p = mk(text, downloads=dl)
    s1, s2 = p.stages[0].steps[1:]
    assert [(i.dest, i.name, i.download, i.mtime) for i in s1.copy.items] == [
        ("/d", "f.txt", "/x/1", 5.0), ("/d", "g.bin", "/x/2", 0.0)]
    assert s1.copy.add and s1.copy.dest_dir and not s2.copy.dest_dir
    dl2 = dict(dl, **{"http://h/a/f.txt": Download("http://h/a/f.txt", "/x/3", "sha256:cc", 3,
                                                    5.0, "f.txt")})
    q = mk(text, downloads=dl2)
    assert q.stages[0].steps[1].key != s1.key      # new content, new key


def test_copy_flags_and_heredoc(tmp_path):
    ctx = ctx_of(tmp_path, {"Dockerfile": b"", "f": b"x"})
    p = mk("FROM busybox\nENV U=app\nCOPY --chown=$U:1 --chmod=640 f /f\n"
           "COPY <<EOF <<'RAW' /etc/\nhi $U\nEOF\n$U\nRAW\n", ctx)
    c, h = p.stages[0].steps[2].copy, p.stages[0].steps[3].copy
    assert c.chown == "app:1" and c.chmod == 0o640
    assert p.stages[0].steps[2].created_by.startswith("/bin/sh -c #(nop) COPY --chown=app:1file:")
    assert h.heredocs == (("EOF", "hi app\n"), ("RAW", "$U\n"))
    with pytest.raises(ParseError, match="invalid chmod"):
        mk("FROM busybox\nCOPY --chmod=u+x f /f\n", ctx)
    ctx.close()


def test_stages_target_and_levels(tmp_path):
    text = ("FROM busybox AS a\nRUN echo a\n"
            "FROM busybox AS b\nRUN echo b\n"
            "FROM busybox AS unused\nRUN echo u\n"
            "FROM a AS c\nCOPY --from=b /x /x\n"
            "FROM busybox\nCOPY --from=c /x /y\nCOPY --from=other /z /z\n")
    df = parse(text)
    assert base_images(df, {}) == ["busybox", "other"]
    p = mk(text)
    assert [s.index for s in p.stages] == [0, 1, 3, 4]     # "unused" is skipped
    assert p.levels() == [[0, 1], [3], [4]]                # a and b may run together
    assert p.stages[2].deps == (0, 1)
    assert p.stages[2].steps[0].key == p.stages[0].key     # FROM a: a's last key
    assert p.stages[3].steps[2].copy.from_image == OTHER[0]
    assert p.total == 2 + 2 + 2 + 3
    t = mk(text, target="b")
    assert [s.index for s in t.stages] == [1] and t.total == 2
    with pytest.raises(InvalidParameter, match="failed to reach build target nope"):
        mk(text, target="nope")


def test_copy_from_future_stage_refused():
    with pytest.raises(ParseError, match="refers to current or future build stage"):
        mk("FROM busybox AS a\nCOPY --from=1 /x /x\nFROM busybox\n")


def test_onbuild_triggers_run_after_from():
    base = ("sha256:" + "d" * 64, {"config": {"OnBuild": ["ENV T=1", "LABEL t=$T"]}})
    p = mk("FROM withtriggers\nCMD x\n", bases={"withtriggers": base})
    steps = p.stages[0].steps
    # announced once per image, as dockerd does
    assert [s.text for s in steps[1:3]] == ["# Executing 2 build triggers", ""]
    assert [s.trigger for s in steps] == [0, 1, 2, 0]
    cfg = final_config(p)
    assert cfg["Labels"] == {"t": "1"} and cfg["OnBuild"] is None


def test_step_numbers_after_a_base_with_triggers():
    """A base's triggers take no step numbers: the next stage's steps follow on."""
    base = ("sha256:" + "d" * 64, {"config": {"OnBuild": ["ENV T=1", "LABEL t=$T"]}})
    p = mk("ARG X=1\nFROM withtriggers AS a\nCMD x\nFROM busybox\nCOPY --from=a /a /a\n",
           bases={"withtriggers": base, "busybox": BASE})
    numbers = [s.number for st in p.stages for s in st.steps if not s.trigger]
    assert numbers == [2, 3, 4, 5] and p.total == 5


def test_pull_steps_name_where_each_image_is_first_used():
    from dockyard.builder.planner import pull_steps
    df = parse("ARG B=busybox\nFROM other AS skipped\nFROM $B AS a\nRUN x\n"
               "FROM other\nCOPY --from=img /x /x\nCOPY --from=a /y /y\n"
               "RUN --mount=from=img2,target=/m x\n")
    refs = base_images(df, {}, "")
    assert pull_steps(df, {}, "", refs) == {"busybox": 2, "other": 4, "img": 5, "img2": 7}
    # only what is pulled; a target's stages only
    assert pull_steps(df, {}, "a", ["busybox"]) == {"busybox": 2}
    assert pull_steps(df, {"B": "other"}, "a", ["other"]) == {"other": 2}


def test_healthcheck_config():
    cfg = final_config(mk("FROM busybox\nHEALTHCHECK --interval=1m30s --timeout=3s --retries=2 "
                          "CMD curl -f x\n"))
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f x"], "Interval": 90 * 10 ** 9,
                                  "Timeout": 3 * 10 ** 9, "Retries": 2}
    assert final_config(mk("FROM busybox\nHEALTHCHECK NONE\n"))["Healthcheck"] == {
        "Test": ["NONE"]}
    with pytest.raises(ParseError, match="invalid duration"):
        mk("FROM busybox\nHEALTHCHECK --interval=5 CMD x\n")


def test_labels_parameter_on_final_image():
    p = mk("FROM busybox AS a\nFROM busybox\nLABEL x=1\n", labels={"z": "$x", "y": "2"})
    assert final_config(p)["Labels"] == {"x": "1", "y": "2", "z": "$x"}
    assert [s.text for s in p.stages[0].steps] == ["FROM busybox", "LABEL x=1", "LABEL y=2",
                                                   "LABEL z=$x"]
    assert p.total == 4
    assert mk("FROM busybox\nLABEL x=1\n").stages[0].key != p.stages[0].key
    # on a Dockerfile of only FROM too
    assert final_config(mk("FROM busybox\n", labels={"y": "2"}))["Labels"] == {"y": "2"}


def test_errors_name_lines():
    with pytest.raises(ParseError, match="line 2: no build stage in current context"):
        mk("ARG A\nRUN x\nFROM busybox\n")
    with pytest.raises(ParseError, match="line 1: base name"):
        mk("FROM $NOPE\n")
    with pytest.raises(ParseError, match="invalid containerPort"):
        mk("FROM busybox\nEXPOSE http\n")
    with pytest.raises(ParseError, match="line 2: RUN --mount=type=secret is not supported: "
                                         "secrets and SSH agents come through a BuildKit"):
        mk("FROM busybox\nRUN --mount=type=secret,id=x true\n")
    with pytest.raises(ParseError, match="unexpected key 'size' .* type=cache"):
        mk("FROM busybox\nRUN --mount=type=cache,target=/c,size=1 true\n")
    with pytest.raises(ParseError, match="invalid --mount sharing"):
        mk("FROM busybox\nRUN --mount=type=cache,target=/c,sharing=x true\n")
    with pytest.raises(InvalidParameter, match="no FROM"):
        mk("ARG A\n")


def test_scratch():
    p = mk("FROM scratch\nENV A=1\n")
    assert base_images(parse("FROM scratch\n"), {}) == []
    # dockerd gives a stage whose base sets no PATH the default one (scratch too)
    assert final_config(p) == {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                       "/sbin:/bin", "A=1"]}


def test_run_mounts_planned(tmp_path):
    ctx = ctx_of(tmp_path, {"Dockerfile": b"", "src/a.txt": b"a"})
    text = ("FROM busybox AS tools\nRUN true\nFROM busybox\nWORKDIR /w\n"
            "RUN --mount=type=cache,target=c,sharing=locked,uid=7,mode=0700 "
            "--mount=type=bind,source=src,target=/s "
            "--mount=type=bind,from=tools,source=/bin,target=/t,rw "
            "--mount=type=tmpfs,target=/tmp,size=64m true\n")
    p = mk(text, ctx)
    st = p.stages[1]
    run = st.steps[-1].run
    c, b, f, t = run.mounts
    assert (c.type, c.target, c.id, c.sharing, c.uid, c.mode) == ("cache", "/w/c", "/w/c",
                                                                   "locked", 7, 0o700)
    assert (b.type, b.source, b.target, b.readonly) == ("bind", "src", "/s", True)
    assert (f.from_stage, f.readonly) == (0, False) and st.deps == (0,)
    assert (t.type, t.size) == ("tmpfs", 64 << 20)
    ctx2 = ctx_of(tmp_path / "2", {"Dockerfile": b"", "src/a.txt": b"b"})
    assert mk(text, ctx2).stages[1].steps[-1].key != st.steps[-1].key   # bound content
    ctx.close()
    ctx2.close()
