"""The Pyramid app and store the ``psessions`` tests configure from an ``.ini`` file.

Importable by the test process (``tests/`` is on ``sys.path``) and by the
``psessions`` subprocesses (the tests put ``tests/`` on their ``PYTHONPATH``).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from typing import ClassVar

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.router import Router

from pyramid_sessionstore.stores.base import Converter
from pyramid_sessionstore.stores.base import Record
from pyramid_sessionstore.stores.memory import MemoryStore


def set_value(request: Request) -> dict[str, Any]:
    """Store every query parameter in the session (``n`` as an int, ``blob`` as bytes)."""
    converters = {"n": int, "blob": str.encode, "when": datetime.fromisoformat}
    for name, value in request.params.items():
        request.session[name] = converters.get(name, str)(value)
    return {"id": request.session.get("id")}


def login(request: Request) -> dict[str, Any]:
    """Bind the session to ``?user=`` (an int with ``&int=1``); ``?timeout=`` sets its own."""
    user = request.params["user"]
    request.session.bind_user(int(user) if "int" in request.params else user)
    request.session["who"] = request.params["user"]
    if "timeout" in request.params:
        request.session.set_timeout(int(request.params["timeout"]))
    return {}


def read(request: Request) -> dict[str, Any]:
    """Return the session's data (values JSON cannot hold as their repr)."""
    return {k: v if isinstance(v, (str, int)) else repr(v) for k, v in request.session.items()}


def main(global_config: dict[str, str], **settings: str) -> Router:
    """Return the app, with the session factory built from the ``session.*`` settings."""
    config = Configurator(settings=settings)
    config.include("pyramid_sessionstore")
    for name, view in (("set", set_value), ("login", login), ("read", read)):
        config.add_route(name, f"/{name}")
        config.add_view(view, route_name=name, renderer="json")
    return config.make_wsgi_app()


class NoScanStore:
    """A store that cannot list its records (no ``keys``/``count``), over a MemoryStore."""

    OPTIONS: ClassVar[dict[str, Converter]] = {}

    def __init__(self) -> None:
        self._inner = MemoryStore()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def load(self, key: str, ttl: int | None) -> Record | None:
        return self._inner.load(key, ttl)

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        return self._inner.save(key, data, ttl, expected_version)

    def touch(self, key: str, ttl: int | None) -> bool:
        return self._inner.touch(key, ttl)

    def delete(self, key: str) -> None:
        self._inner.delete(key)

    def close(self) -> None:
        self._inner.close()


#: The store :func:`shared_store` returns; the in-process tests replace it.
SHARED = MemoryStore()


def shared_store() -> MemoryStore:
    """Return :data:`SHARED`, so an app and an in-process ``psessions`` see one store."""
    return SHARED


class SealingStore(NoScanStore):
    """A cookie store stand-in: the session rides in the cookie, base64 (not encrypted)."""

    def seal(self, payload: bytes) -> str:
        return "sealed-" + base64.urlsafe_b64encode(payload).decode("ascii")

    def unseal(self, value: str) -> tuple[bytes, bool] | None:
        if not value.startswith("sealed-"):
            return None
        return base64.urlsafe_b64decode(value[len("sealed-") :]), True
