"""Running the package's scripts in subprocesses, as a user would: plain `python` or `accelerate launch`."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest


ROOT = Path(__file__).resolve().parents[1]
RUN_MARK = "HF_VQVAE_TEST_RUN"


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


def as_from_a_terminal() -> None:
    """In a started run, before its exec: Ctrl-C (SIGINT) as a terminal gives it, whatever the suite inherited. A
    suite started in the background by a non-interactive shell (`cmd &`, nohup) ignores SIGINT, every process it
    starts would inherit that, and Python then never raises KeyboardInterrupt (an `accelerate launch` could not stop
    on Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run(subprocess.Popen):
    """`command` started in a session of its own, with `subprocess_env()` and a mark in its environment that every
    process it starts inherits, so that `kill_all` finds them whatever their session, process group or parent (torch's
    distributed workers run in sessions of their own and outlive a killed launcher; a training loader's workers run
    in groups of their own)."""

    def __init__(self, command: list[str], **kwargs):
        self.mark = uuid.uuid4().hex
        super().__init__(
            command, env={**subprocess_env(), RUN_MARK: self.mark}, cwd=ROOT, start_new_session=True,
            preexec_fn=as_from_a_terminal, **kwargs,
        )

    def kill_all(self) -> None:
        """SIGKILL the run's process group at once, then every other process that carries the mark, until none is
        left (one forked meanwhile carries it too)."""
        if self.poll() is None:  # not reaped: the number is still this run's
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.kill()  # in case it left its group
            # Reap the run's own process here, before psutil sees it: psutil.wait_procs would reap it instead, and
            # Popen.wait then finds no child and reports exit code 0 for a killed run.
            self.wait(timeout=60)
        for _ in range(10):
            marked = []
            for process in psutil.process_iter():
                with contextlib.suppress(psutil.Error):
                    if process.environ().get(RUN_MARK) == self.mark:
                        marked.append(process)
            if not marked:
                return
            for process in marked:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            psutil.wait_procs(marked, timeout=5)


def run(command: list[str], timeout: int = 180, expect_success: bool = True) -> subprocess.CompletedProcess:
    """Run to completion; on a timeout kill the run and every process it started, and fail."""
    process = Run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill_all()
        stdout, stderr = process.communicate(timeout=60)  # whoever held the pipes is dead
        pytest.fail(f"timed out after {timeout} s:\n{stderr[-4000:]}")
    if expect_success:
        assert process.returncode == 0, stderr[-4000:]
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def kill_when_exists(command: list[str], path: Path, timeout: float = 120) -> None:
    """Start `command` and SIGKILL it and every process it started as soon as `path` exists."""
    process = Run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert process.poll() is None and time.monotonic() < deadline, f"the run ended, or ran {timeout} s, before {path.name} appeared"
            time.sleep(0.01)
    finally:
        process.kill_all()
    code = process.wait()
    assert code == -signal.SIGKILL, f"the run ended with {code} instead of being killed; {path.parent} holds {sorted(p.name for p in path.parent.iterdir())}"
