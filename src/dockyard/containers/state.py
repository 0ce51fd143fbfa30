"""A container's lifecycle as a transition table, and its persisted record."""

from __future__ import annotations

from dockyard import errors

# status -> statuses it may move to
TRANSITIONS: dict[str, set[str]] = {
    "created": {"running", "removing", "dead"},
    "running": {"paused", "exited", "restarting", "removing"},
    "paused": {"running", "exited", "removing"},
    "restarting": {"running", "exited", "removing"},
    "exited": {"running", "restarting", "removing", "dead"},
    "removing": {"dead", "exited", "created"},
    "dead": {"removing"},
}


class IllegalTransition(errors.Conflict):
    pass


def check_transition(current: str, new: str) -> None:
    if new != current and new not in TRANSITIONS.get(current, set()):
        raise IllegalTransition(f"cannot move a container from {current} to {new}")


def new_state() -> dict:
    return {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
            "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
            "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"}


def set_status(state: dict, status: str) -> None:
    check_transition(state["Status"], status)
    state["Status"] = status
    state["Running"] = status in ("running", "paused", "restarting")
    state["Paused"] = status == "paused"
    state["Restarting"] = status == "restarting"
    state["Dead"] = status == "dead"
