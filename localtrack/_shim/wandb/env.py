"""W&B's ``wandb.env`` (localtrack's shim): the names of W&B's environment variables localtrack
reads (when the ``LOCALTRACK_*`` one is unset), and the setters Transformers' W&B sweep search
(``run_hp_search_wandb``) calls."""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["DIR", "ENTITY", "JOB_TYPE", "MODE", "NAME", "NOTES", "PROJECT", "RESUME", "RUN_GROUP",
           "RUN_ID", "SILENT", "TAGS", "get_entity", "get_project", "set_entity", "set_project"]

DIR, ENTITY, JOB_TYPE, MODE = "WANDB_DIR", "WANDB_ENTITY", "WANDB_JOB_TYPE", "WANDB_MODE"
NAME, NOTES, PROJECT, RESUME = "WANDB_NAME", "WANDB_NOTES", "WANDB_PROJECT", "WANDB_RESUME"
RUN_GROUP, RUN_ID, SILENT, TAGS = "WANDB_RUN_GROUP", "WANDB_RUN_ID", "WANDB_SILENT", "WANDB_TAGS"


def set_project(value: str, env: MutableMapping[str, str] | None = None) -> None:
    (os.environ if env is None else env)[PROJECT] = value


def set_entity(value: str, env: MutableMapping[str, str] | None = None) -> None:
    (os.environ if env is None else env)[ENTITY] = value


def get_project(default: str | None = None, env: MutableMapping[str, str] | None = None) -> str | None:
    return (os.environ if env is None else env).get(PROJECT, default)


def get_entity(default: str | None = None, env: MutableMapping[str, str] | None = None) -> str | None:
    return (os.environ if env is None else env).get(ENTITY, default)
