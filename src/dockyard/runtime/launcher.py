"""The `dockyard-runc` command's file: a POSIX sh fast path in front of the Python runtime.

containerd's runc shim runs the runtime as a new process for every call, and a
pod's stop is about ten of them (per container: ``kill ID 9``, ``kill --all
ID 9`` once or twice, ``delete ID``, ``delete --force ID``). A Python
interpreter start costs several times what runc's Go binary does, so the
command is a ``#!/bin/sh`` script (dash on Debian: ~1 ms) that serves the
trivial cases of those calls itself, from the plain file the runtime writes
beside state.json at create (``fastfile.py``: recorded pid and its start time,
cgroup directories, whether there are poststop hooks, the state document's
text), and ``exec``s the Python runtime with its arguments untouched for
everything else and whenever anything is unusual:

* ``kill ID SIGNUM``: signals the recorded pid only when /proc/PID/stat shows
  it alive (not a zombie) with the recorded start time, so a reused pid is
  never hit; any failure goes to Python (which says "container not running");
* ``kill --all ID SIGNUM``: nothing to do when the container's cgroup has no
  process and no sub-cgroup; anything else goes to Python (freeze, signal, thaw);
* ``delete [--force] ID``: a container that does not exist, with ``--force``;
  a stopped one with no poststop hooks and nothing left in its cgroup: its
  cgroup directories (rmdir) and its state directory are removed;
* ``state ID``: the state document, status derived as Python derives it;
* ``start ID`` of a created container without poststart hooks: init's byte is
  read from the exec FIFO (opened read-write to release init, reopened for
  reading and the read-write end closed, so a blocking read ends with the
  byte or, once init is gone, with end-of-file; again while init lives),
  then the FIFO is removed. state.json keeps "created" in
  its ``status`` field, which nothing reads (status is derived: the FIFO is
  gone, init lives: running).

Errors are never produced here: a case that would fail runs the Python
runtime, so messages, exit codes and ``--log`` lines are its. Any flag other
than ``--root``/``--log``/``--log-format`` (``--debug``, ``--systemd-cgroup``)
and any other command go to Python too.

This module imports nothing of the package: the build step
(``src/dockyard_build.py``) loads it by path to write the pip-installed
command (its Python part: ``src/bin/dockyard-runc``, which finds the package
without ``site``), ``dockyard.runtime.launcher_script`` the daemon's launcher
(its Python part: ``runtime_argv``'s). The two differ only in that part.
"""

from __future__ import annotations

# The version of the file fastfile.py writes that this script reads (both sides check it).
FAST_VERSION = "1"
FAST_FILE = "fast"

