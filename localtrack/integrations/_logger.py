"""LocaltrackLogger's body, shared by the ``lightning`` and ``pytorch_lightning`` Loggers.

Lightning calls its loggers on every rank; only rank zero opens the run and writes. The run
opens on first use with ``resume="allow"`` (as WandbLogger's does), so a job started again
with the same id continues its run. When Lightning restored a checkpoint, the first step it
logs is behind the run's: the rows after that checkpoint are rewound (archived, as
``init(resume_from=)`` does), so the history is that of the model that training kept.
"""

from __future__ import annotations

import logging
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from lightning_utilities.core.rank_zero import rank_zero_only

import localtrack

from ._common import RunHandle, plain

log = logging.getLogger("localtrack")

# WandbLogger's arguments that have no local meaning: accepted, logged at debug level.
IGNORED = ("offline", "anonymous", "add_file_policy")


def rank_zero() -> bool:
    """Whether this process writes: Lightning sets the rank when its strategy starts."""
    return getattr(rank_zero_only, "rank", 0) == 0


class LoggerBody:
    """What LocaltrackLogger does; each package's module adds its ``Logger`` base and
    ``experiment`` (rank zero's run, Lightning's stand-in elsewhere)."""

    # Whether a row logged without a step joins the step the run is at (the Trainer logs its
    # own rows at its step) or is a step of its own (Fabric's loggers count one per call).
    JOINS = True

    def __init__(self, name: str | None = None, save_dir: str | None = None,
                 version: str | None = None, offline: bool = False, dir: str | None = None,
                 id: str | None = None, anonymous: bool | None = None, project: str | None = None,
                 log_model: bool | str = False, experiment: localtrack.Run | None = None,
                 prefix: str = "", checkpoint_name: str | None = None,
                 add_file_policy: str = "mutable", **kwargs: Any) -> None:
        super().__init__()
        given = {"offline": offline, "anonymous": anonymous, "add_file_policy": add_file_policy}
        ignored = [k for k in IGNORED if given[k] not in (None, False, "mutable")]
        if ignored:
            log.debug("LocaltrackLogger ignores %s: runs stay on local disk", ", ".join(ignored))
        # The rest goes to localtrack.init(), which checks it; save_dir/dir name the store.
        # As WandbLogger's, a given id resumes that run if it exists (localtrack's "allow"
        # needs an id: with none, a new run starts).
        init_args = {"resume": "allow" if version or id else None, **kwargs, "name": name,
                     "project": project, "dir": save_dir or dir, "id": version or id}
        self._prefix = prefix
        self._handle = RunHandle(init_args, experiment)
        self._log_model = log_model
        self._checkpoint_name = checkpoint_name
        self._checkpoint_callback: Any = None
        self._logged_checkpoints: dict[str, float] = {}  # path -> mtime, as WandbLogger keeps

    @property
    def name(self) -> str | None:
        """The project (as WandbLogger's): with the version, it names the checkpoint folder."""
        return self._handle.open().project if rank_zero() else self._handle.init_args["project"]

    @property
    def version(self) -> str | None:
        """The run id."""
        return self._handle.open().id if rank_zero() else self._handle.init_args["id"]

    @property
    def save_dir(self) -> str | None:
        """None: checkpoints go to the Trainer's ``default_root_dir/<project>/<run id>``, out of
        the store (a store holds only runs)."""
        return None

    def _experiment(self) -> localtrack.Run:  # the subclass's experiment, on rank zero only
        return self._handle.open()

    def log_hyperparams(self, params: Mapping[str, Any] | Namespace, *args: Any,
                        **kwargs: Any) -> None:
        if rank_zero():
            values = vars(params) if isinstance(params, Namespace) else dict(params)
            self._handle.writable().config.update(plain(values), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not rank_zero():
            return
        row = {f"{self._prefix}-{k}" if self._prefix else k: v for k, v in metrics.items()}
        if step is None and self.JOINS:  # the user's call (log_image, ...): at the step
            self._handle.log_here(row)  # Lightning is at
        elif step is None:
            self._handle.writable().log(row)
        else:  # rewinds the run if Lightning restored a checkpoint behind it
            self._handle.log_at(row, step)

    def watch(self, model: Any, log: str = "gradients", log_freq: int = 100,
              log_graph: bool = True) -> None:
        """``run.watch(model)`` on rank zero."""
        if rank_zero():
            self._handle.writable().watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

    def log_table(self, key: str, columns: list[str] | None = None,
                  data: list[list[Any]] | None = None, dataframe: Any = None,
                  step: int | None = None) -> None:
        """A ``localtrack.Table`` of ``columns`` and ``data`` (or of a ``dataframe``) as
        ``key``; at ``step``, or at the step Lightning is at."""
        if rank_zero():
            table = localtrack.Table(columns=columns, data=data, dataframe=dataframe)
            self.log_metrics({key: table}, step)  # type: ignore[dict-item]

    def log_text(self, key: str, columns: list[str] | None = None,
                 data: list[list[str]] | None = None, dataframe: Any = None,
                 step: int | None = None) -> None:
        """Text as a table (see log_table)."""
        self.log_table(key, columns, data, dataframe, step)

    def log_image(self, key: str, images: list[Any], step: int | None = None,
                  **kwargs: Any) -> None:
        """A list of ``localtrack.Image`` as ``key``; each keyword is a list of one value per
        image (``caption=[...]``)."""
        self._log_media(key, "images", localtrack.Image, images, step, kwargs)

    def log_audio(self, key: str, audios: list[Any], step: int | None = None,
                  **kwargs: Any) -> None:
        """A list of ``localtrack.Audio`` (``sample_rate=[...]``, ``caption=[...]``)."""
        self._log_media(key, "audios", localtrack.Audio, audios, step, kwargs)

    def log_video(self, key: str, videos: list[Any], step: int | None = None,
                  **kwargs: Any) -> None:
        """A list of ``localtrack.Video`` (``fps=[...]``, ``caption=[...]``)."""
        self._log_media(key, "videos", localtrack.Video, videos, step, kwargs)

    def _log_media(self, key: str, what: str, kind: Any, items: list[Any], step: int | None,
                   kwargs: dict[str, Any]) -> None:
        if not rank_zero():
            return
        errors = localtrack.errors
        if not isinstance(items, list):
            raise errors.UnsupportedTypeError(
                f"log_{what[:-1]}({key!r}, {what}=...) takes a list, got "
                f"{type(items).__name__}; pass [{what[:-1]}] for one.")
        for name, values in kwargs.items():
            if not isinstance(values, list) or len(values) != len(items):
                raise errors.InvalidValueError(
                    f"log_{what[:-1]}({key!r}, {name}=...): give a list of one value per item "
                    f"({len(items)} {what}), got {values!r}.")
        media = [kind(item, **{name: values[i] for name, values in kwargs.items()})
                 for i, item in enumerate(items)]
        self.log_metrics({key: media}, step)  # type: ignore[dict-item]

    def use_artifact(self, artifact: str, artifact_type: str | None = None) -> Any:
        """``run.use_artifact(artifact)``: a stored version, recorded as used by the run."""
        return self._handle.writable().use_artifact(artifact)

    @staticmethod
    def download_artifact(artifact: str, save_dir: str | None = None,
                          artifact_type: str | None = None, use_artifact: bool = True) -> str:
        """Copy a stored artifact version (``"project/name:best"``) to ``save_dir`` (default:
        ``./artifacts/<name>:<version>``) and return that folder: used by the active run, or
        read from the default store (``Api()``) when there is none."""
        run = localtrack.run
        found = (run.use_artifact(artifact) if run is not None and use_artifact
                 else localtrack.Api().artifact(artifact))
        return str(found.download(root=save_dir))

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """WandbLogger's ``log_model``: "all" logs each checkpoint as it is saved, True the
        checkpoints left when training ends; as artifacts ``model-<run id>`` (or
        ``checkpoint_name``) of type "model", the best one aliased "best"."""
        if self._log_model == "all" or (self._log_model is True
                                        and getattr(checkpoint_callback, "save_top_k", 0) == -1):
            self._log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callback = checkpoint_callback

    def _log_checkpoints(self, callback: Any) -> None:
        if not rank_zero():
            return
        import os

        run = self._handle.writable()
        best = getattr(callback, "best_model_path", "") or ""
        paths = {best, getattr(callback, "last_model_path", "") or "",
                 *getattr(callback, "best_k_models", {})}
        found = sorted((os.path.getmtime(p), p) for p in paths if p and os.path.isfile(p))
        for mtime, path in found:
            if self._logged_checkpoints.get(path) == mtime:
                continue
            score: Any = getattr(callback, "best_k_models", {}).get(path)
            metadata = {"original_filename": os.path.basename(path),
                        "score": score.item() if hasattr(score, "item") else score}
            artifact = localtrack.Artifact(self._checkpoint_name or f"model-{run.id}", "model",
                                           metadata=metadata)
            artifact.add_file(path, name="model.ckpt")
            run.log_artifact(artifact, aliases=["best"] if path == best else [])
            self._logged_checkpoints[path] = mtime

    def finalize(self, status: str) -> None:
        """Finish the run this logger opened: exit code 0 on "success", 1 on "failed".
        "finished" comes before a SLURM requeue: the run stays open (it is being preempted)."""
        if rank_zero() and self._checkpoint_callback is not None and status == "success":
            self._log_checkpoints(self._checkpoint_callback)
            self._checkpoint_callback = None
        if rank_zero() and status != "finished":
            self._handle.finish(exit_code=0 if status == "success" else 1)
