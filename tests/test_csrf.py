"""Pyramid's own CSRF machinery works unchanged on our sessions."""

from __future__ import annotations

from typing import Any

import pytest
from pyramid.csrf import LegacySessionCSRFStoragePolicy
from pyramid.csrf import SessionCSRFStoragePolicy

from apps import make_app
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore.stores import MemoryStore

SECRET = "tests-secret-" + "Xb7qL2vN" * 6


@pytest.mark.parametrize(
    "policy",
    [None, LegacySessionCSRFStoragePolicy(), SessionCSRFStoragePolicy()],
    ids=["default", "legacy", "session"],
)
def test_require_csrf_accepts_token_in_param_and_header(policy: Any) -> None:
    app = make_app(
        SessionFactory(SECRET, store=MemoryStore()), csrf_policy=policy, require_csrf=True
    )
    if policy is None or isinstance(policy, LegacySessionCSRFStoragePolicy):
        token = app.get("/csrf").text
    else:
        # SessionCSRFStoragePolicy keeps its own token under the same session key.
        app.get("/csrf")
        token = app.get("/get/_csrft_").json["value"]
    assert app.post("/post_form", {"csrf_token": token}).text == "posted"
    assert app.post("/post_form", headers={"X-CSRF-Token": token}).text == "posted"
    app.post("/post_form", {"csrf_token": "wrong"}, status=400)
    app.post("/post_form", status=400)


def test_check_csrf_token_function() -> None:
    from pyramid.csrf import check_csrf_token
    from pyramid.request import Request

    def checked(request: Request) -> Any:
        check_csrf_token(request)
        request.response.text = "checked"
        return request.response

    app = make_app(
        SessionFactory(SECRET, store=MemoryStore()), extra_views=[("c", "/checked", checked)]
    )
    token = app.get("/csrf").text
    assert app.post("/checked", {"csrf_token": token}).text == "checked"
    app.post("/checked", {"csrf_token": "nope"}, status=400)
