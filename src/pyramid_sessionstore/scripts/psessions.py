"""``psessions``: look into and tidy an application's session store from its ``.ini``.

``psessions CONFIG_URI[#name] {stats,gc,show,purge}`` reads the ``session.*``
settings of the app section (``pyramid.paster.get_appsettings``) and builds the
session factory exactly as the app does (``session_factory_from_settings``), so
a setting the app would reject is rejected here too, naming the setting.

It deliberately does not run the application (no ``bootstrap``): an app that
builds its ``SessionFactory`` in code rather than from settings is not seen.
Operator mistakes, Ctrl-C and a reader that stops reading (``| head``) end it
with one line on stderr (or none) and an exit code, never a traceback: 0 done
(or nothing to do); 1 not done (no such session, the store cannot do that or
is unreachable, not confirmed); 2 usage or configuration error; 130
interrupted; 141 the reader of stdout went away (128 + SIGPIPE, as a shell
reports ``git log | head``). Then stdout goes to ``os.devnull``, as the
``signal`` docs' "Note on SIGPIPE" advises, so the last flush cannot fail.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pprint
import re
import sys
import textwrap
import time
from collections.abc import Sequence
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import NoReturn
from typing import cast

from pyramid.paster import get_appsettings
from pyramid.paster import setup_logging

from ..cookies import DEFAULT
from ..cookies import store_key
from ..exceptions import ConfigurationError
from ..exceptions import StoreError
from ..factory import SessionFactory
from ..payload import Header
from ..payload import decode
from ..settings import session_factory_from_settings
from ..stores.base import SealsCookies
from ..stores.base import SupportsExpiry
from ..stores.base import SupportsScan
from ..stores.memory import MemoryStore
from ..users import end_user_sessions

__all__ = ["PSessionsCommand", "main"]

OK, FAILED, USAGE = 0, 1, 2
#: 128 + the signal number, as shells report a command a signal ended.
INTERRUPTED, BROKEN_PIPE = 128 + 2, 128 + 13  # SIGINT, SIGPIPE (POSIX numbers)

_SESSION_KEY = re.compile(r"\A[0-9a-f]{64}\Z")
_INDEX_KEY = re.compile(r"\A[0-9a-f]{40}\Z")
_SESSION_ID = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")


def _dash_safe(args: list[str]) -> list[str]:
    """Let the value after ``show`` start with ``-``, as 1 session id in 64 does.

    argparse would read it as an option; a ``--`` before it says it is a value.
    """
    if "show" in args[1:]:
        at = args.index("show", 1) + 1
        if at < len(args) and args[at].startswith("-") and args[at] not in ("-h", "--help", "--"):
            return [*args[:at], "--", *args[at:]]
    return args


def main(argv: Sequence[str] = sys.argv, quiet: bool = False) -> int:
    """Run ``psessions`` with *argv*; return the exit code (see the module docstring)."""
    if isinstance(sys.stdout, io.TextIOWrapper):  # session data a terminal cannot show
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        try:
            command = PSessionsCommand(argv, quiet)
        except SystemExit as exc:  # --help, or a usage error already printed
            return exc.code if isinstance(exc.code, int) else OK if exc.code is None else USAGE
        code = command.run()
        sys.stdout.flush()  # a closed pipe shows up here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        _drop_stdout()
        return BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"{PSessionsCommand.script_name}: interrupted", file=sys.stderr)
        return INTERRUPTED


def _drop_stdout() -> None:
    """Send what is left of stdout to ``os.devnull``: its reader has gone."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # not a file (tests)
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


