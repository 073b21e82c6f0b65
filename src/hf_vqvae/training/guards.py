"""What keeps a training run's work safe: one run per output folder, a folder checked writable before any
training, workers that stop when their launcher dies, Ctrl-C / SIGTERM turned into a checkpoint and a
resume hint, and non-finite losses or weights stopped before they reach a checkpoint or the Hub."""

import ctypes
import errno
import fcntl
import io
import logging
import os
import signal
import sys
from pathlib import Path

import torch

from ..loading import non_finite_tensors


logger = logging.getLogger(__name__)

LOCK_FILE = ".hf_vqvae.lock"
_PR_SET_PDEATHSIG = 1


class OutputDirectoryInUseError(RuntimeError):
    """Another run is writing into the same output folder."""


class NonFiniteTrainingError(RuntimeError):
    """The loss, the gradients or the weights stopped being finite numbers."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run after it saved a checkpoint; the message says how to resume."""


def prepare_output_dir(output_dir: str | os.PathLike) -> Path:
    """Create `output_dir` if needed and check, before any training, that files can be written into it."""
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output_dir {str(folder)!r} is an existing file, not a folder; pass a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ValueError(
            f"--output_dir {str(folder)!r} is not writable ({error.strerror or error}); pass a folder this user can write"
        ) from error
    return folder


class OutputDirectoryLock:
    """An exclusive lock on an output folder, held while a run writes into it (main process only).

    An `flock` on a file in the folder: the kernel drops it when the process ends however it ends, so a
    killed run never leaves a stale lock behind, and a second run into the folder is refused at once.
    """

    def __init__(self, output_dir: str | os.PathLike):
        self.path = Path(output_dir) / LOCK_FILE
        self._file = None

    def acquire(self) -> "OutputDirectoryLock":
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputDirectoryInUseError(
                    f"--output_dir {str(self.path.parent)!r} is in use by another run ({holder}); wait for it to "
                    "end, stop it, or pass another --output_dir"
                ) from error
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def launched_by_a_launcher() -> bool:
    """Whether this process is a worker started by `accelerate launch` or torchrun (not a plain `python`)."""
    return "LOCAL_RANK" in os.environ or "ACCELERATE_MIXED_PRECISION" in os.environ


def launcher_process() -> tuple[dict[str, str], list[str]] | None:
    """The environment the launcher of this worker started with, and its command line; None when unreadable."""
    try:
        environ = Path(f"/proc/{os.getppid()}/environ").read_bytes().split(b"\0")
        command = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    pairs = (item.decode(errors="replace").partition("=") for item in environ if b"=" in item)
    return {name: value for name, _, value in pairs}, [part.decode(errors="replace") for part in command]


def launched_by_accelerate_alone() -> bool:
    """Whether this process is the only worker of an `accelerate launch` (its parent)."""
    if not launched_by_a_launcher() or os.environ.get("WORLD_SIZE", "1") != "1":
        return False
    launcher = launcher_process()
    return launcher is not None and any("accelerate" in part for part in launcher[1])


def hand_the_stop_to_the_launcher() -> None:
    """Before a stopped run exits 130: pass the stop on to an `accelerate launch` whose only worker this is, so that
    it exits 130 quietly too, as it does on a Ctrl-C of its own (it reports a worker's non-zero exit with a traceback
    of its own, and a Ctrl-C that reached it as well has it waiting for this worker, not reporting)."""
    if launched_by_accelerate_alone():
        os.kill(os.getppid(), signal.SIGINT)


def stop_with_launcher() -> None:
    """Ask the kernel to send this worker SIGTERM when its launcher dies (Linux), so a killed `accelerate
    launch` never leaves workers training and writing checkpoints on their own; the SIGTERM then stops the
    run as Ctrl-C does (see `StopRequests`)."""
    if not sys.platform.startswith("linux") or not launched_by_a_launcher():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    # The launcher may have died before the request took effect.
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGTERM)


class StopRequests:
    """Ctrl-C (SIGINT) and SIGTERM, caught while a run trains: the first asks the loop to stop after the
    current update (it saves a checkpoint and says how to resume); a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested: str | None = None
        self._previous = {}

    def __enter__(self) -> "StopRequests":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            # A terminal's Ctrl-C reaches `accelerate launch` too, which then sends its worker SIGTERM: the same stop.
            return
        self.requested = name
        say_from_a_signal_handler(f"\n{name}: stopping after this update and saving a checkpoint (Ctrl-C again stops at once)\n")


def say_from_a_signal_handler(message: str) -> None:
    """Write `message` to stderr in one system call. A handler runs between any two bytecodes of the main thread,
    perhaps inside its own write to sys.stderr (a progress bar's): a second buffered write there raises "reentrant
    call" and the message is lost."""
    try:
        os.write(sys.stderr.fileno(), message.encode())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # stderr without a file descriptor
        print(message, end="", file=sys.stderr)


def check_finite_weights(model: torch.nn.Module, what: str) -> None:
    """Refuse to save or publish a model with non-finite weights, naming the tensors."""
    bad = non_finite_tensors(model)
    if bad:
        listed = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise NonFiniteTrainingError(f"not writing {what}: these tensors hold NaN or infinity: {listed}")
