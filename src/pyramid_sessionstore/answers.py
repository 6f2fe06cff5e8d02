"""What a response says when the session it carries could not be saved.

The session is saved in a response callback, after Pyramid's exception views
have run, so an error there would reach the WSGI server as a bare 500. This
module turns it into an answer the application controls: its own exception
view for the error's class when it has one, else ``503 Service Unavailable``
with ``Retry-After`` (RFC 9110 §15.6.4, §10.2.3).
"""

from __future__ import annotations

import logging
import math
import sys
from typing import TYPE_CHECKING
from typing import Any

from pyramid.httpexceptions import HTTPNotFound

if TYPE_CHECKING:
    from pyramid.request import Request

__all__ = ["answer_save_failure"]

log = logging.getLogger(__name__)


def answer_save_failure(request: Request, response: Any, err: Exception) -> None:
    """Make *response* say that the session could not be saved (*err*).

    The view's response already went through Pyramid's exception views, so a
    failure here would otherwise reach the WSGI server as a bare 500. An
    exception view the application registered for the error's class makes
    the response; without one it becomes ``503 Service Unavailable`` with
    ``Retry-After`` (RFC 9110 §15.6.4, §10.2.3).
    """
    log.error("session not saved: %s", err)
    try:
        answer = request.invoke_exception_view(sys.exc_info())
    except HTTPNotFound:
        answer = None  # no exception view for this error
    except Exception:  # noqa: BLE001 - the error view itself failed; fall back
        log.exception("the exception view for %s failed", type(err).__name__)
        answer = None
    retry = getattr(err, "retry_after", 5.0)
    if answer is None:
        response.status = "503 Service Unavailable"
        response.content_type = "text/plain"
        response.text = "The session could not be saved; please try again.\n"
        response.headers["Retry-After"] = str(math.ceil(retry))
        return
    if answer is not response:
        response.status = answer.status
        response.headerlist[:] = answer.headerlist
        response.app_iter = answer.app_iter
