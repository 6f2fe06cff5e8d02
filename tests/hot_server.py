"""Serve the test app on one loopback port, for tests that need several worker processes.

Usage: ``python hot_server.py PORT SETTINGS_JSON``. The session factory is
built from the ``session.*`` settings in SETTINGS_JSON, as an application's
``.ini`` would build it. The server stops by itself after ``--lifetime``
seconds (default 300) or when its parent closes its standard input.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from waitress import serve  # noqa: E402

from apps import make_wsgi_app  # noqa: E402
from pyramid_sessionstore import session_factory_from_settings  # noqa: E402


def _stop_when_orphaned(lifetime: float) -> None:
    def watch() -> None:
        sys.stdin.read()  # returns when the parent closes the pipe (or dies)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    threading.Timer(lifetime, lambda: os._exit(0)).start()


def main() -> None:
    port, settings = int(sys.argv[1]), json.loads(sys.argv[2])
    lifetime = float(sys.argv[3]) if len(sys.argv) > 3 else 300.0
    _stop_when_orphaned(lifetime)
    app = make_wsgi_app(session_factory_from_settings(settings))
    serve(app, host="127.0.0.1", port=port, threads=16, _quiet=True)


if __name__ == "__main__":
    main()
