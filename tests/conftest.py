"""Shared fixtures. Server discovery lives in ``tests/servers.py``."""

from __future__ import annotations

import sys
from pathlib import Path

# Make ``servers`` importable from every test folder.
sys.path.insert(0, str(Path(__file__).parent))

# Fixtures that start private Redis servers, a Cluster and a Sentinel set.
pytest_plugins = ["redis_procs"]
