"""The metadata store: names, references, layers, snapshots (SQLite)."""

from dockyard.metadata.store import MIGRATIONS, Store, open_store

__all__ = ["MIGRATIONS", "Store", "open_store"]
