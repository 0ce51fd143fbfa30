"""Build step (pyproject's tool.setuptools.cmdclass): not part of the installed package.

The installed ``dockyard-runc`` is what containerd and dockerd run for every
container operation, so it must start fast: it is written here as
``dockyard/runtime/launcher.py`` renders it, a ``#!/bin/sh`` script that
serves the trivial kill/delete/state calls itself and otherwise ``exec``s
``<python> -I -S -c <code>`` (no ``site``, no PYTHON* variables, not the
working directory on sys.path), where ``<python>`` is the interpreter that runs
the build (pip builds with the interpreter it installs into: the venv's,
Debian's /usr/bin/python3) and ``<code>`` is ``src/bin/dockyard-runc`` minus
its ``#!`` line (it finds the package in that interpreter's environment).

Without this step (or with an interpreter path a ``#!`` line cannot hold),
``src/bin/dockyard-runc`` itself is installed: a ``#!python -IS`` script that
pip points at its interpreter, the Python runtime without the sh fast path.
"""

import os
import sys

from setuptools.dist import Distribution

_base = Distribution().get_command_class("build_scripts")
_HERE = os.path.dirname(os.path.abspath(__file__))


def _render(python: str, code: str) -> str:
    # by path: importing the `dockyard` package is not this build's business
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "_dockyard_launcher", os.path.join(_HERE, "dockyard", "runtime", "launcher.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.render(python, code)


class build_scripts(_base):  # noqa: N801 - setuptools' command name
    def run(self):
        exe = sys.executable
        ok = bool(exe) and exe.startswith("/") and " " not in exe
        if ok:
            self.executable = exe
            self.force = True
        super().run()
        if not ok:
            return
        for script in self.scripts or ():
            if os.path.basename(script) != "dockyard-runc":
                continue
            with open(script) as f:
                text = f.read()
            code = text.split("\n", 1)[1]
            out = os.path.join(self.build_dir, "dockyard-runc")
            with open(out, "w") as f:
                f.write(_render(exe, code))
            os.chmod(out, 0o755)
