"""W&B's ``wandb.integration.lightning`` (localtrack's shim): see ``.fabric``."""
