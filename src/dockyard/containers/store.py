"""Container records in the daemon's SQLite metadata database (one table of JSON rows)."""

from __future__ import annotations

import json
import sqlite3
import threading


class ContainerStore:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("CREATE TABLE IF NOT EXISTS containers ("
                         " id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, record TEXT NOT NULL)")
        self._lock = threading.Lock()

    def put(self, record: dict) -> None:
        with self._lock:
            self._db.execute("INSERT INTO containers(id, name, record) VALUES (?, ?, ?) "
                             "ON CONFLICT(id) DO UPDATE SET name=excluded.name, record=excluded.record",
                             (record["Id"], record["Name"], json.dumps(record)))

    def delete(self, cid: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM containers WHERE id=?", (cid,))

    def all(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM containers").fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        self._db.close()
