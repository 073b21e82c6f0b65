"""A data loader's worker processes that outlive a stop signal sent to the training's process group.

Ctrl-C in a terminal, `timeout` and job schedulers signal the whole process group. A loader worker killed by that
signal makes the main process fail ("DataLoader worker exited unexpectedly") before it can save the checkpoint that
`guards.StopRequests` asks for. So each worker moves into a process group of its own as it starts, and keeps torch's
own handling of SIGTERM there: it must not ignore it, since a main process that exits with its loader still alive
(an error's traceback holds it) terminates its workers and then waits for them. A worker is started with the stop
signals blocked, so that one sent to the group before the worker left it waits, and is dropped when it has.
"""

import multiprocessing.context
import os
import signal

import torch

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class LeaveTheProcessGroup:
    """A data loader's `worker_init_fn`: move the worker into a process group of its own, drop the stop signals sent
    to the training's group while it was still in it, then run the loader's own `worker_init_fn`."""

    def __init__(self, worker_init_fn=None):
        self.worker_init_fn = worker_init_fn

    def __call__(self, worker_id: int) -> None:
        os.setpgid(0, 0)
        for _ in signal.sigpending() & set(STOP_SIGNALS):
            signal.sigwait(STOP_SIGNALS)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if self.worker_init_fn is not None:
            self.worker_init_fn(worker_id)


class _StartedWithStopSignalsBlocked:
    """A process started with SIGINT and SIGTERM blocked: a forked or spawned process inherits the signal mask of
    the thread that starts it."""

    def start(self) -> None:
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)


class _ForkedWithStopSignalsBlocked(_StartedWithStopSignalsBlocked, multiprocessing.context.ForkProcess):
    pass


class _SpawnedWithStopSignalsBlocked(_StartedWithStopSignalsBlocked, multiprocessing.context.SpawnProcess):
    pass


class _ForkContext(multiprocessing.context.ForkContext):
    Process = _ForkedWithStopSignalsBlocked


class _SpawnContext(multiprocessing.context.SpawnContext):
    Process = _SpawnedWithStopSignalsBlocked


def shield_loader_workers(dataloader: torch.utils.data.DataLoader) -> None:
    """Let `dataloader`'s worker processes (if any) outlive a stop signal sent to the process group, from the moment
    they start. They start as the loader's start method says (the default one where it says none); a forkserver's
    processes inherit the server's signal mask, not this thread's, so they are spawned instead."""
    if dataloader.num_workers == 0 or isinstance(dataloader.worker_init_fn, LeaveTheProcessGroup):
        return
    method = (dataloader.multiprocessing_context or multiprocessing.get_context()).get_start_method()
    dataloader.worker_init_fn = LeaveTheProcessGroup(dataloader.worker_init_fn)
    dataloader.multiprocessing_context = _ForkContext() if method == "fork" else _SpawnContext()
