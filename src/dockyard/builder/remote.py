"""What a build fetches from the network (blocking: run in a thread).

* :func:`download`: an ``ADD <url>`` source, streamed to a private file beside the
  context (never held in memory), hashed as it arrives, its time from ``Last-Modified``
  (dockerd's rule);
* :func:`fetch_context`: the ``remote`` build parameter: an http(s) URL to a tar (plain or
  compressed) or to a plain Dockerfile, or a git repository (``git clone`` with the
  ``git`` command; ``#ref:subdir`` fragments, as dockerd's ``remote`` and the CLI's
  ``docker build <git url>``); the result is a tar stream the context receiver reads.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import subprocess
import tarfile
import uuid
from urllib.parse import urlsplit

from dockyard import errors
from dockyard.builder.planner import Download, url_name

CHUNK = 1 << 20
TIMEOUT = 60


class FetchError(errors.InvalidParameter):
    pass


def _open(url: str):
    import urllib.error
    import urllib.request
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"unsupported URL scheme: {url}")
    req = urllib.request.Request(url, headers={"User-Agent": "dockyard-builder"})
    try:
        return urllib.request.urlopen(req, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        raise FetchError(f"failed to GET {url} with status {e.code}: {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"failed to GET {url}: {reason}") from None


def _last_modified(resp) -> float:
    lm = resp.headers.get("Last-Modified")
    if not lm:
        return 0.0
    from email.utils import parsedate_to_datetime
    try:
        return parsedate_to_datetime(lm).timestamp()
    except (TypeError, ValueError):
        return 0.0


def _save(resp, path: str, url: str) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with open(fd, "wb", closefd=False) as f:
            while True:
                try:
                    b = resp.read(CHUNK)
                except OSError as e:
                    raise FetchError(f"failed to read {url}: {e}") from None
                if not b:
                    break
                h.update(b)
                size += len(b)
                f.write(b)
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) != size:
            raise FetchError(f"failed to read {url}: got {size} of {length} bytes")
    finally:
        os.close(fd)
    return "sha256:" + h.hexdigest(), size


def download(url: str, directory: str) -> Download:
    """``url`` saved into new file in the private ``directory``."""
    path = os.path.join(directory, "dl-" + uuid.uuid4().hex)
    resp = _open(url)
    try:
        digest, size = _save(resp, path, url)
        mtime = _last_modified(resp)
        final = resp.geturl() or url
    except BaseException:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        raise
    finally:
        resp.close()
    name = url_name(url) or url_name(final)
    return Download(url, path, digest, size, mtime, name)


# -- the remote parameter ------------------------------------------------------------------

def is_git(remote: str) -> bool:
    """dockerd's urlutil.IsGitURL (+ git://): a git URL is cloned, anything else is
    fetched over http(s)."""
    if remote.startswith(("git://", "git@", "github.com/")):
        return True
    base = remote.split("#", 1)[0]
    return remote.startswith(("http://", "https://")) and base.endswith(".git")


def fetch_context(remote: str, directory: str, dockerfile: str = "Dockerfile"):
    """The ``remote`` build parameter as (a readable tar stream, the Dockerfile name in
    it); the stream's file lives in ``directory`` (removed by the caller)."""
    if is_git(remote):
        return _git(remote, directory), dockerfile
    if not remote.startswith(("http://", "https://")):
        raise FetchError(f"remote context must be an http(s) or git URL: {remote}")
    d = download(remote, directory)
    f = open(d.path, "rb")
    head = f.read(512)
    f.seek(0)
    if _looks_like_archive(head, d.path):
        return f, dockerfile
    # a plain Dockerfile: a context of that one file (dockerd names it as asked)
    f.close()
    if d.size > 16 << 20:
        raise FetchError(f"remote {remote}: not an archive and too large for a Dockerfile")
    name = dockerfile or "Dockerfile"
    tar_path = os.path.join(directory, "ctx-" + uuid.uuid4().hex + ".tar")
    with tarfile.open(tar_path, "w") as tf:
        tf.add(d.path, arcname=posixpath.normpath(name).lstrip("/"), recursive=False)
    os.unlink(d.path)
    return open(tar_path, "rb"), name


