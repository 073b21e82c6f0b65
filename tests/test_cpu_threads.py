"""Torch's thread count in the processes of a run (issue 25, item 1): each uses its share of the cores it may run on,
unless the user chose a count; `accelerate launch`'s own default of one thread is not a choice."""

import os

import pytest
import torch

from hf_vqvae.training import cpu_threads
from hf_vqvae.training.cpu_threads import available_cpu_cores, cgroup_cpu_quota, use_available_cores

from launching import accelerate_launch, run, subprocess_env


PRINT_THREADS = """
import torch
from hf_vqvae.training.accelerator import create_accelerator
accelerator = create_accelerator()
print(f"rank {accelerator.process_index} threads {torch.get_num_threads()}", flush=True)
"""


def launched_threads(tmp_path, launcher_environment: dict, num_processes: int = 1, *launcher_flags: str) -> list[int]:
    program = tmp_path / "print_threads.py"
    program.write_text(PRINT_THREADS)
    command = [*accelerate_launch(num_processes), *launcher_flags, str(program)]
    environment = {name: value for name, value in subprocess_env().items() if name != "OMP_NUM_THREADS"}
    result = run(["env", "-i", *(f"{name}={value}" for name, value in {**environment, **launcher_environment}.items()),
                  *command], timeout=300)
    return [int(line.split()[-1]) for line in result.stdout.splitlines() if line.startswith("rank ")]


@pytest.fixture
def two_cores_or_more():
    if available_cpu_cores() < 2:
        pytest.skip("this machine gives the process one core: one thread is also the launcher's default")
    return available_cpu_cores()


def test_a_launched_process_uses_every_core_it_has(tmp_path, two_cores_or_more):
    assert launched_threads(tmp_path, {}) == [two_cores_or_more]


def test_two_launched_processes_share_the_cores(tmp_path, two_cores_or_more):
    assert launched_threads(tmp_path, {}, 2) == [two_cores_or_more // 2] * 2


@pytest.mark.parametrize("environment, flags", [
    ({"OMP_NUM_THREADS": "1"}, ()),
    ({}, ("--num_cpu_threads_per_process", "1")),
], ids=["OMP_NUM_THREADS", "--num_cpu_threads_per_process"])
def test_the_users_thread_count_is_kept(tmp_path, two_cores_or_more, environment, flags):
    assert launched_threads(tmp_path, environment, 1, *flags) == [1]


def test_a_plain_run_never_raises_the_callers_count_and_keeps_a_user_choice(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr(cpu_threads, "available_cpu_cores", lambda: 4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert use_available_cores(local_processes=1) == 1
        torch.set_num_threads(8)
        assert use_available_cores(local_processes=1) == 4  # an affinity or a quota of 4 cores lowers it
        monkeypatch.setenv("OMP_NUM_THREADS", "8")
        torch.set_num_threads(8)
        assert use_available_cores(local_processes=1) == 8
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("files, lines, expected", [
    ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),
    ({"job/cpu.max": "400000 100000\n"}, "0::/job\n", 4.0),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "300000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, "2:cpu,cpuacct:/\n", 3.0),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "1:cpu:/\n", None),
    ({}, "0::/\n", None),
], ids=["v2", "v2-unlimited", "v2-nested", "v1", "v1-unlimited", "none"])
def test_the_cgroup_quota_is_read_in_either_version(tmp_path, files, lines, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    membership = tmp_path / "cgroup"
    membership.write_text(lines)
    assert cgroup_cpu_quota(tmp_path, membership) == expected


def test_a_quota_caps_the_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(cpu_threads, "cgroup_cpu_quota", lambda: 2.5)
    assert available_cpu_cores() == 2
    monkeypatch.setattr(cpu_threads, "cgroup_cpu_quota", lambda: 0.5)
    assert available_cpu_cores() == 1
