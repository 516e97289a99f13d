"""Start every SQLite transaction with ``BEGIN IMMEDIATE``.

oslo.db already applies SQLAlchemy's pysqlite recipe for SQLite transaction control
(it turns pysqlite's implicit BEGIN off and emits its own plain ``BEGIN`` from a
"begin" listener, marking ``conn.info["in_transaction"]``; see
oslo_db/sqlalchemy/engines.py). A plain BEGIN is *deferred*: two workers can both
read, then both try to upgrade to a write lock, and one gets "database is locked"
at once (SQLite does not wait on a lock upgrade that would deadlock). Under parallel
load Glance then answered 500 and left images in ``saving``. Taking the write lock at
BEGIN makes transactions queue on SQLite's busy timeout instead.

Only for services served by uWSGI with native threads (Keystone, Glance). Cinder runs
under eventlet in one process: there a blocking BEGIN IMMEDIATE would stall the whole
hub, so it is not used there.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

#: How long a transaction waits for the write lock (pysqlite's default is 5 s).
BUSY_TIMEOUT_MS = 60_000

_installed = False


def _on_connect(dbapi_connection, _connection_record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _on_begin(conn) -> None:
    # Class-level listeners run before the per-engine one oslo.db registers, so
    # setting its marker here makes oslo.db skip its own plain BEGIN.
    if conn.dialect.name == "sqlite" and "in_transaction" not in conn.info:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.info["in_transaction"] = True


def install() -> None:
    """Register the listeners for every engine created from now on (idempotent)."""
    global _installed
    if _installed:
        return
    event.listen(Pool, "connect", _on_connect)
    event.listen(Engine, "begin", _on_begin)
    _installed = True
