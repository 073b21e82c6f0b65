"""Which modules a training run's settings pass through (docs/architecture.md), for two tiny runs: a VQ-VAE on the
default crops, then a prior over its codes (encoded at the start).

A run's settings are its arguments dataclass, each of its groups (`data`, `optimization`, `output`, ...) and the dict
of them saved as `training_arguments.json`. Every call of a package function that receives one of them as an argument
is recorded, by module. Printed per run: the modules crossed; the path (the modules in call order, a module repeated
only when the settings come back to it after another); how often a module is entered again; and how often the
settings are handed back up to a module that, further up the call stack, handed them down.

    python benchmarks/settings_flow.py [-v]       # -v: every call
"""

import dataclasses
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch

import hf_vqvae
from hf_vqvae.training.recipes.prior import parse_args as parse_prior_args
from hf_vqvae.training.recipes.prior import train_prior
from hf_vqvae.training.recipes.vqvae import parse_args as parse_vqvae_args
from hf_vqvae.training.recipes.vqvae import train_vqvae


PACKAGE = str(Path(hf_vqvae.__file__).parent)
TINY_VQVAE = ["--config_overrides", "hidden_channels=16", "residual_channels=8", "num_residual_blocks=1",
              "num_embeddings=16", "embedding_dim=4"]
SHORT_RUN = ["--report_to", "none", "--max_train_steps", "2", "--validation_steps", "1", "--checkpointing_steps", "1",
             "--train_batch_size", "8", "--max_train_samples", "32", "--max_validation_samples", "4"]


def trace(train, arguments) -> list[tuple[str, str, tuple[str, ...], bool]]:
    """(module, function, which settings it received, whether they came back up) for every call that receives them."""
    tracked = {id(arguments): "settings"} | {id(getattr(arguments, f.name)): f.name for f in dataclasses.fields(arguments)}
    calls, saved, stack = [], [], []

    def profile(frame, event, result):
        code = frame.f_code
        if not code.co_filename.startswith(PACKAGE):
            return
        if event == "return":
            if stack and stack[-1][0] is frame:
                stack.pop()
            if code.co_name in ("arguments_dict", "flat_arguments") and isinstance(result, dict):
                tracked[id(result)] = "saved settings"
                saved.append(result)  # kept alive, so that its id is not reused
        elif event == "call":
            names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
            received = tuple(tracked[id(frame.f_locals[name])] for name in names if id(frame.f_locals.get(name)) in tracked)
            if received:
                module = os.path.relpath(code.co_filename, PACKAGE)
                above = [caller for _, caller in stack]
                calls.append((module, code.co_name, received, bool(above) and module != above[-1] and module in above))
                stack.append((frame, module))

    sys.setprofile(profile)
    try:
        train(arguments)
    finally:
        sys.setprofile(None)
    return calls


def report(label: str, calls: list, verbose: bool) -> None:
    path = []
    for module, function, received, climbs in calls:
        if not path or path[-1] != module:
            path.append(module)
        if verbose:
            print(f"  {module}:{function} {', '.join(received)}{'  (back up)' if climbs else ''}")
    entries = Counter(path)
    print(f"{label}: {len(entries)} modules: {', '.join(sorted(entries))}")
    print(f"  path: {' -> '.join(path)}")
    print(f"  modules entered again: {sum(count - 1 for count in entries.values())}; "
          f"handed back up: {sum(call[3] for call in calls)}")


def main() -> None:
    torch.set_num_threads(1)
    verbose = "-v" in sys.argv
    with tempfile.TemporaryDirectory() as folder:
        vqvae = parse_vqvae_args(["--output_dir", f"{folder}/vqvae", "--resolution", "16", *SHORT_RUN, *TINY_VQVAE])
        report("train_vqvae", trace(train_vqvae, vqvae), verbose)
        prior = parse_prior_args([
            "--vqvae", f"{folder}/vqvae", "--output_dir", f"{folder}/prior", "--hidden_channels", "8", "--num_layers", "2",
            "--sample_images_per_row", "2", "--sample_rows", "1", *SHORT_RUN,
        ])
        report("train_prior", trace(train_prior, prior), verbose)


if __name__ == "__main__":
    main()
