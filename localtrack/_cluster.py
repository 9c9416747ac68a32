"""What a scheduler says about the job this process belongs to: its identity and its facts.

Pure functions of an environment mapping (``_settings`` hands in ``os.environ``; no I/O here).
The identity keys auto-resume: a restarted process resumes the run that the same job (the same
array task, the same rank) started in the same directory, so the tasks of a job array started in
one directory never take each other's runs. The first source that is present gives it:

    LOCALTRACK_RESUME_KEY   the user's own key; wins over everything below
    SLURM                   SLURM_ARRAY_JOB_ID + SLURM_ARRAY_TASK_ID, else SLURM_JOB_ID (both
                            survive requeue, by scontrol or by preemption)
    PBS / Torque            PBS_JOBID (+ PBS_ARRAY_INDEX / PBS_ARRAYID)
    LSF                     LSB_JOBID + LSB_JOBINDEX
    SGE                     JOB_ID (+ SGE_TASK_ID), where SGE_ROOT or SGE_CELL marks SGE
    Kubernetes indexed Job  the job name + JOB_COMPLETION_INDEX: such a pod's hostname
                            (HOSTNAME) is ``<job name>-<index>``, the same for every retry
    torchelastic            TORCHELASTIC_RUN_ID, the same for every restart of one elastic job

plus the process's rank when a launcher runs several (torchelastic's RANK, else SLURM_PROCID
when the step has more than one task), so each rank resumes its own run.

The facts (job id, array task, partition, nodes, restart count, ...) are recorded on the run at
every start and resume; they are descriptive and never refuse a start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import UsageError

KEY_VAR = "LOCALTRACK_RESUME_KEY"
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}")
_NUMBER_RE = re.compile(r"[0-9]{1,20}")
# Job ids that are not plain numbers: PBS "1234[5].server.example.org", a k8s job name.
_JOB_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\[\]@:-]{0,252}")

# Every variable this module reads, for docs/env.md and for tests that must clear them all.
FACTS: dict[str, dict[str, str]] = {
    "slurm": {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID",
              "array_task_id": "SLURM_ARRAY_TASK_ID", "partition": "SLURM_JOB_PARTITION",
              "nodes": "SLURM_JOB_NODELIST", "restart_count": "SLURM_RESTART_COUNT",
              "cluster": "SLURM_CLUSTER_NAME", "procid": "SLURM_PROCID"},
    "pbs": {"job_id": "PBS_JOBID", "array_index": "PBS_ARRAY_INDEX",
            "array_id": "PBS_ARRAYID", "queue": "PBS_QUEUE", "server": "PBS_SERVER"},
    "lsf": {"job_id": "LSB_JOBID", "array_index": "LSB_JOBINDEX", "queue": "LSB_QUEUE",
            "nodes": "LSB_HOSTS", "restarted": "LSB_RESTART"},
    "sge": {"job_id": "JOB_ID", "array_task_id": "SGE_TASK_ID", "queue": "QUEUE",
            "cluster": "SGE_CLUSTER_NAME"},
    "kubernetes": {"completion_index": "JOB_COMPLETION_INDEX", "pod": "HOSTNAME"},
    "torchelastic": {"run_id": "TORCHELASTIC_RUN_ID",
                     "restart_count": "TORCHELASTIC_RESTART_COUNT", "rank": "RANK",
                     "local_rank": "LOCAL_RANK", "world_size": "WORLD_SIZE"},
}
_MARKERS = ("SGE_ROOT", "SGE_CELL", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS")
VARIABLES: tuple[str, ...] = (KEY_VAR, *_MARKERS,
                              *(var for facts in FACTS.values() for var in facts.values()))


def _get(env: Mapping[str, str], var: str) -> str | None:
    value = env.get(var, "").strip()
    return value or None


def _valid(env: Mapping[str, str], var: str, rule: re.Pattern[str], what: str) -> str | None:
    value = _get(env, var)
    if value is not None and not rule.fullmatch(value):
        raise UsageError(f"{var}={value[:80]!r} is not {what}, so localtrack cannot tell which "
                         "job this process belongs to for resume='auto'. Fix the variable (a "
                         "scheduler sets it; a script may have overwritten it), unset it, or "
                         f"set {KEY_VAR} to a key of your own.")
    return value


def _number(env: Mapping[str, str], var: str) -> str | None:
    return _valid(env, var, _NUMBER_RE, "a number")


def _job(env: Mapping[str, str], var: str) -> str | None:
    return _valid(env, var, _JOB_RE, "a job id (letters, digits and ._[]@:- only)")


def _kubernetes_job(env: Mapping[str, str], index: str) -> str:
    """The job name, from the pod hostname ``<job name>-<index>`` an indexed Job gives (the
    job name itself is no environment variable); a hostname of another shape is used whole."""
    host = _job(env, "HOSTNAME") or ""
    return host.removesuffix(f"-{index}") if host.endswith(f"-{index}") else host


def _job_identity(env: Mapping[str, str]) -> str | None:
    if job := _number(env, "SLURM_ARRAY_JOB_ID"):
        task = _number(env, "SLURM_ARRAY_TASK_ID")
        if task is not None:
            return f"slurm:{job}_{task}"
    if job := _number(env, "SLURM_JOB_ID"):
        return f"slurm:{job}"
    if job := _job(env, "PBS_JOBID"):
        index = _number(env, "PBS_ARRAY_INDEX") or _number(env, "PBS_ARRAYID")
        return f"pbs:{job}" + (f"/{index}" if index is not None else "")
    if job := _number(env, "LSB_JOBID"):
        index = _number(env, "LSB_JOBINDEX")
        return f"lsf:{job}" + (f"[{index}]" if index not in (None, "0") else "")
    if (_get(env, "SGE_ROOT") or _get(env, "SGE_CELL")) and (job := _number(env, "JOB_ID")):
        task = _get(env, "SGE_TASK_ID")  # "undefined" outside an array job
        task = _number(env, "SGE_TASK_ID") if task not in (None, "undefined") else None
        return f"sge:{job}" + (f".{task}" if task is not None else "")
    if (index := _number(env, "JOB_COMPLETION_INDEX")) is not None:
        return f"k8s:{_kubernetes_job(env, index)}/{index}"
    if run := _job(env, "TORCHELASTIC_RUN_ID"):
        return f"torchelastic:{run}"
    return None


def _rank(env: Mapping[str, str]) -> str | None:
    """This process's rank when a launcher runs several processes of one job."""
    if _get(env, "TORCHELASTIC_RUN_ID"):
        return _number(env, "RANK")
    tasks = _number(env, "SLURM_STEP_NUM_TASKS") or _number(env, "SLURM_NTASKS")
    if tasks is not None and int(tasks) > 1:
        return _number(env, "SLURM_PROCID")
    return None


