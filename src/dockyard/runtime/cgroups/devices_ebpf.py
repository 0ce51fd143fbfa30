"""Device access control on cgroup v2 (placeholder until the eBPF program lands)."""

from __future__ import annotations

from ._common import CgroupError, is_allow_all


def apply(directory: str, rules: list[dict]) -> None:
    if is_allow_all(rules):
        return
    raise CgroupError("device rules on cgroup v2 need an eBPF device program, which dockyard cannot load yet")
