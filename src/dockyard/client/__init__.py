"""The Python API client for the Dockyard (and Docker) Engine API."""

from dockyard.client.api import Client as _BaseClient
from dockyard.client.api import DaemonUnreachable, StreamError
from dockyard.client.containers import ContainersMixin, Hijacked


class Client(ContainersMixin, _BaseClient):
    """Images and system (client.api) plus containers and exec (client.containers)."""


__all__ = ["Client", "DaemonUnreachable", "StreamError", "Hijacked"]