def identity(env: Mapping[str, str]) -> str | None:
    """The auto-resume key of this process's job (None: no scheduler says who we are).

    A UsageError names a variable whose value cannot be an identity: keying resume by garbage
    would resume another job's run.
    """
    key = _get(env, KEY_VAR)
    if key is not None:
        if not _KEY_RE.fullmatch(key):
            raise UsageError(f"Invalid {KEY_VAR}={key[:80]!r}: use 1-128 letters, digits and "
                             "'._:@+=-', starting with a letter or digit (no '/', spaces or "
                             "other path characters), e.g. 'exp7-seed3'.")
        return f"key:{key}"
    job = _job_identity(env)
    if job is None:
        return None
    rank = _rank(env)
    return job if rank is None else f"{job} rank {rank}"


def facts(env: Mapping[str, str]) -> dict[str, dict[str, str | int]]:
    """What each scheduler present says about this job, by scheduler; numbers as ints.

    Lenient on purpose: a fact only describes the run, so an odd value is kept as text.
    """
    found: dict[str, dict[str, str | int]] = {}
    for source, names in FACTS.items():
        values: dict[str, str | int] = {}
        for fact, var in names.items():
            value = _get(env, var)
            if value is not None:
                values[fact] = int(value) if _NUMBER_RE.fullmatch(value) else value[:256]
        present = {"sge": "job_id" in values and bool(_get(env, "SGE_ROOT") or _get(env, "SGE_CELL")),
                   "kubernetes": "completion_index" in values,
                   "torchelastic": "run_id" in values}.get(source, bool(values))
        if present:
            found[source] = values
    return found
