"""Content addresses: what names an artifact blob, written ``"<algorithm>:<hex>"``.

Both algorithms are cryptographic: a blob's name is trusted as the bytes it names, by every
version that reuses it and by the stores that sync into one copy, so a collision made on
purpose must be out of reach (a fast non-cryptographic hash such as XXH3 is not). SHA-256
named the blobs of artifact format 1; BLAKE3 names those of format 2 (3-5x faster here, and
it releases the GIL while it hashes). ``blake3`` is imported when it is first needed.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

BLAKE3 = "blake3"
SHA256 = "sha256"
ALGORITHMS = (BLAKE3, SHA256)
_HEX = frozenset("0123456789abcdef")


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


def hasher(algorithm: str) -> Hasher:
    """A new hash of ``algorithm`` (one of ALGORITHMS), on the calling thread only: the copy
    that hashes a blob runs beside the kernel's copy on the other core (benchmarks/RESULTS.md)."""
    if algorithm == BLAKE3:
        import blake3

        return blake3.blake3()
    if algorithm == SHA256:
        return hashlib.sha256()
    raise ValueError(f"unknown content address algorithm {algorithm!r}")


def is_hex(text: object) -> bool:
    """A 256-bit digest in lower-case hex, as both algorithms' names are."""
    return isinstance(text, str) and len(text) == 64 and set(text) <= _HEX


def parse(digest: object) -> tuple[str, str] | None:
    """(algorithm, hex) of ``"<algorithm>:<hex>"``; None for anything else."""
    if not isinstance(digest, str):
        return None
    algorithm, _, hexdigest = digest.partition(":")
    return (algorithm, hexdigest) if algorithm in ALGORITHMS and is_hex(hexdigest) else None
