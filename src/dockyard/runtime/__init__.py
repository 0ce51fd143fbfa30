"""The OCI runtime `dockyard-runc` (runc's command line); see docs/architecture.md.

Callers inside Dockyard that run the runtime as a command should use
:func:`runtime_argv`: it starts the interpreter without ``site`` (``-S``),
which skips every ``.pth`` file of site-packages and saves a large part of
the runtime's startup time, and puts on ``sys.path`` exactly the
directories the runtime imports from.
"""

from __future__ import annotations


def runtime_argv() -> list[str]:
    """argv prefix that runs `dockyard-runc` fast: append its arguments."""
    import os
    import sys

    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [here]
    try:
        import importlib.util
        spec = importlib.util.find_spec("pyseccomp")
        if spec and spec.origin:
            paths.append(os.path.dirname(spec.origin))
    except (ImportError, ValueError):
        pass
    code = (f"import sys; sys.path[:0] = {paths!r}; "
            "from dockyard.runtime.cli import main; sys.exit(main())")
    return [sys.executable, "-S", "-c", code]
