"""`dockyard pull | push | login | logout | search`, as the Docker CLI does them.

Credentials live in the Docker CLI's config.json (``$DOCKER_CONFIG`` or
``~/.docker``), shared with the real ``docker``; pull, push and search send
them to the daemon as ``X-Registry-Auth``.

``pull_image(client, ref, out)`` is for ``run``/``create``: after a 404 "No
such image" they call it, then retry (they print "Unable to find image ...
locally" themselves, as docker does).
"""

from __future__ import annotations

import sys

from dockyard.cli.docker import CommandError
from dockyard.cli.parser import CommandParser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Iterable

# ------------------------------------------------------------------ progress display


class ProgressDisplay:
    """Docker's jsonmessage display: on a terminal one line per layer id, redrawn
    in place (cursor moves); otherwise plain lines, progress bars left out."""

    def __init__(self, out: IO[str], tty: bool):
        self.out = out
        self.tty = tty
        self.ids: dict[str, int] = {}

    @staticmethod
    def _text(m: dict, tty: bool) -> str | None:
        if "stream" in m:
            return m["stream"]
        st = m.get("status")
        if st is None:
            return None
        prog = m.get("progress") or ""
        if not tty and prog:
            return None
        s = (f"{m['id']}: " if m.get("id") else "") + st
        if tty and "progressDetail" in m:
            s += " " + prog
        return s

    def show(self, m: dict) -> None:
        text = self._text(m, self.tty)
        if text is None:
            return
        w = self.out.write
        if "stream" in m:
            self.ids = {}
            w(text)
        elif self.tty and m.get("id"):
            line = self.ids.get(m["id"])
            if line is None:
                self.ids[m["id"]] = len(self.ids)
                w("\x1b[2K\r" + text + "\n")
            else:
                diff = len(self.ids) - line
                w(f"\x1b[{diff}A\x1b[2K\r{text}\r\x1b[{diff}B")
        else:
            if not m.get("id"):
                self.ids = {}
            w(text + "\n")
        self.out.flush()

    def run(self, msgs: Iterable[dict]) -> list[dict]:
        seen = []
        for m in msgs:
            seen.append(m)
            self.show(m)
        return seen


def _auth_header(domain: str) -> dict:
    from dockyard.images import credentials

    try:
        auth = credentials.get(domain if domain != "docker.io" else None)
    except credentials.CredentialsError:
        auth = credentials.AuthConfig()
    return {"X-Registry-Auth": credentials.encode_header(auth)}


def _parse_ref(name: str):
    from dockyard.errors import InvalidParameter
    from dockyard.images import reference as refs

    try:
        return refs.parse_normalized(name)
    except InvalidParameter as e:
        raise CommandError(f"{e}".replace("invalid reference format: invalid reference format",
                                          "invalid reference format")) from None


def _pull(client, ref, out: IO[str], tty: bool, quiet: bool, platform: str | None = None,
          all_tags: bool = False) -> None:
    params = {"fromImage": ref.name}
    if not all_tags:
        params["tag"] = ref.digest or ref.tag or "latest"
    if platform:
        params["platform"] = platform
    msgs = client.stream_json("POST", "/images/create", params, headers=_auth_header(ref.domain))
    if quiet:
        for _ in msgs:
            pass
    else:
        ProgressDisplay(out, tty).run(msgs)


def pull_image(client, ref: str, out: IO[str] | None = None, platform: str | None = None,
               quiet: bool = False) -> None:
    """Pull ``ref`` through the daemon (for run/create); progress to ``out`` (stderr)."""
    out = out or sys.stderr
    r = _parse_ref(ref).with_default_tag()
    _pull(client, r, out, out.isatty() if hasattr(out, "isatty") else False, quiet, platform)


