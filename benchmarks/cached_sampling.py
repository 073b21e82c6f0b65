"""Time per sampled position of the package's cached autoregressive samplers, next to their arithmetic floor and to
the plain sampler (Ramachandran et al. 2017's comparison).

For each sampler in `SAMPLERS`, width, batch size and thread count:
- cached: a whole draw with the cached sampler (`use_cache=True`), divided by the number of positions;
- floor: the multiply-adds of one position (the cached sampler's matrix products, the vertical stack's counted once
  per position as it is computed once per row for a row of positions) at the matmul throughput measured in the same
  run at the same thread count (a (512 x 1024) @ (1024 x 1024) product: the best this machine does);
- weight floor: the bytes of weights one position reads (the per-position products' weights, and the per-row
  products' divided by the width) at the read bandwidth measured in the same run on a buffer of that size (a sum over
  it, best of several: the buffer stays in whichever cache holds it, as a sampler's weights do between steps). At
  batch 1 every product is a matrix-vector product, which reads 4 bytes of weight per multiply-add: this, not the
  arithmetic, is what a batch-1 step cannot go below;
- products floor: the step's own matrix products alone, at their own shapes, each with its own weights, run back to
  back in the step's order (for the PixelCNN one row: the per-row products once, the per-position ones `size` times),
  per position, at one thread or at the run's thread count, whichever is faster. It is what the products cost through
  torch at these shapes (a batch-1 product is a matrix-vector product, paced by memory, and every call has a fixed
  cost); the sampler's gates, biases, copies and draws come on top. It is printed next to the arithmetic floor, which
  stays the target's reference;
- eager: the same draw with the cached sampler's eager step (`HF_VQVAE_FUSED_STEPS=0`: torch operations on
  preallocated buffers), the step it runs where the compiled one (`layers/fused_steps.cpp`, the default on a CPU with
  a C++ compiler) cannot;
- plain: the whole network on the whole grid for every position (`use_cache=False`; the WaveNet's over its receptive
  field), the reference. It would take minutes, so it is timed at `--timed_steps` positions spread over the grid and
  scaled: every plain step costs one full pass, whatever the position.
Every figure is the best of `--repeats` runs, the one least disturbed by other work on a shared machine; the load
average before and after is printed. `--clock cpu` times with the process's CPU time instead of the wall clock: on a
machine busy with other work it leaves out the time this process waited for a core (at one thread it is the work
done; at more it adds up every thread's time, spinning included).

Samplers: `pixelcnn-class` is `GatedPixelCNN` with a class label (the PixelCNN prior), `pixelcnn-map` with a
conditioning map (the hierarchical VQ-VAE's conditional decoder and the video prior's), `wavenet` the audio
VQ-VAE's WaveNet decoder (20 blocks in cycles of dilations 1 ... 512, kernel 2, skip channels twice the width, latents
of `width` channels every 64 samples and a 32-channel speaker vector) generating `size` * `size` samples; its positions
are samples, and its plain step is `WaveNet.plain_step` at full window (the receptive field, 2,047 samples), what
every plain step costs after the first receptive field. To add a sampler, register a function building a `Case` in
`SAMPLERS`.

    python benchmarks/cached_sampling.py [--samplers pixelcnn-class pixelcnn-map wavenet] [--widths 64 128]
        [--batch_sizes 1 4 16] [--size 16] [--threads 1 2] [--repeats 3] [--timed_steps 4] [--clock wall] [--device cpu]
"""

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe_machine  # noqa: E402

from hf_vqvae.layers import fused_steps  # noqa: E402
from hf_vqvae.layers.gated_pixelcnn import GatedPixelCNN  # noqa: E402
from hf_vqvae.layers.sampling import draw_from_logits  # noqa: E402
from hf_vqvae.layers.wavenet import WaveNet  # noqa: E402


