"""How much faster the PixelCNN prior samples with its cache (Ramachandran et al. 2017).

Three samplers of the same model draw a batch of code grids:
- cached: `model.sample(use_cache=True)`, the vertical stack once per row, the horizontal stack once per position;
- plain: `model.sample(use_cache=False)`, the whole network on the whole grid once per position (the reference);
- row-cropped: the whole network on the rows up to the current one, once per position, as some public
  implementations do (the logits of row r only depend on rows <= r).

The plain samplers would take many minutes on a CPU, so they are timed over a sample of positions and
extrapolated to the grid. A plain step always costs one full pass: the mean step time times the number of positions.
A row-cropped step at row r costs a pass over r + 1 rows: its steps are timed at rows in mirrored pairs
(r, height - 1 - r), whose mean row count (height + 1) / 2 is the mean over all rows, so the same extrapolation is
exact for a cost linear in the rows, up to timing noise.

    python benchmarks/prior_sampling.py [--device cuda] [--batch_size 16] [--quick] [--num_threads 1]
"""

import argparse
import platform
import time

import torch

from hf_vqvae.models.pixelcnn_prior.configuration_pixelcnn_prior import PixelCNNPriorConfig
from hf_vqvae.models.pixelcnn_prior.modeling_pixelcnn_prior import PixelCNNPriorModel


# The ImageNet setting of the VQ-VAE paper: a 32x32 grid of codes from 512.
FULL = dict(num_embeddings=512, grid_height=32, grid_width=32, hidden_channels=128, num_layers=15, kernel_size=5)
QUICK = dict(num_embeddings=512, grid_height=16, grid_width=16, hidden_channels=64, num_layers=8, kernel_size=5)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="a 16x16 grid, 8 layers of 64 channels")
    parser.add_argument("--timed_steps", type=int, default=8, help="steps timed per plain sampler (even)")
    parser.add_argument("--repeats", type=int, default=2, help="each measurement keeps the best of this many runs")
    parser.add_argument(
        "--num_threads", type=int, default=None,
        help="CPU threads for torch (default: torch's choice); 1 gives steadier timings on a shared machine",
    )
    return parser.parse_args()


def processor_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_time(function, repeats: int, device: torch.device) -> float:
    """Seconds taken by the fastest of `repeats` calls: the one least disturbed by other work on the machine (and,
    from the second call on, past one-time costs such as kernel selection for a new input shape)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def plain_step(model, codes, row, column, crop_rows, generator) -> None:
    """One step of a plain sampler: the network on the whole grid, or on its rows up to `row`, then one draw.
    `_logits` is the model's forward without the input checks, which would refuse a cropped grid."""
    grid = codes[:, : row + 1] if crop_rows else codes
    logits = model._logits(grid, None)[:, :, row, column]
    codes[:, row, column] = model.pixelcnn.draw(logits, 1.0, generator)


def plain_step_seconds(model, batch_size, positions, crop_rows, repeats, device) -> float:
    """Mean over `positions` of the best time of one plain step there."""
    config = model.config
    codes = torch.zeros(batch_size, config.grid_height, config.grid_width, dtype=torch.long, device=device)
    generator = torch.Generator(device).manual_seed(0)
    step_times = [
        best_time(lambda: plain_step(model, codes, row, column, crop_rows, generator), repeats, device)
        for row, column in positions
    ]
    return sum(step_times) / len(step_times)


@torch.no_grad()
def main() -> None:
    args = parse_args()
    if args.timed_steps < 2 or args.timed_steps % 2:
        raise ValueError(f"--timed_steps must be an even number >= 2, got {args.timed_steps}")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = PixelCNNPriorConfig(**(QUICK if args.quick else FULL))
    model = PixelCNNPriorModel(config).to(device).eval()
    height, width = config.grid_height, config.grid_width
    num_positions = height * width

    model.sample(args.batch_size)  # warm-up: allocations, kernel selection
    cached_seconds = best_time(lambda: model.sample(args.batch_size), args.repeats, device)

    pairs = args.timed_steps // 2
    plain_positions = [divmod(step * num_positions // args.timed_steps, width) for step in range(args.timed_steps)]
    top_rows = [pair * height // pairs for pair in range(pairs)]
    mirrored_rows = sorted(top_rows + [height - 1 - row for row in top_rows])
    cropped_positions = [(row, width // 2) for row in mirrored_rows]
    plain_per_step = plain_step_seconds(model, args.batch_size, plain_positions, False, args.repeats, device)
    cropped_per_step = plain_step_seconds(model, args.batch_size, cropped_positions, True, args.repeats, device)
    plain_seconds = plain_per_step * num_positions
    cropped_seconds = cropped_per_step * num_positions

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else processor_name()
    print(f"machine: {device_name} ({platform.platform()}), torch {torch.__version__}, device {device}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"model: {height}x{width} grid, K={config.num_embeddings}, {config.num_layers} gated layers of "
          f"{config.hidden_channels} channels, kernel {config.kernel_size}, {config.skip_channels} skip channels, "
          f"batch {args.batch_size}")
    print(f"cached       {cached_seconds:9.2f} s  {args.batch_size / cached_seconds:9.4f} samples/s  "
          f"(measured, best of {args.repeats})")
    print(f"plain        {plain_seconds:9.2f} s  {args.batch_size / plain_seconds:9.4f} samples/s  "
          f"(estimated: {plain_per_step:.3f} s/step at {len(plain_positions)} positions x {num_positions})")
    print(f"row-cropped  {cropped_seconds:9.2f} s  {args.batch_size / cropped_seconds:9.4f} samples/s  "
          f"(estimated: {cropped_per_step:.3f} s/step at rows {mirrored_rows} x {num_positions})")
    print(f"speed-up of cached sampling: {plain_seconds / cached_seconds:.0f}x over plain (target >= 100x), "
          f"{cropped_seconds / cached_seconds:.0f}x over row-cropped (target >= 30x); "
          f"ideal about {num_positions}x over plain")


if __name__ == "__main__":
    main()
