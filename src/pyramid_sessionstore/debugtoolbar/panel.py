"""The debug-toolbar panel: what one request did with its session.

A :class:`SessionStorePanel` is made by pyramid_debugtoolbar for every
request it watches (its ``DebugPanel`` API: ``wrap_handler``,
``process_response``, then ``render_content`` when the toolbar page is
opened). The session is saved by a response callback, which Pyramid runs
after every tween, the toolbar's included; so the panel reads the result
from a finished callback, the last thing Pyramid runs for a request.

What it needs from the request, and where it comes from:

- the data before the view: the session's serialized data as loaded,
  taken when the view first reads ``request.session`` (the panel wraps
  that property for the request; the session keeps those bytes only until
  it is saved);
- touched or not: ``request.__dict__["_sessionstore_session"]``, set by the
  factory;
- the decision: ``request.__dict__["_sessionstore_outcome"]`` (the
  ``OUTCOME_*`` strings of :mod:`pyramid_sessionstore.lifecycle`, or
  "not saved: ..."), the number of compare-and-set attempts, and the
  response's ``Set-Cookie`` headers;
- the store's round trips: :mod:`.timing`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from typing import Any

from pyramid.interfaces import ISessionFactory
from pyramid_debugtoolbar.panels import DebugPanel

from .. import lifecycle
from ..factory import SessionFactory
from ..session import Session
from . import report
from . import timing

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyramid.request import Request

__all__ = ["SessionStorePanel"]

log = logging.getLogger(__name__)

#: Short forms of the outcomes, for the toolbar's tab.
SHORT_OUTCOMES = {
    lifecycle.OUTCOME_NOTHING: "not stored",
    lifecycle.OUTCOME_MOVED: "new id",
    lifecycle.OUTCOME_ENDED_ELSEWHERE: "ended elsewhere",
    lifecycle.OUTCOME_READ_ONLY: "store down",
}


class SessionStorePanel(DebugPanel):  # type: ignore[misc]  # the toolbar is untyped
    """Show the store, the session's data before and after the view, and what was saved."""

    name = "sessionstore"
    template = "pyramid_sessionstore.debugtoolbar:templates/sessionstore.dbtmako"
    title = "Session (pyramid_sessionstore)"
    nav_title = "Session store"
    has_content = True
    #: Always on: it costs a few microseconds per request, and a session
    #: decision cannot be looked at after the fact.
    user_activate = False

    def __init__(self, request: Request) -> None:
        self.data: dict[str, Any] = {
            "touched": False,
            "factory": None,
            "factory_type": None,
            "failed": None,
        }
        self._request: Request | None = request
        self._response: Any = None
        self._before: bytes | None = None
        self._loaded = False
        self._captured = False
        # Started here, before any panel's wrap_handler: the toolbar's own
        # session panel may read the session while it wraps the handler.
        self._recorder, self._token = timing.recording()
        request.add_finished_callback(self._finished)

    @property
    def nav_subtitle(self) -> str:
        """Return the outcome, in a word or two, for the toolbar's tab."""
        outcome: str | None = self.data.get("outcome")
        if not self.data["touched"]:
            return "not touched"
        if outcome is None:
            return ""
        if outcome.startswith("not saved"):
            return "not saved"
        if self.data.get("attempts", 0) > 1:
            return "merged"
        return SHORT_OUTCOMES.get(outcome, outcome)

    # -- the request's lifecycle -------------------------------------------------

    def wrap_handler(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """Note the session's data when the view first reads it; mark where the view ends."""
        request = self._request
        assert request is not None
        if "_sessionstore_session" in request.__dict__:
            self._capture(request)  # read earlier, by another panel or a tween
        else:
            self._watch(request)
        recorder = self._recorder

        def handle(request: Request) -> Any:
            try:
                return handler(request)
            finally:
                recorder.phase = "response"

        return handle

    def _watch(self, request: Request) -> None:
        original = getattr(type(request), "session", None)
        if original is None:
            return
        capture = self._capture

        def session(request: Request) -> Any:
            value = original.__get__(request, type(request))
            capture(request)
            return value

        request.set_property(session, name="session", reify=True)

    def _capture(self, request: Request) -> None:
        session = request.__dict__.get("_sessionstore_session")
        if isinstance(session, Session) and not self._captured:
            self._captured = True
            self._before = session._loaded_bytes
            self._loaded = not session.new

    def process_response(self, response: Any) -> None:
        """Keep the response: the session's cookie is set on it after the toolbar returns."""
        self._response = response

    def _finished(self, request: Request) -> None:
        try:
            self.data.update(self._report(request))
        except Exception as err:  # noqa: BLE001 - a broken panel must not break the page
            log.exception("the session panel could not read this request")
            self.data["failed"] = f"{type(err).__name__}: {err}"
        finally:
            timing.stop(self._token)
            self._request = self._response = None

    # -- what the template shows ---------------------------------------------------

    def _report(self, request: Request) -> dict[str, Any]:
        factory = request.registry.queryUtility(ISessionFactory)
        data: dict[str, Any] = {"factory_type": type(factory).__name__ if factory else None}
        if not isinstance(factory, SessionFactory):
            return data
        store = factory.policy.store
        data.update(
            factory=repr(factory),
            store=repr(store),
            store_type=type(getattr(store, "inner", store)).__name__,
            timed=isinstance(store, timing.TimedStore),
            client_side=factory.client_side,
            options=report.factory_options(factory),
            settings=report.masked_settings(request.registry.settings or {}),
            store_calls=report.store_summary(self._recorder),
        )
        session = request.__dict__.get("_sessionstore_session")
        if not isinstance(session, Session):
            return data
        outcome: str | None = request.__dict__.get("_sessionstore_outcome")
        headers = self._response.headerlist if self._response is not None else []
        set_cookies = report.cookie_headers(headers, factory.cookie_name)
        before = report.decoded(factory.serializer, self._before)
        cookie, why = report.cookie_decision(factory, session, outcome, set_cookies)
        data.update(
            touched=True,
            loaded=self._loaded,
            new=not self._loaded,
            before_known=self._before is not None or not self._loaded,
            rows=report.data_rows(before, session._data),
            outcome=outcome,
            verdict=report.verdict(outcome, session._attempts),
            attempts=session._attempts,
            regenerated=session._moved_from is not None,
            invalidated=len(session._ended),
            cookie=cookie,
            cookie_why=why,
            set_cookies=set_cookies,
            userid=session.userid,
            user_changed=session._user_changed,
            own_timeout=session.timeout,
        )
        return data