def cmd_pull(g, argv: list[str]) -> int:
    p = CommandParser("pull", "[OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry",
                      nargs=(1, 1), nargs_text='requires 1 argument')
    p.add_flag("-a", "--all-tags", help="Download all tagged images in the repository")
    p.add_flag("--disable-content-trust", help="Skip image verification (default true)")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_flag("-q", "--quiet", help="Suppress verbose output")
    o = p.parse(argv)
    ref = _parse_ref(o.args[0])
    if o.all_tags and (ref.tag or ref.digest):
        raise CommandError("tag can't be used with --all-tags/-a")
    if not o.all_tags and not ref.tag and not ref.digest:
        ref = ref.with_default_tag()
        if not o.quiet:
            print("Using default tag: latest")
    _pull(g.client(), ref, sys.stdout, sys.stdout.isatty(), o.quiet, o.platform, o.all_tags)
    print(ref.name if o.all_tags else str(ref))
    return 0


def cmd_push(g, argv: list[str]) -> int:
    p = CommandParser("push", "[OPTIONS] NAME[:TAG]", "Upload an image to a registry",
                      nargs=(1, 1), nargs_text='requires 1 argument')
    p.add_flag("-a", "--all-tags", help="Push all tags of an image to the repository")
    p.add_flag("--disable-content-trust", help="Skip image signing (default true)")
    p.add_argument("--platform", help="Push a platform-specific manifest as a single-platform image")
    p.add_flag("-q", "--quiet", help="Suppress verbose output")
    o = p.parse(argv)
    ref = _parse_ref(o.args[0])
    if o.all_tags and ref.tag:
        raise CommandError("tag can't be used with --all-tags/-a")
    if ref.digest:
        raise CommandError("cannot push a digest reference")
    if not o.all_tags and not ref.tag:
        ref = ref.with_default_tag()
        if not o.quiet:
            print("Using default tag: latest")
    from urllib.parse import quote

    c = g.client()
    params = {"tag": ref.tag} if ref.tag else {}
    msgs = c.stream_json("POST", f"/images/{quote(ref.familiar_name, safe='/:')}/push", params,
                         headers=_auth_header(ref.domain))
    if o.quiet:
        for _ in msgs:
            pass
        print(str(ref) if ref.tag else ref.name)
    else:
        ProgressDisplay(sys.stdout, sys.stdout.isatty()).run(msgs)
    return 0


# ------------------------------------------------------------------ login / logout


