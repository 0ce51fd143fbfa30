"""The Python API client for the Dockyard (and Docker) Engine API."""

from dockyard.client.api import Client, DaemonUnreachable, StreamError

__all__ = ["Client", "DaemonUnreachable", "StreamError"]
