"""SQLite metadata store: the only source of names and references.

One database per data root, WAL mode, foreign keys on. The schema is versioned:
``MIGRATIONS`` is an ordered list of SQL scripts; ``schema_version`` records how
many have run and each runs in the same transaction that bumps the version, so
a crash never leaves a half-migrated database. Later issues add their tables by
appending to ``MIGRATIONS`` (never editing an existing entry).

Use ``with store.tx() as db: db.execute(...)`` for writes; nested ``tx()``
calls become savepoints. The connection is shared by the daemon's threads and
serialized by a lock (SQLite would serialize writers anyway).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator

MIGRATIONS: list[str] = [
    # 1: images, references, layers, snapshots, content references
    """
    CREATE TABLE images (
        id              TEXT PRIMARY KEY,          -- sha256:<hex> of the config bytes
        created         TEXT NOT NULL DEFAULT '',  -- config "created" (RFC 3339)
        created_unix    INTEGER NOT NULL DEFAULT 0,
        size            INTEGER NOT NULL DEFAULT 0,
        top_chain       TEXT,                      -- chain ID of the top layer (NULL: no layers)
        parent          TEXT NOT NULL DEFAULT '',  -- local parent image (commit/build)
        labels          TEXT NOT NULL DEFAULT '{}',
        manifest_digest TEXT,                      -- a manifest in the content store, if known
        added           REAL NOT NULL,
        last_tag        REAL
    );
    CREATE INDEX images_parent ON images(parent);
    CREATE TABLE refs (
        name     TEXT PRIMARY KEY,                 -- normalized: docker.io/library/busybox:latest
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        kind     TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
        created  REAL NOT NULL
    );
    CREATE INDEX refs_image ON refs(image_id);
    CREATE TABLE image_blobs (                     -- content an image keeps alive (GC roots)
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        digest   TEXT NOT NULL,
        PRIMARY KEY (image_id, digest)
    );
    CREATE INDEX image_blobs_digest ON image_blobs(digest);
    CREATE TABLE layers (
        chain_id    TEXT PRIMARY KEY,
        diff_id     TEXT NOT NULL,
        parent      TEXT REFERENCES layers(chain_id),
        size        INTEGER NOT NULL,              -- bytes of the layer's own content
        blob_digest TEXT,                          -- a blob holding this layer's tar
        media_type  TEXT,
        created     REAL NOT NULL
    );
    CREATE INDEX layers_parent ON layers(parent);
    CREATE TABLE snapshots (
        sid         INTEGER PRIMARY KEY AUTOINCREMENT,
        snapshotter TEXT NOT NULL,
        key         TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
        parent      TEXT,
        labels      TEXT NOT NULL DEFAULT '{}',
        created     REAL NOT NULL,
        UNIQUE (snapshotter, key)
    );
    CREATE INDEX snapshots_parent ON snapshots(snapshotter, parent);
    """,
    # 2: settings that must not change under existing data (e.g. the snapshotter)
    """
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
]


class Store:
    def __init__(self, path: str | os.PathLike):
        from dockyard import statefiles

        self.path = Path(path)
        statefiles.makedirs(self.path.parent)
        # owner-only before SQLite opens it: it gives -wal and -shm the db's mode
        os.close(statefiles.create(self.path, os.O_RDONLY))
        self._lock = threading.RLock()
        self._depth = 0
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # -- schema ----------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                self._db.execute("INSERT INTO schema_version VALUES (0)")
                version = 0
            else:
                version = row[0]
            if version > len(MIGRATIONS):
                raise RuntimeError(f"metadata schema version {version} is newer than this "
                                   f"dockyard ({len(MIGRATIONS)})")
            for i in range(version, len(MIGRATIONS)):
                with self.tx() as db:
                    for stmt in _split_sql(MIGRATIONS[i]):
                        db.execute(stmt)
                    db.execute("UPDATE schema_version SET version = ?", (i + 1,))

    @property
    def version(self) -> int:
        return self.query_one("SELECT version FROM schema_version")[0]

    # -- transactions ----------------------------------------------------------------
    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE); nested calls are savepoints."""
        with self._lock:
            if self._depth == 0:
                self._db.execute("BEGIN IMMEDIATE")
                name = None
            else:
                name = f"sp{self._depth}"
                self._db.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self._db
            except BaseException:
                self._depth -= 1
                if name is None:
                    self._db.execute("ROLLBACK")
                else:
                    self._db.execute(f"ROLLBACK TO {name}")
                    self._db.execute(f"RELEASE {name}")
                raise
            else:
                self._depth -= 1
                if name is None:
                    self._db.execute("COMMIT")
                else:
                    self._db.execute(f"RELEASE {name}")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (for read-modify-write sequences spanning calls)."""
        with self._lock:
            yield

    def execute(self, sql: str, args: tuple | dict = ()) -> sqlite3.Cursor:
        with self._lock:
            if self._depth:
                return self._db.execute(sql, args)
            with self.tx() as db:
                return db.execute(sql, args)

    def query(self, sql: str, args: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def query_one(self, sql: str, args: tuple | dict = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        row = self.query_one("SELECT value FROM settings WHERE key = ?", (key,))
        return row[0] if row else default

    def set_setting(self, key: str, value: str) -> None:
        self.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                     "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _split_sql(script: str) -> list[str]:
    out, cur = [], []
    for line in script.splitlines():
        line = line.split("--", 1)[0]
        cur.append(line)
        if line.rstrip().endswith(";"):
            stmt = "\n".join(cur).strip()
            if stmt.strip(";").strip():
                out.append(stmt)
            cur = []
    rest = "\n".join(cur).strip()
    if rest:
        out.append(rest)
    return out


def open_store(path: str | os.PathLike) -> Store:
    """Open (creating and migrating) the metadata database at ``path``."""
    return Store(path)