# The interactive setting: by default a 16x16 grid of codes from 512, 15 gated layers, kernel 5, 256 skip channels.
NUM_CODES, NUM_LAYERS, KERNEL_SIZE, SKIP_CHANNELS, NUM_CLASSES = 512, 15, 5, 256, 10
# The audio VQ-VAE's decoder (AudioVQVAEConfig's defaults at 64 channels): 256 mu-law levels, 20 blocks in cycles of
# 10 dilations, kernel 2, a latent every 64 samples, a 32-channel speaker embedding.
MU_LAW_LEVELS, WAVENET_BLOCKS, DILATION_CYCLE, WAVENET_KERNEL, HOP, SPEAKER_CHANNELS = 256, 20, 10, 2, 64, 32


@dataclass
class Case:
    """One sampler at one size: what the benchmark times."""

    description: str
    num_positions: int
    macs_per_position: int  # multiply-adds of matrix products per position, over the whole batch
    weight_bytes_per_position: int  # bytes of weights read per position
    sample_cached: Callable[[], object]
    plain_step: Callable[[int], object]  # one plain step at the given position (raster index)
    # The step's matrix products, what the products floor times: groups of (repeats, [(m, k, n), ...]), each group's
    # products run in turn `repeats` times, all groups together covering `positions_per_products` positions.
    products: list[tuple[int, list[tuple[int, int, int]]]]
    positions_per_products: int


