"""Framework integrations. Each module imports its framework, so ``import localtrack`` never does.

- ``localtrack.integrations.lightning.LocaltrackLogger``: a Lightning ``Logger``, built as
  ``WandbLogger`` is (``pytorch_lightning.LocaltrackLogger`` for the older package name).
- ``localtrack.integrations.transformers.LocaltrackCallback``: a Transformers ``TrainerCallback``.
"""

from __future__ import annotations
