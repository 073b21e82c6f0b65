"""Faults and bad input in training runs: nothing written by a run is lost or damaged, and every refusal
names the problem (issue 10's training-side holes, issue 9's command-line ones)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_vqvae.training import loop
from hf_vqvae.training.publishing import write_atomically
from hf_vqvae.training.checkpoints import CheckpointManager, DamagedCheckpointError, write_json
from hf_vqvae.training.guards import NonFiniteTrainingError, OutputDirectoryInUseError, OutputDirectoryLock, StopRequests
from hf_vqvae.training.recipes.vqvae import parse_args, train_vqvae

from conftest import TINY_VQVAE
from launching import ROOT, Run, accelerate_launch, run, script


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
TINY_OVERRIDES = ["--config_overrides", *(f"{name}={value}" for name, value in TINY_VQVAE.items() if name != "sample_size")]


def tiny_flags(output_dir, *extra: str) -> list[str]:
    """A tiny model on 64 of the default crops at 16 px."""
    return [
        "--output_dir", str(output_dir), "--max_train_samples", "64", "--max_validation_samples", "8", "--resolution", "16",
        "--train_batch_size", "8", "--report_to", "none", *TINY_OVERRIDES, *extra,
    ]


@pytest.mark.parametrize("flags, message", [
    (["--learning_rate", "nan"], r"--learning_rate must lie in \(0, inf\), got nan"),
    (["--adam_beta1", "2"], r"--adam_beta1 must lie in \[0, 1\), got 2.0"),
    (["--dataloader_num_workers", "-1"], r"--dataloader_num_workers must be >= 0, got -1"),
    (["--max_unreadable_fraction", "-1"], r"--max_unreadable_fraction must lie in \[0, 1\], got -1.0"),
    (["--max_validation_samples", "0"], r"--max_validation_samples must be >= 1, got 0"),
    (["--train_batch_size", "0"], r"--train_batch_size must be >= 1, got 0"),
])
def test_flags_torch_would_reject_later_are_refused_up_front(flags, message):
    with pytest.raises(ValueError, match=message):
        parse_args(flags)


def test_an_output_dir_that_is_a_file_or_unwritable_is_refused_before_training(tmp_path, monkeypatch):
    existing_file = tmp_path / "model.txt"
    existing_file.write_text("not a folder")
    with pytest.raises(ValueError, match=r"--output_dir .*model.txt' is an existing file, not a folder"):
        train_vqvae(parse_args(tiny_flags(existing_file, "--max_train_steps", "1")))

    # Root writes into read-only folders, so the refusal of the file system is simulated.
    def refuse(self, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_bytes", refuse)
    trained = []
    monkeypatch.setattr(loop, "run_training_loop", lambda *args, **kwargs: trained.append(1))
    with pytest.raises(ValueError, match=r"--output_dir .*read-only' is not writable \(Permission denied\)"):
        train_vqvae(parse_args(tiny_flags(tmp_path / "read-only", "--max_train_steps", "1")))
    assert not trained


def test_a_diverging_run_stops_keeps_its_good_checkpoints_and_publishes_nothing(tmp_path):
    output_dir = tmp_path / "run"
    with pytest.raises(NonFiniteTrainingError, match=r"became NaN or infinite at update 2.*lower --learning_rate.*checkpoint-1"):
        train_vqvae(parse_args(tiny_flags(output_dir, "--learning_rate", "1e6", "--max_grad_norm", "0", "--max_train_steps", "40", "--checkpointing_steps", "1")))
    assert not (output_dir / "model.safetensors").exists() and not (output_dir / "metrics.json").exists()
    weights = load_file(output_dir / "checkpoint-1" / "model.safetensors")
    assert all(bool(torch.isfinite(tensor).all()) for tensor in weights.values() if tensor.is_floating_point())


def test_metrics_json_never_holds_a_bare_nan(tmp_path):
    write_json(tmp_path / "metrics.json", {"mse": float("nan"), "psnr": float("inf"), "steps": 3, "by_code": [1.0, float("nan")]})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"mse": None, "psnr": None, "steps": 3, "by_code": [1.0, None]}


def test_the_final_files_are_replaced_atomically(tmp_path):
    good = {"weight": torch.ones(3)}
    save_file(good, tmp_path / "model.safetensors")

    def crash_halfway(folder: Path):
        (folder / "model.safetensors").write_bytes(b"\x00" * 10)  # a file half written
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(tmp_path, crash_halfway)
    assert torch.equal(load_file(tmp_path / "model.safetensors")["weight"], good["weight"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.safetensors"]

    write_atomically(tmp_path, lambda folder: save_file({"weight": torch.zeros(3)}, folder / "model.safetensors"))
    assert torch.equal(load_file(tmp_path / "model.safetensors")["weight"], torch.zeros(3))


def fake_checkpoint(folder: Path, step: int) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    write_json(path / CheckpointManager.state_file, {"position": {"step": step}, "model_config": {}})
    save_file({"weight": torch.full((4,), float(step))}, path / "model.safetensors")
    return path


def test_a_kill_while_pruning_never_leaves_a_half_deleted_checkpoint(tmp_path, monkeypatch):
    for step in (1, 2, 3):
        fake_checkpoint(tmp_path, step)
    manager = CheckpointManager(tmp_path, total_limit=2)
    import shutil

    real_rmtree = shutil.rmtree

    def killed_midway(path, *args, **kwargs):
        (Path(path) / "model.safetensors").unlink()  # part of the folder is gone when the kill comes
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        manager._prune()
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    # The half-deleted folder is no checkpoint; the complete ones are all there.
    assert [path.name for path in manager.checkpoints()] == ["checkpoint-2", "checkpoint-3"]
    assert (tmp_path / "deleted-checkpoint-1").exists()
    manager._remove_leftovers()  # what the next save does first
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-3"]


@pytest.mark.parametrize("damaged_file", ["model.safetensors", "training_state.json", "optimizer.bin"])
def test_a_damaged_newest_checkpoint_is_named_and_latest_falls_back(tmp_path, damaged_file, caplog):
    older, newest = fake_checkpoint(tmp_path, 2), fake_checkpoint(tmp_path, 4)
    torch.save({"state": {}, "param_groups": []}, older / "optimizer.bin")
    torch.save({"state": {}, "param_groups": []}, newest / "optimizer.bin")
    data = (newest / damaged_file).read_bytes()
    (newest / damaged_file).write_bytes(data[: len(data) // 2])  # truncated by a crash or a full disk

    manager = CheckpointManager(tmp_path)
    with pytest.raises(DamagedCheckpointError, match=rf"checkpoint-4' is damaged: {damaged_file} cannot be read") as error:
        manager.resolve(str(newest), {})
    assert "weights_only=False" not in str(error.value)
    with caplog.at_level("WARNING"):
        path, state = manager.resolve("latest", {})
    assert path == older and state["position"]["step"] == 2
    assert f"{damaged_file} cannot be read" in caplog.text and "falling back" in caplog.text


def test_a_second_run_into_a_folder_in_use_is_refused_and_a_killed_run_leaves_no_stale_lock(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[2]);"
         "from hf_vqvae.training.guards import OutputDirectoryLock; lock = OutputDirectoryLock(sys.argv[1]).acquire();"
         "print('locked', flush=True); time.sleep(60)", str(folder), str(ROOT / "src")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirectoryInUseError, match=rf"--output_dir .*run' is in use by another run \(pid {holder.pid}\)"):
            OutputDirectoryLock(folder).acquire()
    finally:
        holder.kill()
        holder.wait()
    OutputDirectoryLock(folder).acquire().release()  # the kernel dropped the killed holder's lock


def worker_pids(marker: str) -> list[int]:
    """Processes whose command line holds `marker` and runs the training script (the launcher's workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in command and "scripts/train.py" in command and "accelerate" not in command:
                pids.append(int(entry.name))
    return pids


def test_workers_stop_when_their_launcher_is_killed(tmp_path):
    output_dir = tmp_path / "orphaned-run"
    launcher = Run(
        [*accelerate_launch(num_processes=2), script("train.py"), *tiny_flags(output_dir, "--max_train_steps", "100000")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (output_dir / "training_arguments.json").exists():
            assert launcher.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.1)
        workers = worker_pids(str(output_dir))
        assert len(workers) == 2
        launcher.kill()  # the launcher alone, as `kill -9 <pid>` would
        launcher.wait()
        deadline = time.monotonic() + 60
        while worker_pids(str(output_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not worker_pids(str(output_dir)), "workers went on training after their launcher died"
    finally:  # whatever is left of the run, if the test failed
        launcher.kill_all()


@pytest.mark.parametrize("signum, whole_group, workers, launcher", [
    (signal.SIGINT, False, 0, []),
    # `timeout`, a terminal's Ctrl-C and job schedulers signal the whole process group: the loader's workers too.
    (signal.SIGTERM, True, 2, []),
    # A terminal's Ctrl-C under `accelerate launch`: the launcher gets it too, and sends its worker SIGTERM on top.
    (signal.SIGINT, True, 0, accelerate_launch()),
    # A signal to the worker alone: accelerate reports a worker's non-zero exit with a traceback, unless told to stop.
    (signal.SIGINT, False, 0, accelerate_launch()),
], ids=["ctrl-c", "sigterm-to-the-group-with-loader-workers", "ctrl-c-to-accelerate-launch", "sigint-to-accelerate-worker"])
def test_a_stop_signal_saves_a_checkpoint_and_says_how_to_resume(tmp_path, signum, whole_group, workers, launcher):
    output_dir = tmp_path / "run"
    flags = tiny_flags(output_dir, "--max_train_steps", "100000", "--checkpointing_steps", "100000",
                       "--dataloader_num_workers", str(workers))
    command = [*(launcher or [sys.executable]), script("train.py"), *flags]
    process = Run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (output_dir / "training_arguments.json").exists():
            assert process.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.1)
        time.sleep(3)  # a few updates
        if whole_group:
            os.killpg(process.pid, signum)
        elif launcher:
            psutil.Process(process.pid).children()[0].send_signal(signum)
        else:
            process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:  # the run and its loader's workers, if the test failed
        process.kill_all()
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    checkpoints = CheckpointManager(output_dir).checkpoints()
    assert len(checkpoints) == 1
    assert not list(output_dir.glob("tmp-checkpoint-*"))
    step = int(checkpoints[0].name.split("-")[1])
    name = signal.Signals(signum).name
    # Said once. Under `accelerate launch` a Ctrl-C to the whole group also interrupts the launcher while it copies
    # its worker's stderr, and the chunk it holds then (the worker's first line about the stop) can be lost there.
    announced = stderr.count(": stopping after this update")
    assert (announced <= 1 if launcher and whole_group else announced == 1), stderr[-2000:]
    assert stderr.count("stopped at update") == 1, stderr[-2000:]
    assert (
        f"stopped at update {step} by {name}; saved {checkpoints[0]}. Resume with the same command and "
        f"--resume_from_checkpoint latest, or make a loadable model of it: python scripts/export_checkpoint.py "
        f"--checkpoint {checkpoints[0]}"
    ) in stderr


def test_a_second_stop_signal_of_another_kind_is_the_same_stop(capsys):
    with StopRequests() as stop_requests:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
    assert stop_requests.requested == "SIGINT"
    assert capsys.readouterr().err.count("stopping after this update") == 1


def test_a_bad_flag_or_a_refusal_of_the_package_ends_with_its_message_alone(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_status:
        loop.run_command(train_vqvae, lambda: parse_args(["--learning_rate", "nan"]))
    assert exit_status.value.code == 2
    assert capsys.readouterr().err == "error: --learning_rate must lie in (0, inf), got nan\n"
    with pytest.raises(SystemExit) as exit_status:
        loop.run_command(train_vqvae, lambda: parse_args(tiny_flags(tmp_path, "--train_data_dir", str(tmp_path / "none"))))
    assert exit_status.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and str(tmp_path / "none") in error and "Traceback" not in error


def test_a_value_error_raised_inside_a_library_keeps_its_traceback():
    with pytest.raises(json.JSONDecodeError):
        loop.run_command(lambda arguments: json.loads("{"), lambda: None)


# Torch's loader workers install their SIGTERM handler (die unless the main process sent it), then seed Python's
# generator, then run `worker_init_fn`: a slow `random.seed` widens the window in which a stop signal sent to the group
# used to kill a starting worker.
LOADER_WITH_SLOW_WORKER_START = """
import os, random, signal, sys, time
import torch
from hf_vqvae.training.guards import StopRequests
from hf_vqvae.training.loader_workers import shield_loader_workers

seed = random.seed
random.seed = lambda *args: (time.sleep(2), seed(*args))
loader = torch.utils.data.DataLoader(range(8), batch_size=2, num_workers=2)
shield_loader_workers(loader)
"""


def test_a_stop_signal_to_the_group_while_loader_workers_start_reaches_the_main_process_only():
    code = LOADER_WITH_SLOW_WORKER_START + """
with StopRequests() as stop_requests:
    batches = iter(loader)
    time.sleep(0.5)  # the workers are forked, and not yet out of the group
    os.killpg(0, signal.SIGTERM)  # as `timeout` does
    print(stop_requests.requested, [batch.tolist() for batch in batches])
"""
    result = run([sys.executable, "-c", code], timeout=120)
    assert result.stdout.split("\n")[-2] == "SIGTERM [[0, 1], [2, 3], [4, 5], [6, 7]]", result.stderr


def test_a_run_that_fails_with_its_loader_workers_alive_exits():
    """An error's traceback keeps the loader alive until Python terminates its workers at exit, then waits for them:
    they must not ignore the SIGTERM it sends them."""
    code = LOADER_WITH_SLOW_WORKER_START + """
batches = iter(loader)
next(batches)
raise RuntimeError("an error in the training step")
"""
    result = run([sys.executable, "-c", code], timeout=120, expect_success=False)
    assert result.returncode == 1 and "RuntimeError: an error in the training step" in result.stderr, result.stderr


def test_a_single_process_launch_of_two_processes_says_to_add_multi_gpu(tmp_path):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", script("train.py"), *tiny_flags(tmp_path / "run", "--max_train_steps", "1")]
    result = run(command, timeout=120, expect_success=False)
    assert result.returncode != 0
    assert "`accelerate launch --num_processes 2` started a single process: on a machine without a GPU add --multi_gpu" in result.stderr


def test_scripts_print_where_they_saved_and_tensorboard_holds_each_step_once(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output_dir = tmp_path / "run"
    flags = tiny_flags(output_dir, "--max_train_steps", "4", "--checkpointing_steps", "2", "--report_to", "tensorboard")
    result = run([sys.executable, script("train.py"), *flags])
    assert f"saved the model to {output_dir}" in result.stdout
    # A run that resumed from step 2 logs steps 3 and 4 again; the replayed events replace the first ones.
    run([sys.executable, script("train.py"), *flags, "--resume_from_checkpoint", "checkpoint-2"])
    events = EventAccumulator(str(output_dir / "logs"))
    for folder in sorted((output_dir / "logs").rglob("events.out.tfevents.*")):
        events = EventAccumulator(str(folder.parent))
        events.Reload()
    steps = [event.step for event in events.Scalars("train/loss")]
    assert steps == [1, 2, 3, 4]
    assert oct((output_dir / "model.safetensors").stat().st_mode & 0o777) == oct(0o644 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