def pixelcnn_case(channels: int, batch_size: int, size: int, device: torch.device, conditioning_map: bool) -> Case:
    """`GatedPixelCNN` on a `size` x `size` grid."""
    grid = size
    torch.manual_seed(0)
    conditioning_channels = channels if conditioning_map else 0
    num_classes = 0 if conditioning_map else NUM_CLASSES
    pixelcnn = GatedPixelCNN(
        NUM_CODES, channels, NUM_LAYERS, KERNEL_SIZE, SKIP_CHANNELS, num_classes, conditioning_channels
    ).to(device).eval()
    class_labels = None if conditioning_map else torch.arange(batch_size, device=device) % NUM_CLASSES
    conditioning = (
        torch.randn(batch_size, conditioning_channels, grid, grid, device=device) if conditioning_map else None
    )
    taps = KERNEL_SIZE // 2 + 1
    per_layer = (
        taps * KERNEL_SIZE * channels * 2 * channels  # vertical convolution (once per row, per position here)
        + 2 * channels * 2 * channels  # vertical to horizontal
        + taps * channels * 2 * channels  # horizontal convolution
        + channels * channels  # horizontal residual (all but the last layer: counted for all)
        + channels * SKIP_CHANNELS  # skip
        + conditioning_channels * 4 * channels  # the conditioning map's projection (once per call)
    )
    head = SKIP_CHANNELS * SKIP_CHANNELS + SKIP_CHANNELS * NUM_CODES
    macs = batch_size * (NUM_LAYERS * per_layer + head)
    per_row_weights = taps * KERNEL_SIZE * channels * 2 * channels + 2 * channels * 2 * channels
    per_step_weights = taps * channels * 2 * channels + (channels + 1) * (channels + SKIP_CHANNELS)
    weight_bytes = 4 * (NUM_LAYERS * (per_row_weights // grid + per_step_weights) + head)
    codes = torch.zeros(batch_size, grid, grid, dtype=torch.long, device=device)
    generator = torch.Generator(device).manual_seed(0)

    @torch.no_grad()
    def plain_step(position: int) -> None:
        row, column = divmod(position, grid)
        logits, _ = pixelcnn(codes, class_labels, conditioning)
        codes[:, row, column] = pixelcnn.draw(logits[:, :, row, column], 1.0, generator)

    # One row of the cached sampler: each layer's vertical products once, then per position each layer's horizontal
    # and residual products, the skips of all layers, the two output layers.
    row, step = grid * batch_size, batch_size
    per_row = [(row, taps * KERNEL_SIZE * channels, 2 * channels), (row, 2 * channels, 2 * channels)] * NUM_LAYERS
    per_position = [(step, taps * channels, 2 * channels), (step, channels + 1, channels)] * (NUM_LAYERS - 1)
    per_position += [
        (step, taps * channels, 2 * channels), (step, NUM_LAYERS * (channels + 1), SKIP_CHANNELS),
        (step, SKIP_CHANNELS, SKIP_CHANNELS), (step, SKIP_CHANNELS, NUM_CODES),
    ]
    conditioned_on = f"a {conditioning_channels}-channel conditioning map" if conditioning_map else "class labels"
    return Case(
        description=f"GatedPixelCNN {grid}x{grid}, K={NUM_CODES}, {NUM_LAYERS}x{channels}, on {conditioned_on}",
        num_positions=grid * grid,
        macs_per_position=macs,
        weight_bytes_per_position=weight_bytes,
        sample_cached=lambda: pixelcnn.sample(batch_size, grid, grid, class_labels, conditioning),
        plain_step=plain_step,
        products=[(1, per_row), (grid, per_position)],
        positions_per_products=grid,
    )


def wavenet_case(channels: int, batch_size: int, size: int, device: torch.device) -> Case:
    """`WaveNet` generating `size` * `size` samples, conditioned on latents and a speaker vector."""
    length = size * size
    skip_channels = 2 * channels
    torch.manual_seed(0)
    wavenet = WaveNet(
        MU_LAW_LEVELS, channels, channels, skip_channels, WAVENET_BLOCKS, DILATION_CYCLE, WAVENET_KERNEL,
        conditioning_channels=channels, conditioning_hop=HOP, global_channels=SPEAKER_CHANNELS,
    ).to(device).eval()
    field = wavenet.receptive_field
    # Latents for the cached run and for the plain steps' full windows (which end at field + length).
    frames = -(-(field + length) // HOP)
    conditioning = torch.randn(batch_size, channels, frames, device=device)
    speaker = torch.randn(batch_size, SPEAKER_CHANNELS, device=device)
    samples = torch.randint(0, MU_LAW_LEVELS, (batch_size, field + length), device=device)
    generator = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        gate_biases = wavenet.gate_biases(conditioning, speaker)

    @torch.no_grad()
    def plain_step(position: int) -> None:
        time = field + position  # a full window
        logits = wavenet.plain_step(samples, time, gate_biases)
        samples[:, time] = draw_from_logits(logits, 1.0, generator)

    per_block = (
        channels * 2 * channels * WAVENET_KERNEL  # dilated convolution
        + channels * channels  # residual (all but the last block: counted for all)
        + channels * skip_channels  # skip
        + (channels * 2 * channels) // HOP  # the latents' projection, once per frame (once per call)
    )
    head = skip_channels * skip_channels + skip_channels * MU_LAW_LEVELS
    macs = batch_size * (WAVENET_BLOCKS * per_block + head)
    weight_bytes = 4 * (
        WAVENET_BLOCKS * (channels * 2 * channels * WAVENET_KERNEL + (channels + 1) * (channels + skip_channels))
        + head
    )
    step = batch_size
    per_sample = [(step, channels, 2 * channels)] * WAVENET_KERNEL + [(step, channels + 1, channels)]
    per_sample = per_sample * (WAVENET_BLOCKS - 1) + [(step, channels, 2 * channels)] * WAVENET_KERNEL
    per_sample += [
        (step, WAVENET_BLOCKS * (channels + 1), skip_channels), (step, skip_channels, skip_channels),
        (step, skip_channels, MU_LAW_LEVELS),
    ]
    return Case(
        description=(
            f"WaveNet {WAVENET_BLOCKS}x{channels}, skip {skip_channels}, dilations up to "
            f"{WAVENET_KERNEL ** (DILATION_CYCLE - 1)}, receptive field {field}, on latents and a speaker; "
            f"{length} samples"
        ),
        num_positions=length,
        macs_per_position=macs,
        weight_bytes_per_position=weight_bytes,
        sample_cached=lambda: wavenet.generate(batch_size, length, conditioning, speaker),
        plain_step=plain_step,
        products=[(size, per_sample)],  # as many samples as a PixelCNN row has positions: a few milliseconds
        positions_per_products=size,
    )


# name -> (channels, batch_size, size, device) -> Case, size being the side of a grid (a WaveNet generates size**2
# samples).
SAMPLERS: dict[str, Callable[[int, int, int, torch.device], Case]] = {
    "pixelcnn-class": lambda channels, batch, size, device: pixelcnn_case(channels, batch, size, device, False),
    "pixelcnn-map": lambda channels, batch, size, device: pixelcnn_case(channels, batch, size, device, True),
    "wavenet": wavenet_case,
}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def best_time(function, repeats: int, device: torch.device) -> float:
    """Seconds taken by the fastest of `repeats` calls."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = clock()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(clock() - start)
    return min(times)


def matmul_throughput(repeats: int, device: torch.device) -> float:
    """Multiply-adds per second of a large fp32 matrix product."""
    left, right = torch.randn(512, 1024, device=device), torch.randn(1024, 1024, device=device)
    out = torch.empty(512, 1024, device=device)
    product = lambda: torch.mm(left, right, out=out)  # noqa: E731
    product()
    return 512 * 1024 * 1024 / best_time(product, max(repeats, 5), device)


def read_bandwidth(num_bytes: int, repeats: int, device: torch.device) -> float:
    """Bytes per second read by a sum over a float32 buffer of `num_bytes`, read again and again (so that it stays in
    whichever cache holds it)."""
    buffer = torch.randn(max(num_bytes // 4, 1024), device=device)
    total = torch.empty((), device=device)
    read = lambda: torch.sum(buffer, dim=0, out=total)  # noqa: E731
    read()
    return buffer.numel() * 4 / best_time(read, max(repeats, 10), device)


def time_eager(case: Case, repeats: int, device: torch.device) -> float:
    """Seconds of a whole cached draw with the eager step (see `layers/fused_steps.py`)."""
    previous = os.environ.get(fused_steps.DISABLE_VARIABLE)
    os.environ[fused_steps.DISABLE_VARIABLE] = "0"
    try:
        case.sample_cached()
        return best_time(case.sample_cached, repeats, device)
    finally:
        if previous is None:
            del os.environ[fused_steps.DISABLE_VARIABLE]
        else:
            os.environ[fused_steps.DISABLE_VARIABLE] = previous


def products_time(case: Case, repeats: int, device: torch.device) -> float:
    """Seconds per position of the case's matrix products alone (see the products floor above). Weights are stored as
    the samplers store them, as transposes of row-major (out, in) matrices."""
    groups = []
    for group_repeats, shapes in case.products:
        operands = []
        for m, k, n in shapes:
            operands.append((
                torch.randn(m, k, device=device), torch.randn(n, k, device=device).t(),
                torch.empty(m, n, device=device),
            ))
        groups.append((group_repeats, operands))

    def run() -> None:
        for group_repeats, operands in groups:
            for _ in range(group_repeats):
                for left, right, out in operands:
                    torch.mm(left, right, out=out)

    # At several threads, the lower of the times at one thread and at all of them: small products can be slower on
    # several threads (on a busy machine, many times slower), and a sampler may run them on one.
    threads = torch.get_num_threads()
    seconds = []
    for count in sorted({1, threads}):
        torch.set_num_threads(count)
        run()
        seconds.append(best_time(run, max(repeats, 5), device))
    torch.set_num_threads(threads)
    return min(seconds) / case.positions_per_products


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--widths", nargs="+", type=int, default=[64, 128], help="hidden channels")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--size", type=int, default=16, help="side of the code grid (length of a sequence)")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="CPU thread counts to run at")
    parser.add_argument("--repeats", type=int, default=3, help="each figure is the best of this many runs")
    parser.add_argument("--timed_steps", type=int, default=4, help="plain steps timed per case")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clock", default="wall", choices=list(CLOCKS), help="wall clock, or the process's CPU time")
    args = parser.parse_args()
    if args.size < 1:
        raise ValueError(f"--size must be a positive integer, got {args.size}")
    for name in ("widths", "batch_sizes", "threads"):
        if min(getattr(args, name)) < 1:
            raise ValueError(f"--{name} must be positive integers, got {getattr(args, name)}")
    if args.repeats < 1 or args.timed_steps < 1:
        raise ValueError(f"--repeats and --timed_steps must be >= 1, got {args.repeats} and {args.timed_steps}")
    return args


def main() -> None:
    global clock
    args = parse_args()
    clock = CLOCKS[args.clock]
    device = torch.device(args.device)
    print(describe_machine())
    print(f"clock: {args.clock}")
    print(f"load average before: {' '.join(f'{load:.2f}' for load in os.getloadavg())} (1, 5, 15 min)")
    compiled = device.type == "cpu" and fused_steps.usable_for(torch.zeros(1))
    print(f"cached step: {'compiled (layers/fused_steps.cpp)' if compiled else 'eager (the compiled one cannot run)'}")
    header = (f"{'sampler':<15} {'width':>5} {'batch':>5} {'threads':>7} {'cached ms/pos':>13} "
              f"{'floor ms/pos':>12} {'x floor':>7} {'weight floor':>12} {'x weight floor':>14} "
              f"{'products floor':>14} {'x products':>10} {'eager ms/pos':>12} {'vs eager':>8} {'plain ms/pos':>12} "
              f"{'cached vs plain':>15} {'GFLOP/s':>7} {'GB/s':>6}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n{threads} thread(s); matmul throughput and weight-read bandwidth measured before each case")
        print(header)
        for name in args.samplers:
            for width in args.widths:
                for batch_size in args.batch_sizes:
                    case = SAMPLERS[name](width, batch_size, args.size, device)
                    if batch_size == args.batch_sizes[0]:
                        print(f"# {name}: {case.description}")
                    # Measured next to the case, so that both see the same share of a busy machine.
                    macs_per_second = matmul_throughput(args.repeats, device)
                    bytes_per_second = read_bandwidth(case.weight_bytes_per_position, args.repeats, device)
                    case.sample_cached()  # warm-up: allocations, kernel selection
                    cached = best_time(case.sample_cached, args.repeats, device) / case.num_positions
                    floor = case.macs_per_position / macs_per_second
                    weight_floor = case.weight_bytes_per_position / bytes_per_second
                    products_floor = products_time(case, args.repeats, device)
                    eager = time_eager(case, args.repeats, device) / case.num_positions if compiled else cached
                    positions = [step * case.num_positions // args.timed_steps for step in range(args.timed_steps)]
                    case.plain_step(positions[0])
                    plain = sum(
                        best_time(lambda: case.plain_step(position), args.repeats, device) for position in positions
                    ) / len(positions)
                    print(f"{name:<15} {width:>5} {batch_size:>5} {threads:>7} {1e3 * cached:>13.3f} "
                          f"{1e3 * floor:>12.3f} {cached / floor:>7.2f} {1e3 * weight_floor:>12.3f} "
                          f"{cached / weight_floor:>14.2f} {1e3 * products_floor:>14.3f} "
                          f"{cached / products_floor:>10.2f} {1e3 * eager:>12.3f} {eager / cached:>7.1f}x "
                          f"{1e3 * plain:>12.2f} {plain / cached:>14.0f}x "
                          f"{2 * macs_per_second / 1e9:>7.1f} {bytes_per_second / 1e9:>6.1f}")
    print(f"\nload average after: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    print("Targets: x floor <= 3 at batch 1 and 4, <= 1.5 at batch 16 (x floor: against the arithmetic floor); cached "
          "vs plain >= 100x for pixelcnn-* at width 64, batch 4.")


if __name__ == "__main__":
    main()
