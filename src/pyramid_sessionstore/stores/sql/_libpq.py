"""Run SQLStore's statements on a psycopg connection at the libpq level (``psycopg.pq``).

psycopg's cursor, for a prepared statement, converts the query, dumps the
parameters, sends them with ``PQsendQueryPrepared``, waits in Python and
loads the row; most of a short statement's client time is those Python
layers. :class:`Libpq` does the same work with psycopg's own pieces and
fewer layers: parameters dumped by psycopg's adapters (``Transformer``),
the statement prepared once per connection under a name derived from its
text, run with ``PQexecPrepared`` (which releases the GIL while it waits),
binary in both directions, and the row loaded by psycopg's loaders. Errors
are psycopg's own exceptions, built from the server's result.

It is not a general executor: one connection, used by one thread at a time,
in autocommit, for the statements the store compiled (``$n`` placeholders).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from psycopg import errors
from psycopg import pq
from psycopg.adapt import PyFormat
from psycopg.adapt import Transformer

__all__ = ["Libpq", "statement_name"]

_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)
_BINARY = pq.Format.BINARY
#: Prepared statement vanished (DISCARD ALL, a pooler's reset) or went stale
#: (the table changed): prepare it again, once.
_PREPARE_AGAIN = (b"26000", b"0A000")


def statement_name(sql: str) -> bytes:
    """Return the prepared statement name of *sql* (stores on other tables differ)."""
    return b"pss_" + hashlib.sha1(sql.encode()).hexdigest()[:16].encode()


class Libpq:
    """Prepared statements on one psycopg connection, binary in and out.

    :param conn: a ``psycopg.Connection`` in autocommit.
    :param prepared: names of the statements already prepared on it (kept with
        the connection by the caller, so it outlives this object).
    """

    __slots__ = ("conn", "pgconn", "prepared", "tx")

    def __init__(self, conn: Any, prepared: set[bytes]) -> None:
        self.conn, self.pgconn, self.prepared = conn, conn.pgconn, prepared
        self.tx = Transformer(conn)

    def run(self, name: bytes, sql: bytes, args: Sequence[Any], rows: bool) -> Any:
        """Run statement *sql* (prepared as *name*); return its first row or its row count."""
        tx = self.tx
        params = tx.dump_sequence(args, [PyFormat.BINARY] * len(args))
        if name not in self.prepared:
            self._check(self.pgconn.prepare(name, sql, tx.types))
            self.prepared.add(name)
        result = self.pgconn.exec_prepared(name, params, tx.formats, _BINARY)
        if result.status not in _OK and result.error_field(pq.DiagnosticField.SQLSTATE) in (
            _PREPARE_AGAIN
        ):
            self.prepared.discard(name)
            self.pgconn.exec_(b"DEALLOCATE " + name)  # fails harmlessly when it is gone
            self._check(self.pgconn.prepare(name, sql, tx.types))
            self.prepared.add(name)
            result = self.pgconn.exec_prepared(name, params, tx.formats, _BINARY)
        self._check(result)
        if not rows:
            return result.command_tuples or 0
        if not result.ntuples:
            return None
        tx.set_pgresult(result, set_loaders=True, format=_BINARY)
        return tx.load_row(0, tuple)

    def _check(self, result: Any) -> None:
        if result.status not in _OK:
            raise errors.error_from_result(result, encoding=self.conn.info.encoding)
