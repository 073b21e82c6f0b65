"""How many threads torch uses in each process of a run: the CPU cores this process may run on (its affinity and its
cgroup's CPU quota), shared among the processes of the machine, unless the user chose a thread count.

`accelerate launch` and torchrun start their workers with `OMP_NUM_THREADS=1` unless the user set it (accelerate: in
the launcher's environment or with `--num_cpu_threads_per_process`), so a one-process CPU run would train on one core
however many it has. A worker therefore reads the choice from its launcher's own environment and command line: a
variable the launcher inherited is the user's, one it added is its default.
"""

import math
import os
from pathlib import Path

import torch

from .guards import launched_by_a_launcher, launcher_process

THREADS_VARIABLE = "OMP_NUM_THREADS"
LAUNCHER_THREADS_FLAGS = ("--num_cpu_threads_per_process", "--num-cpu-threads-per-process")


def available_cpu_cores() -> int:
    """The cores this process may use: those of its CPU affinity, fewer when its cgroup's CPU quota allows fewer."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPUs' worth of time this process's cgroup may use (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` over
    `cpu.cfs_period_us`), None when there is no limit or no cgroup to read."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # v2
            candidates += [(root / relative / "cpu.max", None), (root / "cpu.max", None)]
        elif "cpu" in controllers.split(","):  # v1
            for folder in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                candidates += [(folder / relative / "cpu.cfs_quota_us", folder / relative / "cpu.cfs_period_us"),
                               (folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us")]
    for quota_file, period_file in candidates:
        try:
            if period_file is None:
                quota, period = quota_file.read_text().split()[:2]
            else:
                quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1"):
            return None
        return int(quota) / int(period)
    return None


def user_chose_threads() -> bool:
    """Whether the user set the thread count: `OMP_NUM_THREADS` in the environment of a plain `python` run; for a
    worker of a launcher, in the launcher's own environment or its `--num_cpu_threads_per_process` (a launcher that
    cannot be read counts as a choice, so nothing is changed)."""
    if not launched_by_a_launcher():
        return THREADS_VARIABLE in os.environ
    launcher = launcher_process()
    if launcher is None:
        return True
    environ, command = launcher
    return THREADS_VARIABLE in environ or any(part.split("=")[0] in LAUNCHER_THREADS_FLAGS for part in command)


def use_available_cores(local_processes: int) -> int:
    """Set torch's thread count to this process's share of the cores (`available_cpu_cores() // local_processes`,
    at least 1) unless the user chose one. A worker of a launcher gets its share; a plain `python` run keeps torch's
    count, lowered to the share where its affinity or quota allows fewer (so a caller's own setting, e.g. in a
    notebook, is never raised). Returns the thread count in use."""
    if not user_chose_threads():
        share = max(1, available_cpu_cores() // max(1, local_processes))
        threads = share if launched_by_a_launcher() else min(torch.get_num_threads(), share)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
    return torch.get_num_threads()