def _looks_like_archive(head: bytes, path: str) -> bool:
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return True
    if len(head) == 512:
        try:
            tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
            return True
        except tarfile.TarError:
            return False
    return False


def git_tree(remote: str, directory: str) -> Download:
    """``ADD <git url>``: ``url#ref:subdir`` cloned into a new directory in the private
    ``directory`` (without .git); the Download's path is the subdirectory, its digest the
    commit it checked out."""
    dest = os.path.join(directory, "git-" + uuid.uuid4().hex)
    root, commit = _clone(remote, dest)
    return Download(remote, root, "git:" + commit, 0, 0.0, "", tree=True)


def _git(remote: str, directory: str):
    """``git clone`` of ``url#ref:subdir`` (shallow when the ref allows it), then the
    subdirectory as a tar (without .git)."""
    dest = os.path.join(directory, "git-" + uuid.uuid4().hex)
    try:
        root, _ = _clone(remote, dest)
        tar_path = os.path.join(directory, "ctx-" + uuid.uuid4().hex + ".tar")
        r = subprocess.run(["tar", "-C", root, "--numeric-owner", "-cf", tar_path, "."],
                           capture_output=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise FetchError(f"error fetching {remote}: tar: "
                             f"{r.stderr.decode(errors='replace').strip()}")
        return open(tar_path, "rb")
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def _clone(remote: str, dest: str) -> tuple[str, str]:
    """Clone ``url#ref:subdir`` into ``dest`` (removed on failure): (the subdirectory,
    the commit), .git removed."""
    url, _, frag = remote.partition("#")
    ref, _, subdir = frag.partition(":")
    if url.startswith("github.com/"):
        url = "https://" + url
    if url.startswith("-") or ref.startswith("-"):
        raise FetchError(f"invalid git URL: {remote}")
    directory = os.path.dirname(dest)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0",
           "HOME": directory, "GIT_CONFIG_NOSYSTEM": "1", "GIT_PROTOCOL_FROM_USER": "0",
           # never wait for a password or a host key answer nobody can give
           "GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}

    def git(*args: str, cwd: str | None = None) -> bytes:
        try:
            r = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True,
                               timeout=600, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise FetchError("git is not installed: cannot build from a git URL") from None
        except subprocess.TimeoutExpired:
            raise FetchError(f"git {args[0]} of {url} timed out") from None
        if r.returncode != 0:
            msg = r.stderr.decode(errors="replace").strip().splitlines()
            raise FetchError(f"error fetching {remote}: git {args[0]}: "
                             f"{msg[-1] if msg else r.returncode}")
        return r.stdout

    try:
        git("init", "-q", dest)
        git("remote", "add", "origin", "--", url, cwd=dest)
        if ref:
            try:
                git("fetch", "-q", "--depth=1", "origin", "--", ref, cwd=dest)
                git("checkout", "-q", "FETCH_HEAD", cwd=dest)
            except FetchError:
                # a commit id the server will not hand out alone: fetch everything
                git("fetch", "-q", "--tags", "origin",
                    "+refs/heads/*:refs/remotes/origin/*", cwd=dest)
                git("checkout", "-q", ref, cwd=dest)
        else:
            git("fetch", "-q", "--depth=1", "origin", "HEAD", cwd=dest)
            git("checkout", "-q", "FETCH_HEAD", cwd=dest)
        git("submodule", "update", "--init", "--recursive", "--depth=1", cwd=dest)
        commit = git("rev-parse", "HEAD", cwd=dest).decode().strip()
        shutil.rmtree(os.path.join(dest, ".git"), ignore_errors=True)
        root = dest
        if subdir:
            # our own clone, nothing else writes it: each component must be a directory,
            # not a symlink (a link to a host path would make tar read the host)
            import stat
            for comp in [p for p in subdir.split("/") if p not in ("", ".")]:
                root = os.path.join(root, comp)
                if comp == ".." or not stat.S_ISDIR(_lstat_mode(root)):
                    raise FetchError(f"error fetching {remote}: {subdir} is not a directory "
                                     "in the repository")
        return root, commit + (":" + subdir if subdir else "")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _lstat_mode(path: str) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0
