"""``psessions``: look into and tidy an application's session store from its ``.ini``.

``psessions CONFIG_URI[#name] {stats,gc,show,list,purge}`` reads the ``session.*``
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
import os
import re
import sys
import textwrap
from collections.abc import Sequence
from typing import Any
from typing import NoReturn

from pyramid.paster import get_appsettings
from pyramid.paster import setup_logging

from ..active import end_one
from ..active import list_sessions
from ..exceptions import ConfigurationError
from ..exceptions import StoreError
from ..factory import SessionFactory
from ..settings import session_factory_from_settings
from ..stores.base import SupportsExpiry
from ..stores.base import SupportsScan
from ..stores.memory import MemoryStore
from ..users import end_user_sessions
from ._common import BROKEN_PIPE
from ._common import FAILED
from ._common import INDEX_KEY
from ._common import INTERRUPTED
from ._common import OK
from ._common import SESSION_KEY
from ._common import USAGE
from ._common import CommandError as _Exit
from ._common import printable
from ._common import when
from ._show import show

__all__ = ["PSessionsCommand", "main"]

#: A session handle, as ``list`` prints it (base64url of 16 bytes).
_HANDLE = re.compile(r"\A[A-Za-z0-9_-]{22}\Z")
#: A user id the command line gives as text that ``bind_user`` may have had as an int.
_INT = re.compile(r"\A(0|-?[1-9][0-9]*)\Z")


def _dash_safe(args: list[str]) -> list[str]:
    """Let the value after ``show`` or ``--session`` start with ``-``, as 1 id or handle in 64 does.

    argparse would read it as an option: a ``--`` before the session says it
    is a value, and a handle (22 characters of base64url) is joined to its
    option (``--session=-AbC…``).
    """
    for at, arg in enumerate(args[:-1]):
        if arg == "--session" and args[at + 1].startswith("-") and _HANDLE.match(args[at + 1]):
            args = [*args[:at], f"--session={args[at + 1]}", *args[at + 2 :]]
            break
    if "show" in args[1:]:
        at = args.index("show", 1) + 1
        if at < len(args) and args[at].startswith("-") and args[at] not in ("-h", "--help", "--"):
            return [*args[:at], "--", *args[at:]]
    return args


def _userids(text: str) -> list[Any]:
    """Return the user ids *text* names: itself, and the int it spells, if it spells one.

    The command line gives text, but ``bind_user`` may have been given an int,
    and the user index tells ``42`` from ``"42"``.
    """
    return [text, int(text)] if _INT.match(text) else [text]


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Return *rows* as lines of columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*map(str.ljust, row, widths), row[-1]]) for row in rows]


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
    except OSError as err:  # the output cannot be written (a full disk, a closed file)
        _drop_stdout()
        print(f"{PSessionsCommand.script_name}: cannot write the output: {err}", file=sys.stderr)
        return FAILED


def _drop_stdout() -> None:
    """Send what is left of stdout to ``os.devnull``: its reader has gone."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # not a file (tests)
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


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
    listing = commands.add_parser(
        "list", help="List the active sessions of a user, most recently active first."
    )
    listing.add_argument("--user", metavar="USERID", required=True, help="The user id.")
    purge = commands.add_parser(
        "purge", help="End the sessions of a user, one session of a user, or all records."
    )
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--user", metavar="USERID", help="End every session of USERID (or, with --session, one)."
    )
    which.add_argument("--all", action="store_true", help="Delete every record of the store.")
    purge.add_argument(
        "--session",
        dest="handle",
        metavar="HANDLE",
        help="End only the session of USERID that 'list --user USERID' names HANDLE.",
    )
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
        if getattr(self.args, "handle", None) is not None and self.args.user is None:
            self.parser.error("purge --session HANDLE needs --user USERID (whose session it is)")
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
            if SESSION_KEY.match(key):
                sessions += 1
            elif INDEX_KEY.match(key):
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
        return show(factory, self.args.session, self.out)

    def _list(self, factory: SessionFactory) -> int:
        if factory.client_side:
            raise _Exit(
                FAILED, f"{factory.store!r} keeps sessions in browser cookies: none to list"
            )
        user = self.args.user
        infos = [i for uid in _userids(user) for i in list_sessions(factory.policy, uid)]
        if not infos:
            self.out(f"no active sessions of user {user!r}")
            return OK
        rows = [("handle", "created", "last active", "ip", "user agent")]
        for info in sorted(infos, key=lambda info: info.last_active, reverse=True):
            ip, agent = printable(info.ip or "-"), printable(info.user_agent or "-")
            rows.append((info.handle, when(info.created), when(info.last_active), ip, agent))
        for line in _table(rows):
            self.out(line)
        return OK

    def _purge(self, factory: SessionFactory) -> int:
        store = factory.store
        user = self.args.user
        if factory.client_side:
            raise _Exit(
                FAILED,
                f"{store!r} keeps sessions in browser cookies; they cannot be ended on the"
                f" server (rotating {self.args.prefix}secret ends them all)",
            )
        if self.args.handle is not None:
            handle = self.args.handle
            if any(end_one(factory.policy, uid, handle) for uid in _userids(user)):
                self.out(f"ended session {handle} of user {user!r}")
                return OK
            raise _Exit(
                FAILED,
                f"no active session {handle!r} of user {user!r} (made up, another user's,"
                " or already ended): nothing ended",
            )
        if user is not None:
            ended = sum(end_user_sessions(factory, uid) for uid in _userids(user))
            self.out(f"ended {ended} session(s) of user {user!r}")
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