_BODY = r"""# The fast path: see dockyard/runtime/launcher.py. Returns 1 for "not mine".
dy_fast() {
  dy_root=/run/dockyard-runc dy_cmd= dy_all= dy_force= dy_id= dy_sig=
  while [ $# -gt 0 ]; do
    case $1 in
      --root) [ $# -ge 2 ] || return 1; dy_root=$2; shift ;;
      --root=*) dy_root=${1#*=} ;;
      --log|--log-format) [ $# -ge 2 ] || return 1; shift ;;
      --log=*|--log-format=*) ;;
      -*) return 1 ;;
      *) break ;;
    esac
    shift
  done
  [ $# -ge 1 ] || return 1
  dy_cmd=$1; shift
  while [ $# -gt 0 ]; do
    case $dy_cmd:$1 in
      kill:--all|kill:-a) dy_all=1 ;;
      delete:--force|delete:-f) dy_force=1 ;;
      *:-*) return 1 ;;
      *) break ;;
    esac
    shift
  done
  case $dy_cmd:$# in
    kill:2) dy_sig=$2 ;;
    delete:1|state:1|start:1) ;;
    *) return 1 ;;
  esac
  dy_id=$1
  case $dy_id in ''|.|..|*[!A-Za-z0-9_.+-]*) return 1 ;; esac
  case $dy_sig in *[!0-9]*|0?*) return 1 ;; esac
  case $dy_root in /*) ;; *) return 1 ;; esac
  case $dy_root/ in */./*|*/../*) return 1 ;; esac
  dy_dir=$dy_root/$dy_id
  if [ ! -e "$dy_dir" ]; then
    [ "$dy_cmd" = delete ] && [ -n "$dy_force" ] && exit 0
    return 1
  fi
  # (ours: written by this user's runtime, as Python trusts its state.json)
  [ -d "$dy_dir" ] && [ ! -h "$dy_dir" ] && [ -f "$dy_dir/state.json" ] && [ -f "$dy_dir/@FAST@" ] &&
    [ ! -h "$dy_dir/@FAST@" ] && [ -O "$dy_dir/@FAST@" ] || return 1
  dy_v=
  . "$dy_dir/@FAST@"
  [ "$dy_v" = @VERSION@ ] || return 1
  dy_alive=
  dy_check_alive
  case $dy_cmd in
    kill)
      if [ -n "$dy_all" ]; then
        dy_cgroup_empty || return 1
        exit 0
      fi
      [ -n "$dy_alive" ] && [ -n "$dy_sig" ] && [ "$dy_sig" -le 64 ] || return 1
      kill -s "$dy_sig" "$dy_pid" 2>/dev/null || return 1
      exit 0 ;;
    delete)
      [ -z "$dy_alive" ] && [ "$dy_hooks" = 0 ] || return 1
      dy_cgroup_empty || return 1
      set --
      for dy_d in $dy_cgroups; do
        [ -d "$dy_d" ] && set -- "$@" "$dy_d"
      done
      if [ $# -gt 0 ]; then
        rmdir -- "$@" 2>/dev/null || return 1
      fi
      rm -rf -- "$dy_dir" 2>/dev/null || return 1
      exit 0 ;;
    start)
      [ -n "$dy_alive" ] && [ "$dy_poststart" = 0 ] && [ -p "$dy_dir/exec.fifo" ] || return 1
      dy_release "$dy_dir/exec.fifo" || return 1
      # init has its byte and goes on to exec: from here on, no handing over to
      # Python (which would wait for a byte that will never come)
      rm -f -- "$dy_dir/exec.fifo" || {
        echo "dockyard-runc: start: removing $dy_dir/exec.fifo failed" >&2; exit 1; }
      exit 0 ;;
    state)
      if [ -z "$dy_alive" ]; then
        dy_st=stopped dy_pid=0
      elif [ -e "$dy_dir/exec.fifo" ]; then
        dy_st=created
      else
        dy_st=running
        if [ -n "$dy_freezer" ] && [ -f "$dy_freezer" ]; then
          dy_fz=
          { read -r dy_fz < "$dy_freezer"; } 2>/dev/null
          [ "$dy_fz" = "$dy_frozen" ] && dy_st=paused
        fi
      fi
      printf '%s"status": "%s",\n  "pid": %s,\n%s\n' "$dy_pre" "$dy_st" "$dy_pid" "$dy_post"
      exit 0 ;;
  esac
  return 1
}

# dy_alive=1 when the recorded pid lives (not a zombie) with the recorded start time.
dy_check_alive() {
  case $dy_pid:$dy_start in *[!0-9:]*|:*|*:) return ;; esac
  [ "$dy_pid" -gt 0 ] || return
  dy_s= dy_l=
  { while IFS= read -r dy_l; do dy_s="$dy_s $dy_l"; done < "/proc/$dy_pid/stat"; } 2>/dev/null
  dy_s="$dy_s $dy_l"
  case $dy_s in *") "*) ;; *) return ;; esac
  dy_s=${dy_s##*") "}
  set -- $dy_s
  [ $# -ge 20 ] || return
  case $1 in Z|X) return ;; esac
  shift 19
  [ "$1" = "$dy_start" ] && dy_alive=1
}

# start: read init's byte from the exec FIFO, as Runtime._release does; true once "0"
# was read. False (init died, another start took the byte, anything else) leaves the
# call to Python, which says why.
# fd 3 opens the FIFO read-write (never blocks; init's blocked open for writing
# completes), fd 4 opens it for reading only (no wait: fd 3 is a writer), then fd 3 is
# closed: from there the writers are init alone, so the read on fd 4 blocks only while
# init holds the FIFO open for writing (it writes its byte and closes at once), and an
# init that dies or has not opened it yet gives end-of-file, never a wait for ever.
# fd 4 stays open until the byte is read, so a byte init writes between two reads
# stays in the pipe; after end-of-file the read is tried again while init lives
# and the FIFO is there (init had not reached its open yet: create returns when
# init has closed its sync socket, just before it opens the FIFO).
# Once fd 3 was open init goes on, byte read or not: after that this only gives up
# when init is gone or the FIFO was removed (no one is left waiting then).
dy_release() {
  { command exec 3<>"$1"; } 2>/dev/null || return 1
  { command exec 4<"$1"; } 2>/dev/null || { exec 3<&-; return 1; }
  exec 3<&-
  dy_n=0
  while :; do
    dy_b=
    IFS= read -r dy_b <&4
    case $dy_b in
      0) exec 4<&-; return 0 ;;
      '') ;;
      *) exec 4<&-; return 1 ;;
    esac
    dy_alive=
    dy_check_alive
    [ -n "$dy_alive" ] && [ -p "$1" ] || { exec 4<&-; return 1; }
    dy_n=$((dy_n + 1))
    [ $dy_n -le 3 ] || sleep 0.001 2>/dev/null || sleep 1
  done
}

# True when the container's cgroup holds no process and no sub-cgroup.
dy_cgroup_empty() {
  [ -n "$dy_procs" ] || return 1
  [ -e "$dy_procs" ] || return 0
  [ -f "$dy_procs/cgroup.procs" ] || return 1
  dy_p=
  { read -r dy_p < "$dy_procs/cgroup.procs"; } 2>/dev/null
  [ -z "$dy_p" ] || return 1
  set +f
  for dy_e in "$dy_procs"/*/ "$dy_procs"/.[!.]*/ "$dy_procs"/..?*/; do
    if [ -d "$dy_e" ]; then set -f; return 1; fi
  done
  set -f
  return 0
}

set -f
IFS=' 	
'
PATH=/usr/sbin:/usr/bin:/sbin:/bin
dy_fast "$@"
"""


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def render(python: str, code: str) -> str:
    """The command's text: the sh fast path, then ``exec python -I -S -c code "$@"``.

    The caller's PATH and IFS are kept for Python (hooks run with the caller's
    environment): the script saves and restores them around the fast path."""
    body = _BODY.replace("@FAST@", FAST_FILE).replace("@VERSION@", FAST_VERSION)
    return ("#!/bin/sh\n"
            "# dockyard-runc: Dockyard's OCI runtime (runc's command line). Written by\n"
            "# dockyard/runtime/launcher.py: do not edit.\n"
            "dy_path=${PATH-} dy_path_set=${PATH+1} dy_ifs=${IFS-} dy_ifs_set=${IFS+1}\n"
            + body +
            "if [ -n \"$dy_path_set\" ]; then PATH=$dy_path; else unset PATH; fi\n"
            "if [ -n \"$dy_ifs_set\" ]; then IFS=$dy_ifs; else unset IFS; fi\n"
            f"exec {_quote(python)} -I -S -c {_quote(code)} \"$@\"\n")
