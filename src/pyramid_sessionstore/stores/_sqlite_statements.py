"""SQLiteStore's statements: the table, and every query with the row checks it needs.

SQLite keeps any type in any column, so each statement that reads or keeps a
row also checks the row's types (``TYPED``): a row that was not written by the
store is a miss, never data. ``{t}`` is the quoted table name, ``{i}`` its
index's. Connections, versions and expiry policy stay in :mod:`.sqlite`.
"""

from __future__ import annotations

__all__ = ["OURS", "STATEMENTS", "TYPED"]

# SQLite keeps any type in any column: a row of other types is not ours (text never expires).
TYPED = "typeof(data) = 'blob' AND typeof(version) = 'integer'"
TYPED += " AND typeof(expires_at) IN ('integer', 'real', 'null')"
OURS = f"{TYPED} AND (expires_at IS NULL OR expires_at > :now)"
STATEMENTS: dict[str, str] = {
    "schema": "CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL,"
    " version INTEGER NOT NULL, expires_at REAL, created REAL NOT NULL)",
    "index": "CREATE INDEX IF NOT EXISTS {i} ON {t} (expires_at)",
    "touch": f"UPDATE {{t}} SET expires_at = :exp WHERE key = :key AND {OURS}",
    "select": f"SELECT data, version, expires_at, {TYPED} FROM {{t}} WHERE key = :key",
    "create": "INSERT OR IGNORE INTO {t} VALUES (:key, :data, :ver, :exp, :now)",
    "revive": "UPDATE {t} SET data = :data, version = :ver, expires_at = :exp, created = :now"
    f" WHERE key = :key AND NOT ({OURS})",  # create over an expired or malformed row
    "update": "UPDATE {t} SET data = :data, version = :ver, expires_at = :exp"
    f" WHERE key = :key AND version = :old AND {OURS}",
    "delete": "DELETE FROM {t} WHERE key = :key",
    # Expired, or an expiry that is text or a blob (they sort after every number): by the index.
    "gc": "DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t}"
    " WHERE expires_at <= :now OR expires_at >= '' LIMIT :limit)",
    "keys": "SELECT key FROM {t} WHERE key > :after AND typeof(key) = 'text'"
    f" AND {OURS} ORDER BY key LIMIT :limit",
    "count": f"SELECT count(*) FROM {{t}} WHERE typeof(key) = 'text' AND {OURS}",
}
