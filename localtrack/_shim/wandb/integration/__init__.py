"""W&B's ``wandb.integration`` (localtrack's shim): each module re-exports the names of its
``localtrack.integrations`` module, whatever that module's ``__all__`` holds."""