def cmd_login(g, argv: list[str]) -> int:
    from dockyard.errors import Unauthorized
    from dockyard.images import credentials

    p = CommandParser("login", "[OPTIONS] [SERVER]",
                      "Authenticate to a registry.\nDefaults to Docker Hub if no server is specified.",
                      nargs=(0, 1), nargs_text="requires at most 1 argument")
    p.add_argument("-p", "--password", help="Password or Personal Access Token (PAT)")
    p.add_flag("--password-stdin", help="Take the Password or Personal Access Token (PAT) from stdin")
    p.add_argument("-u", "--username", help="Username")
    o = p.parse(argv)
    server = o.args[0] if o.args else credentials.HUB_SERVER
    key = credentials.server_key(server)
    password = o.password
    if o.password and o.password_stdin:
        raise CommandError("--password and --password-stdin are mutually exclusive")
    if o.password_stdin:
        if not o.username:
            raise CommandError("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif o.password:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
    c = g.client()
    username = o.username
    if not username and not password:
        try:
            stored = credentials.get(key)
        except credentials.CredentialsError:
            stored = credentials.AuthConfig()
        if stored.username and stored.password:
            print("Authenticating with existing credentials...")
            try:
                _login(c, stored.username, stored.password, server)
                print("Login Succeeded")
                return 0
            except Unauthorized as e:
                sys.stderr.write(f"Login did not succeed, error: {e}\n")
        if not sys.stdin.isatty():
            raise CommandError("Error: Cannot perform an interactive login from a non TTY device")
        username = input(f"Username{f' ({stored.username})' if stored.username else ''}: ").strip() \
            or stored.username
    if not username:
        raise CommandError("Error: Non-null Username Required")
    if not password:
        if not sys.stdin.isatty():
            raise CommandError("Error: Cannot perform an interactive login from a non TTY device")
        import getpass
        password = getpass.getpass("Password: ")
    if not password:
        raise CommandError("Error: Password Required")
    _login(c, username, password, server)
    try:
        credentials.store(key, username, password)
    except (credentials.CredentialsError, OSError) as e:
        raise CommandError(f"Error saving credentials: {e}") from None
    data = credentials.load()
    if not (data.get("credsStore") or (data.get("credHelpers") or {}).get(key)):
        sys.stderr.write(f"WARNING! Your password will be stored unencrypted in "
                         f"{credentials.config_path()}.\n"
                         "Configure a credential helper to remove this warning. See\n"
                         "https://docs.docker.com/go/credential-store/\n\n")
    print("Login Succeeded")
    return 0


def _login(c, username: str, password: str, server: str) -> dict:
    resp = c.request("POST", "/auth", json_body={"username": username, "password": password,
                                                 "serveraddress": server})
    import json
    return json.loads(resp.read() or b"{}")


def cmd_logout(g, argv: list[str]) -> int:
    from dockyard.images import credentials

    p = CommandParser("logout", "[SERVER]",
                      "Log out from a registry.\nIf no server is specified, the default is defined "
                      "by the daemon.", nargs=(0, 1), nargs_text="requires at most 1 argument")
    o = p.parse(argv)
    key = credentials.server_key(o.args[0] if o.args else None)
    try:
        found = credentials.erase(key)
    except (credentials.CredentialsError, OSError) as e:
        raise CommandError(f"WARNING: could not erase credentials: {key}: {e}") from None
    if not found:
        print(f"Not logged in to {key}")
        return 0
    print(f"Removing login credentials for {key}")
    return 0


# ------------------------------------------------------------------ search


def cmd_search(g, argv: list[str]) -> int:
    import json

    from dockyard.cli.format import Context, format_rows
    from dockyard.cli.units import ellipsis

    p = CommandParser("search", "[OPTIONS] TERM", "Search Docker Hub for images", nargs=(1, 1),
                      nargs_text="requires 1 argument")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided")
    p.add_argument("--format", help="Pretty-print search using a Go template")
    p.add_argument("--limit", type=int, default=None, help="Max number of search results")
    p.add_flag("--no-trunc", help="Don't truncate output")
    o = p.parse(argv)
    filters: dict[str, dict[str, bool]] = {}
    for f in o.filter:
        k, eq, v = f.partition("=")
        if not eq:
            raise CommandError("bad format of filter (expected name=value)")
        filters.setdefault(k.strip().lower(), {})[v] = True
    params: dict = {"term": o.args[0]}
    if o.limit is not None:
        params["limit"] = o.limit
    if filters:
        params["filters"] = json.dumps(filters)
    term = o.args[0]
    first, sep, _ = term.partition("/")
    domain = first if sep and ("." in first or ":" in first or first == "localhost") else "docker.io"
    results = json.loads(g.client().request("GET", "/images/search", params,
                                            headers=_auth_header(domain)).read() or b"[]")

    class Row(Context):
        FIELDS = ("Name", "Description", "StarCount", "IsOfficial", "IsAutomated")
        HEADER = {"Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS",
                  "IsOfficial": "OFFICIAL", "IsAutomated": "AUTOMATED"}

        def __init__(self, r: dict, trunc: bool):
            self.r, self.trunc = r, trunc

        @property
        def Name(self) -> str:
            return self.r.get("name", "")

        @property
        def Description(self) -> str:
            d = (self.r.get("description") or "").replace("\n", " ").replace("\r", " ")
            return ellipsis(d, 45) if self.trunc else d

        @property
        def StarCount(self) -> str:
            return str(self.r.get("star_count", 0))

        @property
        def IsOfficial(self) -> str:
            return "[OK]" if self.r.get("is_official") else ""

        @property
        def IsAutomated(self) -> str:
            return "[OK]" if self.r.get("is_automated") else ""

    fmt = o.format or "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}"
    rows = [Row(r, not o.no_trunc) for r in results or []]
    sys.stdout.write(format_rows(fmt, rows, Row.HEADER))
    return 0
