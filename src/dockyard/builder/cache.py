"""The build cache: image ID by cache key, in the daemon's metadata database.

A row is only a hint: an entry whose image was removed meanwhile is a miss (and is dropped).
"""

from __future__ import annotations

import time
from typing import Any

_SCHEMA = ("CREATE TABLE IF NOT EXISTS build_cache ("
           "key TEXT PRIMARY KEY, image_id TEXT NOT NULL, created REAL NOT NULL)")


class BuildCache:
    def __init__(self, store: Any, has_image) -> None:
        self.store = store
        self.has_image = has_image
        store.execute(_SCHEMA)

    def get(self, key: str) -> str | None:
        row = self.store.query_one("SELECT image_id FROM build_cache WHERE key = ?", (key,))
        if row is None:
            return None
        if not self.has_image(row["image_id"]):
            self.store.execute("DELETE FROM build_cache WHERE key = ?", (key,))
            return None
        return row["image_id"]

    def put(self, key: str, image_id: str) -> None:
        self.store.execute("INSERT OR REPLACE INTO build_cache (key, image_id, created) "
                           "VALUES (?, ?, ?)", (key, image_id, time.time()))

    def count(self) -> int:
        return self.store.query_one("SELECT COUNT(*) AS n FROM build_cache")["n"]
