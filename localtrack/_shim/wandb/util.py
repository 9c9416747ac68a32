"""W&B's ``wandb.util`` (localtrack's shim): ``generate_id``, which W&B scripts call to make a
run id they can resume by."""

from __future__ import annotations

import secrets
import string

__all__ = ["generate_id"]


def generate_id(length: int = 8) -> str:
    """A random run id of ``length`` characters of [a-z0-9], like W&B's."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))
