"""A private single-node SLURM cluster for the tests: munged, slurmctld and slurmd on loopback.

Everything lives in one temp directory: munge key and socket, slurm.conf (found through
SLURM_CONF, so no system-wide file is read or written), state, spool, pid and log files. The
three daemons run in the foreground as children of pytest, on free ports of 127.0.0.1, and are
stopped (and reaped) at the end of the session. Two partitions share the node: `low` (the
default, PriorityTier 1) and `high` (PriorityTier 10); a job in `high` that needs the node
preempts `low`'s jobs with PreemptMode=REQUEUE (SIGTERM, KillWait, requeue).

Without SLURM (Debian's slurm-wlm) the tests that need it FAIL, as CI installs it; set
LOCALTRACK_ALLOW_NO_SLURM=1 to skip them on a machine that has none.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Read at import: the autouse fixture in conftest.py clears LOCALTRACK_* before each test.
ALLOW_NO_SLURM = bool(os.environ.get("LOCALTRACK_ALLOW_NO_SLURM"))
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "scontrol", "scancel", "sinfo", "squeue")
CPUS = 4           # the node's; a job asking for all of them preempts every `low` job
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
         "DEADLINE")

CONF = """\
ClusterName=localtrack
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# A container has no cgroups to spare: track processes by pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
JobRequeue=1
KillWait=5
ReturnToService=2
InactiveLimit=0
MinJobAge=600
# Four CPUs on any machine (config_overrides: slurmd believes slurm.conf, not the hardware), so
# a 4-task array or 3 agents run at once; a `high` job asking for all four preempts them all.
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=low Nodes=localhost Default=YES MaxTime=INFINITE PriorityTier=1 State=UP
PartitionName=high Nodes=localhost MaxTime=INFINITE PriorityTier=10 State=UP
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _no_slurm(reason: str) -> None:
    if ALLOW_NO_SLURM:
        pytest.skip(reason)
    pytest.fail(f"{reason}: install Debian's SLURM (apt-get install slurm-wlm) or set "
                "LOCALTRACK_ALLOW_NO_SLURM=1 to skip the SLURM tests", pytrace=False)


