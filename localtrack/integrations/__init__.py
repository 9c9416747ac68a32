"""Framework integrations. Each module imports its framework, so ``import localtrack`` never does.

- ``localtrack.integrations.lightning.LocaltrackLogger`` (``WandbLogger``): a Lightning
  ``Logger``, built as ``WandbLogger`` is (``pytorch_lightning.LocaltrackLogger`` for the older
  package name, ``fabric.LocaltrackLogger`` for Lightning Fabric).
- ``localtrack.integrations.transformers.LocaltrackCallback``: a Transformers ``TrainerCallback``.
- ``localtrack.integrations.keras.LocaltrackCallback`` (``WandbMetricsLogger``),
  ``WandbModelCheckpoint`` and ``WandbEvalCallback``: Keras 3 callbacks.
- ``localtrack.integrations.xgboost.LocaltrackCallback`` (``WandbCallback``): an XGBoost
  ``TrainingCallback``.
- ``localtrack.integrations.lightgbm.localtrack_callback`` (``wandb_callback``) and
  ``log_summary``: LightGBM's callback and end-of-training summary.
"""

from __future__ import annotations
