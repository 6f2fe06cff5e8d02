"""Build SQLStores for the tests: one table per namespace, dropped at teardown."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

from pyramid_sessionstore.stores.sql import SQLStore
from servers import MYSQL_URL
from servers import POSTGRES_URL
from servers import closed_port
from servers import ensure_server

#: What a contract module's ``store_factory`` fixture yields.
Factories = Iterator[Callable[[str], SQLStore]]
#: Per engine: the url and its ensure_server arguments.
SERVERS = {"postgresql": (POSTGRES_URL, 5432), "mysql": (MYSQL_URL, 3306)}


def server_url(kind: str) -> str:
    """Return the url of the *kind* server ("postgresql" or "mysql"), started if needed."""
    url, port = SERVERS[kind]
    ensure_server(kind, url, port)
    return url


def closed_url(kind: str) -> str:
    """Return a url of *kind* pointing at a closed loopback port."""
    scheme = SERVERS[kind][0].split("://")[0]
    return f"{scheme}://u:secret@127.0.0.1:{closed_port()}/test"


def tables(url: str, **options: Any) -> Factories:
    """Yield a factory of stores on *url*, one table per name; drop them all after."""
    made: list[SQLStore] = []

    def factory(table: str) -> SQLStore:
        made.append(SQLStore(url=url, table=table, **options))
        return made[-1]

    yield factory
    for store in made:
        store.table.drop(store.engine, checkfirst=True)
        store.engine.dispose()
