"""Volume names: Docker's rule, ``[a-zA-Z0-9][a-zA-Z0-9_.-]+`` (no path can come out of one)."""

from __future__ import annotations

import re
import secrets

from dockyard import errors

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def validate(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise errors.InvalidParameter(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            f'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            f'directory, use absolute path')
    return name


def anonymous() -> str:
    """An anonymous volume's name: 64 hex digits, as dockerd's."""
    return secrets.token_hex(32)
