"""Where a container's runtime state lives, and what status it is in.

``<root>/<id>/`` (root defaults to /run/dockyard-runc, a tmpfs, so a reboot
forgets containers that no longer exist) holds:

* ``state.json`` — the OCI state (ociVersion, id, status, pid, bundle,
  annotations) plus our private ``dockyard`` object: the cgroup manager's
  dict, the creation time, the rootfs, the init's start time and the spec the
  container was created with (``exec`` uses its process and seccomp profile);
* ``exec.fifo`` — present while the container is *created*: its init is
  blocked opening it for writing, and ``start`` opens it for reading;
* ``fast`` — what the launcher's sh fast path reads (``fastfile.py``).

Status is derived, never trusted from the file: the recorded pid must still
exist, not be a zombie, and have the recorded start time (pids are reused);
then the FIFO tells created from running and the freezer tells paused.
"""

from __future__ import annotations

from dockyard.runtime import fastos as os
import time

from dockyard.errors import Conflict, NotFound

from . import fastjson

DEFAULT_ROOT = "/run/dockyard-runc"
STATE_FILE = "state.json"
FIFO = "exec.fifo"


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a pid, or None if gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)      # one line, well under a page
    except OSError:
        return None
    finally:
        os.close(fd)
    rest = data[data.rindex(b")") + 2:].split()
    return rest[0].decode(), int(rest[19])


def pid_alive(pid: int, starttime: int | None) -> bool:
    st = proc_stat(pid) if pid > 0 else None
    if st is None or st[0] in ("Z", "X"):
        return False
    return starttime is None or st[1] == starttime


class Store:
    """The state directories under one --root."""

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or DEFAULT_ROOT)

    def dir(self, cid: str) -> str:
        return os.path.join(self.root, cid)

    def fifo(self, cid: str) -> str:
        return os.path.join(self.dir(cid), FIFO)

    def create_dir(self, cid: str) -> str:
        # owner-only, as runc's root (0700): a container's state and config are root's
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        d = self.dir(cid)
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            raise Conflict(f"container with id {cid!r} already exists") from None
        return d

    def exists(self, cid: str) -> bool:
        return os.path.isdir(self.dir(cid))

    def save(self, cid: str, state: dict) -> None:
        path = os.path.join(self.dir(cid), STATE_FILE)
        tmp = path + ".tmp"
        data = memoryview(fastjson.dumps(state).encode())
        # os.open/os.write: a `create`/`run` saves three times, a buffered
        # text file costs three syscalls and its io objects more each time
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def load(self, cid: str) -> dict:
        from .spec import validate_id
        validate_id(cid)
        path = os.path.join(self.dir(cid), STATE_FILE)
        try:
            return fastjson.loads(os.read_bytes(path))
        except FileNotFoundError:
            if self.exists(cid):
                return {"ociVersion": "1.2.0", "id": cid, "status": "creating", "pid": 0,
                        "bundle": "", "annotations": {}, "dockyard": {}}
            raise NotFound(f"container {cid!r} does not exist") from None
        except ValueError:
            raise NotFound(f"container {cid!r}: state file is damaged") from None

    def ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if os.path.isdir(os.path.join(self.root, n))]

    def remove(self, cid: str) -> None:
        """Remove the state directory (flat: state.json, exec.fifo, temp files)."""
        d = self.dir(cid)
        from . import fastfile
        try:
            fastfile.remove(d)      # first: the launcher's sh side no longer acts on it
            names = os.listdir(d)
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(d, name)
            if os.path.isdir(path) and not os.path.islink(path):
                import shutil
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass


def status(store: Store, state: dict) -> str:
    if state.get("status") == "creating":
        return "creating"
    priv = state.get("dockyard") or {}
    if not pid_alive(state.get("pid", 0), priv.get("starttime")):
        return "stopped"
    if os.path.exists(store.fifo(state["id"])):
        return "created"
    cg = priv.get("cgroup")
    if cg:
        try:
            from . import cgroups
            if cgroups.manager_from_dict(cg).is_frozen():
                return "paused"
        except Exception:
            pass
    return "running"


def oci_state(store: Store, state: dict) -> dict:
    """The public OCI state document (what `state` prints and hooks read)."""
    st = status(store, state)
    return state_doc(state, st, state.get("pid", 0) if st != "stopped" else 0)


def state_doc(state: dict, status: str, pid: int) -> dict:
    """The OCI state document of a saved state with the given status and pid
    (``oci_state``; ``fastfile`` renders it for the launcher's sh fast path)."""
    out = {"ociVersion": state.get("ociVersion", "1.2.0"), "id": state["id"], "status": status,
           "pid": pid, "bundle": state.get("bundle", ""),
           "annotations": state.get("annotations") or {}}
    priv = state.get("dockyard") or {}
    out["rootfs"] = priv.get("rootfs", "")
    out["created"] = priv.get("created", "")
    out["owner"] = priv.get("owner") or _user_name(priv.get("owner_uid"))
    return out


def _user_name(uid) -> str:
    if uid is None:
        return ""
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