class Cluster:
    """The running cluster, and the few client calls the tests make (every wait bounded)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALTRACK_")}
        # Jobs inherit this environment (sbatch --export=ALL): our python and `localtrack` first.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["SLURM_CONF"] = str(self.conf)
        self.env = env

    def run(self, *cmd: str, cwd: Path | None = None, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(cmd, cwd=cwd, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr}"
                                 f"{self.logs()}")
        return done

    def sbatch(self, script: Path, *options: str, cwd: Path) -> str:
        """Submit ``script`` (with extra sbatch options); returns the job id."""
        return self.run("sbatch", "--parsable", *options, str(script), cwd=cwd).stdout.strip()

    def wrap(self, command: str, *options: str, cwd: Path) -> str:
        """Submit a one-line job (sbatch --wrap); returns the job id."""
        return self.run("sbatch", "--parsable", *options, f"--wrap={command}", cwd=cwd).stdout.strip()

    def job(self, jobid: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Reason, Restarts, ...)."""
        out = self.run("scontrol", "show", "job", "-o", jobid).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def state(self, jobid: str) -> str:
        return self.job(jobid).get("JobState", "?")

    def wait_state(self, jobid: str, *states: str, timeout: float = 60) -> str:
        """Wait until the job is in one of ``states``; fails on any other end state."""
        deadline = time.monotonic() + timeout
        seen = "?"
        while time.monotonic() < deadline:
            seen = self.state(jobid)
            if seen in states:
                return seen
            if seen in ENDED:
                break
            time.sleep(0.2)
        raise AssertionError(f"job {jobid} is {seen}, expected {states}: {self.job(jobid)}"
                             f"{self.logs()}")

    def requeue(self, jobid: str) -> None:
        """Requeue a job, running (SLURM kills it) or ended; release() starts it again."""
        self.run("scontrol", "requeue", jobid)

    def release(self, jobid: str, timeout: float = 30) -> None:
        """Start a requeued job now: SLURM holds it back for two minutes (its BeginTime)."""
        self.wait_state(jobid, "PENDING", timeout=timeout)
        _next_second()
        self.run("scontrol", "update", f"JobId={jobid}", "StartTime=now")

    def preempt_all(self, cwd: Path) -> str:
        """Submit a `high` job that needs the whole node: SLURM requeues every `low` job."""
        return self.wrap("sleep 1", "--partition=high", f"--cpus-per-task={CPUS}", cwd=cwd)

    def release_requeued(self, jobids: list[str], high: str, timeout: float = 60) -> list[str]:
        """Once the preempting ``high`` job ran, start at once the jobs it requeued (the ones
        now PENDING; the others had ended); returns them."""
        self.wait_state(high, "COMPLETED", timeout=timeout)
        pending = [j for j in jobids if self.state(j) == "PENDING"]
        _next_second()
        for jobid in pending:
            self.run("scontrol", "update", f"JobId={jobid}", "StartTime=now")
        return pending

    def cancel_all(self) -> None:
        self.run("scancel", "--user", "root", check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-o", "%i", check=False).stdout.strip():
                return
            time.sleep(0.2)

    def logs(self) -> str:
        tails = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.root / name
            lines = path.read_text(errors="replace").splitlines()[-15:] if path.exists() else []
            tails.append(f"\n--- {name} ---\n" + "\n".join(lines))
        return "".join(tails)


def output(path: Path) -> str:
    """A job's output file ('' until the job has written it)."""
    return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def cluster(root: Path) -> Iterator[Cluster]:
    """Start munged, slurmctld and slurmd under ``root``; yield once the node is idle."""
    missing = [b for b in DAEMONS + CLIENTS if shutil.which(b) is None and
               not Path("/usr/sbin", b).exists()]
    if missing:
        _no_slurm(f"no {', '.join(missing)} on PATH")
    for sub in ("munge", "state", "spool"):
        (root / sub).mkdir(parents=True)
    (root / "munge").chmod(0o755)
    key = root / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    c = Cluster(root)
    c.conf.write_text(CONF.format(root=root, ctld_port=_free_port(), slurmd_port=_free_port(),
                                  cpus=CPUS))
    sbin = lambda b: shutil.which(b) or f"/usr/sbin/{b}"  # noqa: E731 (root's PATH may lack sbin)
    m = root / "munge"
    commands = [
        [sbin("munged"), "--foreground", "--force", f"--socket={m}/socket", f"--key-file={key}",
         f"--pid-file={m}/pid", f"--log-file={m}/log", f"--seed-file={m}/seed"],
        [sbin("slurmctld"), "-D", "-i", "-f", str(c.conf)],
        [sbin("slurmd"), "-D", "-N", "localhost", "-f", str(c.conf)],
    ]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for cmd in commands:
            with (root / f"{Path(cmd[0]).name}.stderr").open("wb") as err:
                procs.append(subprocess.Popen(cmd, env=c.env, stdout=subprocess.DEVNULL, stderr=err))
            if cmd[0].endswith("munged"):
                _wait_path(m / "socket", procs[-1], root)
        deadline = time.monotonic() + 60
        while True:
            dead = [p.args[0] for p in procs if p.poll() is not None]
            if dead:
                raise AssertionError(f"{dead} exited at start: {_stderr(root)}{c.logs()}")
            done = c.run("sinfo", "-h", "-N", "-o", "%t", check=False)
            if done.returncode == 0 and done.stdout.split() == ["idle"] * 2:  # one per partition
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the node is not idle after 60 s: {done.stdout!r} "
                                     f"{done.stderr!r}{c.logs()}")
            time.sleep(0.2)
        yield c
    finally:
        if procs and all(p.poll() is None for p in procs):
            c.cancel_all()
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=20)


def _wait_path(path: Path, proc: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{proc.args[0]} did not create {path}: {_stderr(root)}")
        time.sleep(0.05)


def _stderr(root: Path) -> str:
    return "".join(f"\n--- {p.name} ---\n{p.read_text(errors='replace')[-2000:]}"
                   for p in sorted(root.glob("*.stderr")))


def _next_second() -> None:
    """Wait for the next whole second. slurmd refuses to launch a job whose credential was
    made in the second its kill (a requeue, a preemption, scancel) revoked the old one ("Job
    credential revoked": it compares whole seconds), so a requeued job is started later."""
    time.sleep(1.05 - time.time() % 1)
