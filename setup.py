"""Build hook: the wheel records the Git commit it was built from.

Everything else is in pyproject.toml. ``build_py`` writes
``dockyard/_buildstamp.py`` (commit, build time) into the build tree, so an
installed copy reports its commit (``dockyard version``) without the clone.
"""

import os
import subprocess
import time

from setuptools import setup
from setuptools.command.build_py import build_py


def _commit() -> str:
    if "DOCKYARD_GIT_COMMIT" in os.environ:   # scripts/install builds from a copy without .git
        return os.environ["DOCKYARD_GIT_COMMIT"]
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "--short=7", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


class BuildPyWithStamp(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):   # a checkout reads its own .git (dockyard/buildinfo.py)
            return
        target = os.path.join(self.build_lib, "dockyard", "_buildstamp.py")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write("# written by setup.py when this copy was built\n"
                    f"GIT_COMMIT = {_commit()!r}\n"
                    f"BUILD_TIME = {str(time.time())!r}\n")


setup(cmdclass={"build_py": BuildPyWithStamp})
