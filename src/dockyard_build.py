"""Build step (pyproject's tool.setuptools.cmdclass): not part of the installed package.

``dockyard-runc`` (src/bin/dockyard-runc) must start as ``#!<python> -IS``: no
``site`` at each of the many calls containerd and dockerd make. A wheel's
scripts say ``#!python -IS`` and pip, installing it, writes the interpreter's
path over the whole line, flags included. So the line is written here with
the interpreter that runs the build: pip builds with the interpreter it
installs into (the venv's, Debian's /usr/bin/python3), and pip leaves a line
that does not start with ``#!python`` as it is.
"""

import sys

from setuptools.dist import Distribution

_base = Distribution().get_command_class("build_scripts")


class build_scripts(_base):  # noqa: N801 - setuptools' command name
    def run(self):
        if sys.executable and sys.executable.startswith("/") and " " not in sys.executable:
            self.executable = sys.executable
            self.force = True
        super().run()
