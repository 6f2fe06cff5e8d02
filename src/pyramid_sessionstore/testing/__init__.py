"""Test helpers shipped with the package, so third-party stores can use them.

``from pyramid_sessionstore.testing import StoreContract`` gives the contract
suite every store must pass; see :mod:`pyramid_sessionstore.testing.contract`.
"""

from __future__ import annotations

from .contract import ExpiryContract
from .contract import PeekContract
from .contract import RawContentsContract
from .contract import ScanContract
from .contract import StoreContract
from .contract import UnavailableContract
from .contract import eventually
from .contract import new_key

__all__ = [
    "ExpiryContract",
    "PeekContract",
    "RawContentsContract",
    "ScanContract",
    "StoreContract",
    "UnavailableContract",
    "eventually",
    "new_key",
]
