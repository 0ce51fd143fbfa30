"""API versions: what we announce and which path prefixes we accept (sans-IO)."""

from __future__ import annotations

from dockyard.errors import InvalidParameter

# The Docker CLI 28.x uses min(1.50, announced); docker-py 7.x with version="auto"
# uses the announced one. 1.47 is Docker 27.x's API level.
API_VERSION = "1.47"
MIN_API_VERSION = "1.24"


def parse(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        raise InvalidParameter(f"invalid API version: {version!r}") from None


def check(version: str) -> tuple[int, int]:
    """Validate a version taken from a ``/v1.NN/`` prefix; Docker's wording."""
    v = parse(version)
    if v > parse(API_VERSION):
        raise InvalidParameter(
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )
    if v < parse(MIN_API_VERSION):
        raise InvalidParameter(
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )
    return v
