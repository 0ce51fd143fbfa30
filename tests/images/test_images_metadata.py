import sqlite3
import subprocess
import sys

import pytest

from dockyard.metadata import MIGRATIONS, open_store


def test_schema_and_pragmas(tmp_path):
    s = open_store(tmp_path / "m.db")
    assert s.version == len(MIGRATIONS)
    assert s.query_one("PRAGMA journal_mode")[0] == "wal"
    assert s.query_one("PRAGMA foreign_keys")[0] == 1
    tables = {r[0] for r in s.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"images", "refs", "layers", "snapshots", "image_blobs", "schema_version"} <= tables
    s.close()
    s = open_store(tmp_path / "m.db")     # reopening does not re-run migrations
    assert s.version == len(MIGRATIONS)
    s.close()


def test_transactions_roll_back_and_nest(tmp_path):
    s = open_store(tmp_path / "m.db")
    with pytest.raises(RuntimeError):
        with s.tx() as db:
            db.execute("INSERT INTO images (id, added) VALUES ('sha256:a', 0)")
            raise RuntimeError("boom")
    assert s.query("SELECT * FROM images") == []
    with s.tx() as db:
        db.execute("INSERT INTO images (id, added) VALUES ('sha256:b', 0)")
        with pytest.raises(sqlite3.IntegrityError):
            with s.tx() as db2:   # savepoint
                db2.execute("INSERT INTO refs (name, image_id, kind, created) "
                            "VALUES ('x', 'sha256:missing', 'tag', 0)")
    assert [r[0] for r in s.query("SELECT id FROM images")] == ["sha256:b"]
    assert s.query("SELECT * FROM refs") == []
    s.close()


def test_kill_during_transaction_leaves_consistent_db(tmp_path):
    db = tmp_path / "m.db"
    open_store(db).close()
    code = f"""
import os
from dockyard.metadata import open_store
s = open_store({str(db)!r})
with s.tx() as d:
    d.execute("INSERT INTO images (id, added) VALUES ('sha256:c', 0)")
    d.execute("INSERT INTO refs (name, image_id, kind, created) VALUES ('n', 'sha256:c', 'tag', 0)")
    os.kill(os.getpid(), 9)
"""
    p = subprocess.run([sys.executable, "-c", code])
    assert p.returncode == -9
    s = open_store(db)
    assert s.query("SELECT * FROM images") == []
    assert s.query("SELECT * FROM refs") == []
    assert s.query_one("PRAGMA integrity_check")[0] == "ok"
    s.close()


def test_migration_from_version_1(tmp_path):
    """A database made by schema 1 is upgraded in place, data kept."""
    db = sqlite3.connect(tmp_path / "m.db")
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (1)")
    from dockyard.metadata.store import _split_sql
    for stmt in _split_sql(MIGRATIONS[0]):
        db.execute(stmt)
    db.execute("INSERT INTO images (id, added) VALUES ('sha256:old', 0)")
    db.commit()
    db.close()
    s = open_store(tmp_path / "m.db")
    assert s.version == len(MIGRATIONS) >= 2
    assert s.query_one("SELECT id FROM images")[0] == "sha256:old"
    s.set_setting("k", "v")
    assert s.get_setting("k") == "v" and s.get_setting("missing", "d") == "d"
    s.close()


def test_snapshotter_choice_is_kept(make_service):
    svc = make_service(snapshotter="copy")
    assert svc.snapshotter.name == "copy"
    svc.store.close()
    assert make_service(snapshotter="auto").snapshotter.name == "copy"
    with pytest.raises(Exception, match="uses the copy snapshotter"):
        make_service(snapshotter="overlay")
