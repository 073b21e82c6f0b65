"""Running the package's scripts in subprocesses, as a user would: plain `python` or `accelerate launch`."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def script(name: str) -> str:
    return str(ROOT / "scripts" / name)


def subprocess_env() -> dict:
    # One thread per process: fastest for tiny tensors, and the same arithmetic in every run.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(num_processes: int = 1) -> list[str]:
    """The start of an `accelerate launch` command line; two or more processes run over gloo on CPU."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no"]
    if num_processes > 1:
        command += ["--multi_gpu", "--main_process_port", str(free_port())]
    return command


def run(command: list[str], timeout: int = 180) -> subprocess.CompletedProcess:
    """Run to completion; on a timeout kill the launcher and the workers it started, not just the launcher."""
    process = subprocess.Popen(
        command, env=subprocess_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"timed out after {timeout} s:\n{stderr[-4000:]}")
    assert process.returncode == 0, stderr[-4000:]
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def kill_when_exists(command: list[str], path: Path, timeout: float = 120) -> None:
    """Start `command` and SIGKILL it (and its children) as soon as `path` exists."""
    process = subprocess.Popen(
        command, env=subprocess_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, f"the run ended before {path.name} appeared"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
