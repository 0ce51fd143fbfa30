"""Names and small helpers shared by the container service's parts."""

from __future__ import annotations

import logging
import re
import time

from dockyard.supervisor import jsonlog

log = logging.getLogger("dockyard.containers")

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ZERO_TIME = "0001-01-01T00:00:00Z"
WARM_NAME = "/ warm "   # store rows of the warm pool: a name no container can have


def _warm_cgroup_attach() -> None:
    """The runtime is about to move a container's init into its cgroups: let the kernel's
    RCU grace period for that pass now, while we prepare the rootfs and the spec."""
    from dockyard.runtime import cgwarm
    cgwarm.warm_for(0.5)


def now() -> str:
    return jsonlog.rfc3339nano(time.time_ns())
