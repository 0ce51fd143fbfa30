import pytest

from dockyard.errors import InvalidParameter
from dockyard.images.config import apply_changes, normalize_time, parse_time, rfc3339


@pytest.mark.parametrize("change,key,value", [
    ('CMD ["echo", "hi"]', "Cmd", ["echo", "hi"]),
    ("CMD echo hi", "Cmd", ["/bin/sh", "-c", "echo hi"]),
    ("CMD [not json", "Cmd", ["/bin/sh", "-c", "[not json"]),
    ('ENTRYPOINT ["/init"]', "Entrypoint", ["/init"]),
    ("ENTRYPOINT run.sh --x", "Entrypoint", ["/bin/sh", "-c", "run.sh --x"]),
    ("ENV A=1 B=\"two words\" C='x y'", "Env", ["A=1", "B=two words", "C=x y"]),
    ("ENV LEGACY some value", "Env", ["LEGACY=some value"]),
    ("ENV P=a\\ b", "Env", ["P=a b"]),
    ("EXPOSE 80 443/tcp 53/udp 8000-8001", "ExposedPorts",
     {"80/tcp": {}, "443/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}),
    ('LABEL a=b "c d"=e', "Labels", {"a": "b", "c d": "e"}),
    ('VOLUME ["/a", "/b"]', "Volumes", {"/a": {}, "/b": {}}),
    ("VOLUME /x /y", "Volumes", {"/x": {}, "/y": {}}),
    ("USER nobody:nogroup", "User", "nobody:nogroup"),
    ("WORKDIR /srv/app", "WorkingDir", "/srv/app"),
    ("STOPSIGNAL SIGQUIT", "StopSignal", "SIGQUIT"),
    ("ONBUILD add . /app", "OnBuild", ["ADD . /app"]),
    ("cmd lowercase works", "Cmd", ["/bin/sh", "-c", "lowercase works"]),
])
def test_single_change(change, key, value):
    assert apply_changes(None, [change])[key] == value


def test_sequences_and_substitution():
    c = apply_changes(None, ["ENV BASE=/opt", "WORKDIR $BASE", "WORKDIR sub/../app",
                             "ENV PATH=${BASE}/bin:${MISSING:-/bin}", "ENV BASE=/new"])
    assert c["WorkingDir"] == "/opt/app"
    assert c["Env"] == ["BASE=/new", "PATH=/opt/bin:/bin"]
    c = apply_changes(None, ['CMD ["a"]', 'ENTRYPOINT ["b"]'])
    assert c["Cmd"] == ["a"] and c["Entrypoint"] == ["b"]
    c = apply_changes({"Cmd": ["old"], "Env": ["X=1"]}, ['ENTRYPOINT ["b"]'])
    assert c["Cmd"] is None and c["Env"] == ["X=1"]     # ENTRYPOINT resets an inherited CMD
    assert list(apply_changes(None, [])) [:3] == ["Hostname", "Domainname", "User"]


@pytest.mark.parametrize("change,msg", [
    ("FROM busybox", "from is not a valid change command"),
    ("RUN true", "run is not a valid change command"),
    ("ENV", "ENV requires at least one argument"),
    ("ENV A=1 B", "can't find = in"),
    ("EXPOSE 99999", "invalid containerPort"),
    ("EXPOSE 80/xyz", "invalid proto"),
    ("ONBUILD ONBUILD RUN x", "isn't allowed"),
    ("USER", "USER requires exactly one argument"),
])
def test_bad_changes(change, msg):
    with pytest.raises(InvalidParameter, match=msg):
        apply_changes(None, [change])


def test_times():
    assert rfc3339(1700000000.5) == "2023-11-14T22:13:20.5Z"
    assert rfc3339(1700000000) == "2023-11-14T22:13:20Z"
    assert parse_time("2023-11-14T22:13:20.123456789Z") == pytest.approx(1700000000.123456789)
    assert parse_time("2023-11-14T23:13:20+01:00") == 1700000000
    assert normalize_time("2023-11-14T22:13:20.120000000Z") == "2023-11-14T22:13:20.12Z"
    assert parse_time("garbage") == 0
