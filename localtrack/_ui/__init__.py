"""``localtrack ui``: a local, read-only dashboard over a store (see docs/ui.md).

Importing this package is cheap; pyarrow loads when the first chart is asked for.
"""

from __future__ import annotations

from ._server import UIServer, make_server

__all__ = ["UIServer", "make_server"]