class _Exit(Exception):
    """End the command with *code*, after printing *message* on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def _pretty(data: dict[str, Any]) -> str:
    """Return *data* as indented JSON; values JSON cannot show appear as their repr."""
    try:
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):  # keys that are not strings (pickle), cycles
        return pprint.pformat(data)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        root = self.prog.split()[0]
        self.exit(USAGE, f"{root}: {message}; see {self.prog} --help\n")


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description=textwrap.dedent(description),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "config_uri", metavar="CONFIG_URI", help="The configuration file: FILE.ini[#name]."
    )
    parser.add_argument(
        "--prefix",
        default="session.",
        help="The prefix of the session settings (default: %(default)s).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("stats", help="Count sessions, user indexes and records pending gc.")
    commands.add_parser(
        "gc", help="Delete expired records (stores that do not expire them by themselves)."
    )
    show = commands.add_parser("show", help="Print one session: times, user and data.")
    show.add_argument(
        "session",
        metavar="SESSION_COOKIE_OR_ID",
        help="A session cookie value (id.signature), a session id or a store key (64 hex).",
    )
    purge = commands.add_parser("purge", help="End the sessions of a user, or all records.")
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("--user", metavar="USERID", help="End every session of USERID.")
    which.add_argument("--all", action="store_true", help="Delete every record of the store.")
    purge.add_argument("-y", "--yes", action="store_true", help="Do not ask for confirmation.")
    return parser


class PSessionsCommand:
    """Run one ``psessions`` subcommand against the store an ``.ini`` file configures."""

    description = """\
    Show and tidy the sessions of a Pyramid application that uses
    pyramid_sessionstore, with the session.* settings of its .ini file.

    CONFIG_URI is the PasteDeploy config file, as 'inifile#name'; the name
    defaults to 'main'. Example: 'psessions development.ini stats'.

    Exit codes: 0 done (or nothing to do), 1 not done (no such session, the
    store cannot do that or is unreachable), 2 usage or configuration error,
    130 interrupted, 141 the output pipe was closed (| head).
    """
    script_name = "psessions"
    get_appsettings = staticmethod(get_appsettings)  # testing
    setup_logging = staticmethod(setup_logging)  # testing

    parser = _parser(script_name, description)

    def __init__(self, argv: Sequence[str], quiet: bool = False) -> None:
        self.args = self.parser.parse_args(_dash_safe(list(argv[1:])))
        self.quiet = quiet

    def out(self, msg: str) -> None:
        """Print *msg* on stdout unless quiet."""
        if not self.quiet:
            print(msg)

    def err(self, msg: str) -> None:
        """Print *msg* on stderr as one line (errors are never silenced)."""
        print(f"{self.script_name}: {' '.join(msg.split())}", file=sys.stderr)

    def run(self) -> int:
        """Build the session factory from the config file and run the subcommand."""
        factory: SessionFactory | None = None
        try:
            factory = self._factory()
            return int(getattr(self, f"_{self.args.command}")(factory))
        except _Exit as exc:
            self.err(str(exc))
            return exc.code
        except (ConfigurationError, ImportError) as exc:  # a bad setting, a missing driver
            self.err(f"{self.args.config_uri}: {exc}")
            return USAGE
        except StoreError as exc:  # unreachable server, unwritable path: names the store
            self.err(f"{self.args.config_uri}: {exc}")
            return FAILED
        finally:
            if factory is not None:
                factory.store.close()

    def _factory(self) -> SessionFactory:
        uri = self.args.config_uri
        options = {"__script__": self.script_name}
        try:
            self.setup_logging(uri, options)
            settings = self.get_appsettings(uri, options=options)
        except Exception as exc:  # noqa: BLE001 - what the file makes PasteDeploy or logging raise
            raise _Exit(USAGE, f"cannot load {uri}: {str(exc) or type(exc).__name__}") from exc
        factory = session_factory_from_settings(settings, self.args.prefix)
        if isinstance(factory.store, MemoryStore):
            self.err(
                "warning: MemoryStore keeps sessions inside each app process;"
                " this command only sees an empty store of its own"
            )
        return factory

    # -- subcommands ------------------------------------------------------------

    def _stats(self, factory: SessionFactory) -> int:
        store = factory.store
        if factory.client_side:
            raise _Exit(FAILED, f"{store!r} keeps sessions in browser cookies: no records to count")
        if not isinstance(store, SupportsScan):
            raise _Exit(FAILED, f"{store!r} cannot list its records (no keys()/count()): no stats")
        sessions = indexes = others = 0
        for key in store.keys():
            if _SESSION_KEY.match(key):
                sessions += 1
            elif _INDEX_KEY.match(key):
                indexes += 1
            else:
                others += 1
        if isinstance(store, SupportsExpiry):
            expired = f"unknown until gc ({self.script_name} {self.args.config_uri} gc)"
        else:
            expired = "none (the store expires records by itself)"
        self.out(f"store:         {store!r}")
        self.out(f"sessions:      {sessions}")
        self.out(f"user indexes:  {indexes}")
        if others:
            self.out(f"other records: {others}")
        self.out(f"expired:       {expired}")
        return OK

    def _gc(self, factory: SessionFactory) -> int:
        store = factory.store
        if factory.client_side:
            self.out(f"nothing to do: {store!r} keeps sessions in browser cookies")
        elif isinstance(store, SupportsExpiry):
            self.out(f"deleted {store.delete_expired()} expired record(s) from {store!r}")
        else:
            self.out(f"nothing to do: {store!r} expires records by itself")
        return OK

    def _show(self, factory: SessionFactory) -> int:
        value = self.args.session.strip().strip('"')
        store = factory.store
        if isinstance(store, SealsCookies):
            return self._show_sealed(factory, store, value)
        # load() refreshes the expiry: give it the one the app would give, so
        # looking at a session does not change when it ends.
        ttl = factory.timeout
        if _SESSION_KEY.match(value):
            key = value
        elif _SESSION_ID.match(value):
            key = store_key(value)
        elif "." in value:
            verified = factory.signer.verify(value)
            if verified is None:
                raise _Exit(FAILED, "not a session cookie signed with these session secrets")
            key = store_key(verified.session_id)
            if verified.timeout is not DEFAULT:
                ttl = cast("int | None", verified.timeout)
        else:
            raise _Exit(
                USAGE,
                f"show: {value[:80]!r} is neither a session cookie value (id.signature),"
                " a session id (43 characters) nor a store key (64 hex digits)",
            )
        loaded_ttl = factory.cap_ttl(ttl, None)
        record = store.load(key, loaded_ttl)
        if record is None:
            raise _Exit(FAILED, f"no session {key} in {store!r} (unknown or expired)")
        header, data = self._decode(factory, record.data, f"record {key}")
        idle = header.timeout if header.timeout is not None else factory.timeout
        right_ttl = factory.cap_ttl(idle, header.created)
        if right_ttl != loaded_ttl:
            store.touch(key, right_ttl)
        self.out(f"key:      {key}")
        self._print_session(factory, header, data)
        expiry = "never" if right_ttl is None else f"{_when(time.time() + right_ttl)} (if idle)"
        self.out(f"expires:  {expiry}")
        self.out("data:")
        self.out(_pretty(data))
        return OK

    def _show_sealed(self, factory: SessionFactory, store: SealsCookies, value: str) -> int:
        if _SESSION_KEY.match(value) or _SESSION_ID.match(value):
            raise _Exit(
                FAILED,
                f"{store!r} keeps sessions in browser cookies, not on the server:"
                " pass the value of a session cookie to decrypt it",
            )
        unsealed = store.unseal(value)
        if unsealed is None:
            raise _Exit(FAILED, f"not a session cookie that {store!r} can decrypt")
        header, data = self._decode(factory, unsealed[0], "cookie")
        self.out(f"cookie:   sealed by {store!r}{'' if unsealed[1] else ' (older key or format)'}")
        self._print_session(factory, header, data)
        self.out("data:")
        self.out(_pretty(data))
        return OK

    def _decode(
        self, factory: SessionFactory, payload: bytes, what: str
    ) -> tuple[Header, dict[str, Any]]:
        try:
            header, data_bytes = decode(payload)
            data = factory.serializer.loads(data_bytes)
        except Exception as exc:  # noqa: BLE001 - any serializer's failure on stored bytes
            raise _Exit(FAILED, f"{what} is not a readable session: {exc}") from exc
        if type(data) is not dict:
            raise _Exit(FAILED, f"{what} is not a readable session: data is not a dict")
        return header, data

    def _print_session(self, factory: SessionFactory, header: Header, data: dict[str, Any]) -> None:
        self.out(f"created:  {_when(header.created)}")
        self.out(f"written:  {_when(header.written)}")
        self.out(f"userid:   {json.dumps(header.userid, default=repr)}")
        if header.timeout is not None:
            self.out(f"timeout:  {header.timeout} s (its own, from set_timeout)")
        else:
            self.out(f"timeout:  {factory.timeout} s (session.timeout)")
        if factory.max_lifetime is not None:
            ends = header.created + factory.max_lifetime
            past = " (passed: the app ends it on its next load)" if ends <= time.time() else ""
            self.out(f"lifetime: ends {_when(ends)}{past}")

    def _purge(self, factory: SessionFactory) -> int:
        store = factory.store
        if factory.client_side:
            raise _Exit(
                FAILED,
                f"{store!r} keeps sessions in browser cookies; they cannot be ended on the"
                f" server (rotating {self.args.prefix}secret ends them all)",
            )
        if self.args.user is not None:
            ended = end_user_sessions(factory, self.args.user)
            self.out(f"ended {ended} session(s) of user {self.args.user!r}")
            return OK
        if not isinstance(store, SupportsScan):
            raise _Exit(FAILED, f"{store!r} cannot list its records (no keys()): cannot purge all")
        keys = list(store.keys())
        if not keys:
            self.out(f"nothing to purge: {store!r} holds no records")
            return OK
        if not self.args.yes:
            self._confirm(f"Delete all {len(keys)} record(s) of {store!r}? [y/N] ")
        for key in keys:
            store.delete(key)
        self.out(f"deleted {len(keys)} record(s) from {store!r}")
        return OK

    def _confirm(self, question: str) -> None:
        """Ask *question* at the terminal; raise _Exit unless the answer is yes."""
        if not sys.stdin.isatty():
            raise _Exit(
                USAGE, "purge --all: refusing without confirmation (no terminal); use --yes"
            )
        sys.stderr.write(question)
        sys.stderr.flush()
        try:
            answer = sys.stdin.readline()
        except KeyboardInterrupt:
            sys.stderr.write("\n")  # end the question's line before saying so
            raise
        if not answer:
            raise _Exit(USAGE, "purge --all: refusing without confirmation (end of input)")
        if answer.strip().lower() not in {"y", "yes"}:
            raise _Exit(FAILED, "purge --all: not confirmed; nothing deleted")
