"""The OCI runtime `dockyard-runc` (runc's command line); see docs/architecture.md.

Callers inside Dockyard that run the runtime as a command should use
:func:`runtime_argv`: it starts the interpreter without ``site`` (``-S``),
which skips every ``.pth`` file of site-packages and saves a large part of
the runtime's startup time, and puts on ``sys.path`` exactly the
directories the runtime imports from.
"""

from __future__ import annotations


def runtime_argv(module: str = "dockyard.runtime.cli") -> list[str]:
    """argv prefix that runs `dockyard-runc` fast: append its arguments.

    (``module`` names another entry point with a ``run_and_exit()``, e.g. the
    fork server.)

    ``-S`` skips ``site`` (every ``.pth`` file of site-packages); ``-I``
    (isolated) ignores the PYTHON* variables (PYTHONDONTWRITEBYTECODE would
    recompile every module on every call) and, unlike ``-E`` alone, keeps
    the working directory off ``sys.path``: runtimes are run from the bundle
    directory, and a ``_json.py`` there must not be imported by a root
    process. Our directories go *after* the standard library, so the
    standard modules are found on the first path entry; and the process ends
    with ``os._exit`` after flushing, skipping the interpreter's teardown.
    """
    import os

    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [here]
    try:
        import importlib.util
        spec = importlib.util.find_spec("pyseccomp")
        if spec and spec.origin:
            paths.append(os.path.dirname(spec.origin))
    except (ImportError, ValueError):
        pass
    code = (f"import sys; sys.path += {paths!r}; "
            f"from {module} import run_and_exit; run_and_exit()")
    return [_interpreter(), "-I", "-S", "-c", code]


def launcher_script(module: str = "dockyard.runtime.cli") -> str:
    """The text of an executable file that runs :func:`runtime_argv`'s command
    with the arguments it is given: what dockerd, containerd or our own daemon
    can be pointed at as the runtime's path.

    A ``#!/bin/sh`` script (``launcher.render``): the trivial cases of
    ``kill``/``delete``/``state`` that containerd's shim runs at every stop are
    served by the shell from the file the runtime writes at create
    (``fastfile.py``); everything else ``exec``s the command (~1 ms of dash in
    front of the interpreter). ``module`` other than the runtime's command line
    (e.g. the fork server) gets a plain ``exec`` of the command.
    """
    import shlex

    argv = runtime_argv(module)
    if module == "dockyard.runtime.cli":
        from .launcher import render
        return render(argv[0], argv[-1])
    return "#!/bin/sh\nexec " + shlex.join(argv) + ' "$@"\n'


def _interpreter() -> str:
    """This interpreter, or the system's build of the same Python version.

    Debian's /usr/bin/python3.X is linked statically and built with PGO/LTO;
    a Python with a shared libpython (pyenv's default) starts and runs the
    runtime ~15% slower. DOCKYARD_RUNTIME_PYTHON names another one.
    """
    import os
    import sys

    forced = os.environ.get("DOCKYARD_RUNTIME_PYTHON")
    if forced:
        return forced
    v = sys.version_info
    system = f"/usr/bin/python{v.major}.{v.minor}"
    if os.path.realpath(sys.executable) != os.path.realpath(system) and os.access(system, os.X_OK):
        import sysconfig
        if sysconfig.get_config_var("Py_ENABLE_SHARED"):
            return system
    return sys.executable
