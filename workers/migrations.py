"""Versioned SQLite schemas: a store lists its migrations, ``PRAGMA user_version`` says how many ran.

Each store (the job store, the conversation store) keeps a tuple of migration functions, oldest
first; a database at version N has run the first N. Opening one runs the rest in one write
transaction, so two Hearth processes opening the same file at once migrate it exactly once, and
a migration that fails leaves the file as it was. A database from a newer Hearth (a version past
the last migration) is opened as it is: the newer columns are simply not read.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

Migration = Callable[[sqlite3.Connection], None]


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration], what: str) -> int:
    """Run the migrations ``db`` has not run yet; returns its schema version afterwards.

    ``db`` must be in autocommit mode (``isolation_level=None``); a migration runs single
    statements (never ``executescript``, which would commit halfway).
    """
    latest = len(migrations)
    current = db.execute("PRAGMA user_version").fetchone()[0]
    if current >= latest:  # the usual case: no write lock taken at all
        if current > latest:
            log.warning("%s has schema version %d, newer than this Hearth's %d", what, current, latest)
        return current
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]  # again: another process may have run them
        for number in range(version, latest):
            migrations[number](db)
            log.info("%s: migrated to schema version %d", what, number + 1)
        if version < latest:
            db.execute(f"PRAGMA user_version = {latest:d}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return max(version, latest)


def columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
