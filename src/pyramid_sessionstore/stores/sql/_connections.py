"""How SQLStore's statements reach the database: DBAPI cursors on the engine's connections.

A session load is one short statement by primary key, so SQLAlchemy's
per-execute layers (the ``Connection`` and its transaction bookkeeping, the
result and row objects, the pool's check-out and check-in with their events
and reset) cost more than the statement's own round trip. :class:`Connections`
runs the store's statements on the DBAPI cursor of connections taken from the
engine's pool instead, and, on an engine the store made, keeps the ones it has
used checked out for a short lease on a LIFO list (append and pop are atomic),
so most operations take no pool lock at all. Everything else stays
SQLAlchemy's: the URL, connecting, TLS and authentication, the pool's size
limits, ``pool_recycle`` and ``pool_pre_ping`` and the pool's events (they
apply whenever a lease starts), and the SQL text, compiled once for the
dialect. On psycopg the statements go one layer lower still (``_libpq``):
prepared once per connection and run by libpq, binary both ways.

Forks (a pre-fork server such as ``gunicorn --preload``): a child process must
never use, reset or close the parent's connections, or the two processes
interleave on one socket. On the first operation in a new process the kept
connections are set aside, never touched again, and the engine's pool is
replaced with ``engine.dispose(close=False)``, as SQLAlchemy's pooling
documentation prescribes ("Using Connection Pools with Multiprocessing or
os.fork()").

It is not a pool of its own: every connection it holds is checked out of the
engine's pool and goes back there.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import sqlalchemy as sa

try:
    from ._libpq import Libpq
    from ._libpq import statement_name
except ImportError:  # no psycopg: other drivers take the DBAPI cursor path
    Libpq = None  # type: ignore[assignment,misc]

    def statement_name(sql: str) -> bytes:
        return b""


from ...exceptions import ConflictError
from ...exceptions import StoreError
from ...exceptions import StoreUnavailableError

__all__ = ["LEASE", "Connections", "store_error"]

#: Seconds a connection stays checked out of the pool between uses by the store;
#: past it, the next use returns it and checks one out again (so ``pool_recycle``,
#: ``pool_pre_ping`` and the pool's events still apply, and a burst's extra
#: connections go back to the pool).
LEASE = 5.0

_echo = logging.getLogger("sqlalchemy.engine.Engine")
#: "Rolled back, try again" (MySQL deadlock; SQLSTATE serialization failure,
#: deadlock): the write did not happen, so it is a lost compare-and-set.
_RETRYABLE = {1213, "40001", "40P01"}


def store_error(
    store: Any,
    action: str,
    err: BaseException,
    sql: str | None = None,
    driver_error: type[Exception] = Exception,
) -> StoreError:
    """Return the project's error for *err*, a driver's or SQLAlchemy's, during *action*.

    The cause is always SQLAlchemy's exception (``.orig`` is the driver's), whichever
    path the statement took; parameters are never shown (they hold session data).
    """
    orig: Any = getattr(err, "orig", None) or err
    code = getattr(orig, "sqlstate", None) or (getattr(orig, "args", None) or [None])[0]
    cause = f"{type(orig).__name__}: {orig}".strip()
    if isinstance(err, sa.exc.SQLAlchemyError) and not isinstance(err, sa.exc.DBAPIError):
        cause = str(err)  # pool exhausted, ...
    elif not isinstance(err, sa.exc.SQLAlchemyError):
        wrapped = sa.exc.DBAPIError.instance(sql, None, err, driver_error, hide_parameters=True)
        if isinstance(wrapped, BaseException):
            err = wrapped
    where = store._label
    error: StoreError
    if code in _RETRYABLE and action == "save":
        error = ConflictError(f"{where}: {action} rolled back ({cause})", store)
    else:
        error = StoreUnavailableError(f"{where}: {action} failed: {cause}", store)
    error.__cause__ = err
    return error


def _capacity(pool: Any) -> int | None:
    """Return how many connections *pool* hands out at most, or None for no limit."""
    if not isinstance(pool, sa.pool.QueuePool):
        return None
    overflow = int(getattr(pool, "_max_overflow", 0))
    return None if overflow < 0 else pool.size() + overflow


class Connections:
    """Run statements on connections of *engine*'s pool; keep them for *lease* seconds.

    :param engine: the store's engine. One not in autocommit (given by the
        application) has each connection switched to autocommit while the store
        holds it, and back before it returns to the pool (:attr:`switch`).
    :param lease: seconds a connection stays checked out; ``0`` returns it to the
        pool after every statement (for an engine the application shares, whose own
        code may be waiting for a connection).
    """

    def __init__(self, engine: sa.engine.Engine, lease: float) -> None:
        self.engine, self.lease = engine, lease
        dialect = engine.dialect
        #: Whether connections are switched to autocommit and back.
        self.switch = getattr(dialect, "_on_connect_isolation_level", None) != "AUTOCOMMIT"
        #: The driver's exception base class (DBAPI ``Error``).
        self.errors: type[Exception] = dialect.loaded_dbapi.Error
        #: The driver's ``IntegrityError`` (a taken key).
        self.integrity_error: type[Exception] = dialect.loaded_dbapi.IntegrityError
        self._libpq = dialect.driver == "psycopg"  # prepared statements at the libpq level
        self._echo_on = bool(engine.echo)
        #: Statement name -> (SQL, positional parameter names or None, prepared name, SQL bytes).
        self._sql: dict[str, tuple[str, tuple[str, ...] | None, bytes, bytes]] = {}
        self._idle: list[tuple[Any, Any, float]] = []
        # Connections this object has checked out (in use or kept). Kept ones do
        # not go back to the pool, so a thread must never wait in the pool for
        # one while others sit here: at the pool's capacity it waits for a
        # give-back instead (found with 32 writers of one session on 15 connections).
        self._held = 0
        self._turns = threading.Condition()
        self._limit = _capacity(engine.pool)
        self._wait = float(getattr(engine.pool, "_timeout", 30.0))
        self._parked: list[Any] = []  # a parent process's connections, after a fork
        self._pid, self._fork_lock = os.getpid(), threading.Lock()

    def prepare(self, statements: dict[str, tuple[str, tuple[str, ...] | None]]) -> None:
        """Learn *statements*: name -> (SQL text, positional parameter names or None)."""
        for name, (sql, names) in statements.items():
            self._sql[name] = (sql, names, statement_name(sql), sql.encode())

    def run(self, name: str, params: dict[str, Any], rows: bool) -> Any:
        """Execute statement *name*; return its first row (or None) if *rows*, else its row count.

        :raises: the driver's errors, and SQLAlchemy's for a failed check-out
            (cannot connect, pool exhausted).
        """
        if self._pid != os.getpid():
            self.forget_parent()
        sql, names, prepared, text = self._sql[name]
        args = params if names is None else tuple(params[n] for n in names)
        fairy, cursor, until = self._take()
        if self._echo_on:
            _echo.info("%s %r", sql, args)
        try:
            if self._libpq:
                result = cursor.run(prepared, text, args, rows)
            else:
                cursor.execute(sql, args)
                result = cursor.fetchone() if rows else cursor.rowcount
        except self.errors as err:
            dialect: Any = self.engine.dialect
            if dialect.is_disconnect(err, fairy.dbapi_connection, None):
                fairy.invalidate(err)  # the pool opens a new one at the next check-out
                self._gone()
                raise
            self._give_back(fairy, cursor, until)  # a statement error: the link is in step
            raise
        except BaseException:
            fairy.invalidate()  # interrupted mid-reply: the link may be out of step
            self._gone()
            raise
        self._give_back(fairy, cursor, until)
        return result

    def check_fork(self) -> None:
        """Forget the parent's connections if this is a forked child (call before any use)."""
        if self._pid != os.getpid():
            self.forget_parent()

    def _take(self) -> tuple[Any, Any, float]:
        """Return a kept connection in its lease, or one newly checked out of the pool.

        :raises sqlalchemy.exc.TimeoutError: at the pool's capacity, when no
            connection came back within the pool's timeout.
        """
        deadline = 0.0
        while True:
            try:
                fairy, cursor, until = self._idle.pop()
            except IndexError:
                with self._turns:
                    if self._idle:
                        continue
                    if self._limit is None or self._held < self._limit:
                        self._held += 1
                        break
                    now = time.monotonic()
                    deadline = deadline or now + self._wait
                    if now >= deadline:
                        raise sa.exc.TimeoutError(
                            f"all {self._limit} connections of the pool are in use"
                            f" (waited {self._wait:g} s)"
                        ) from None
                    self._turns.wait(deadline - now)
                continue
            if time.monotonic() <= until:
                return fairy, cursor, until
            self._release(fairy)  # the lease is over: back to the pool, take one again
        try:
            return self._checkout()
        except BaseException:
            self._gone()
            raise

    def _gone(self) -> None:
        """Count one connection back into the pool (returned or invalidated)."""
        with self._turns:
            self._held -= 1
            self._turns.notify()

    def _checkout(self) -> tuple[Any, Any, float]:
        fairy = self.engine.raw_connection()
        try:
            if self.switch:
                dialect: Any = self.engine.dialect
                dialect.set_isolation_level(fairy.dbapi_connection, "AUTOCOMMIT")
            driver: Any = fairy.driver_connection
            if self._libpq:  # the names prepared on it live as long as the connection
                cursor: Any = Libpq(driver, fairy.info.setdefault("pss_prepared", set()))
            else:
                cursor = driver.cursor()
        except BaseException:
            fairy.invalidate()
            raise
        return fairy, cursor, time.monotonic() + self.lease

    def _release(self, fairy: Any) -> None:
        """Return *fairy* to the pool (as the engine configured it)."""
        if self.switch and fairy.dbapi_connection is not None:
            try:
                self.engine.dialect.reset_isolation_level(fairy.dbapi_connection)
            except self.errors:
                fairy.invalidate()  # closed: the pool will not hand it out again
        fairy.close()
        self._gone()

    def _give_back(self, fairy: Any, cursor: Any, until: float) -> None:
        if self.lease <= 0:
            self._release(fairy)
            return
        self._idle.append((fairy, cursor, until))
        if self._limit is not None and self._held >= self._limit:
            with self._turns:  # someone may be waiting for a connection
                self._turns.notify()
        # The least recently used connection sits at the bottom: past its lease,
        # nobody needs it now, so the pool gets it back (and closes an overflow one).
        idle = self._idle
        if len(idle) > 1 and idle[0][2] < time.monotonic():
            try:
                old = idle.pop(0)
            except IndexError:  # another thread took it meanwhile
                return
            self._release(old[0])

    def forget_parent(self) -> None:
        """In a forked child: set the parent's connections aside and start a new pool.

        Once per process, whichever thread comes first; the others wait for it,
        and the new process id is published last, so no thread of the child can
        take a connection from the parent's pool meanwhile.
        """
        with self._fork_lock:
            if self._pid == os.getpid():  # another thread did it
                return
            self._parked.extend(self._idle)  # kept referenced: never reset, closed or collected
            self._idle = []
            self._held, self._turns = 0, threading.Condition()
            self.engine.dispose(close=False)
            self._pid = os.getpid()

    def release_idle(self) -> None:
        """Return the kept connections to the pool (not the parent's, after a fork).

        Before the store closes, and before its operator statements (``count``,
        ``keys``, ``delete_expired``), which take a connection from the pool
        itself: idle kept ones must not leave it waiting there.
        """
        self.check_fork()
        while self._idle:
            try:
                fairy = self._idle.pop()[0]
            except IndexError:
                return
            self._release(fairy)
