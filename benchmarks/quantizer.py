"""Training-step time and peak memory of hf-vqvae's VectorQuantizer, its peers and the GEMM floor.

Workload (the paper's ImageNet setting): D = 64, K = 512, a 32x32 grid of latents, batch 16 and
batch 1. A training step is forward + backward (an upstream gradient on the quantized latents plus
the quantizer's loss) + the codebook update, on the same fp32 inputs for every implementation:

- hf-vqvae: `VectorQuantizer`, EMA (decay 0.99) with k-means init and dead-code restarts on, as
  `VQVAEConfig` sets it up; k-means runs in the untimed warm-up step.
- vector-quantize-pytorch: `VectorQuantize(dim=64, codebook_size=512, decay=0.99,
  commitment_weight=0.25, rotation_trick=False, kmeans_init=False, learnable_codebook=False,
  ema_update=True)`, reading (B, D, H, W) maps.
- diffusers: `VectorQuantizer(512, 64, beta=0.25, legacy=False)` as it is: it has no EMA, its
  codebook learns through the loss, so its step is forward + backward only.

Floor: the distance GEMM alone, (N x D) @ (D x K) with N = batch * 32 * 32, at this machine's fp32
matmul throughput measured in the same run (the better of one GEMM into a preallocated output and
the same GEMM in cache-sized row chunks): 2 N D K flops / best flops per second.

Times are per step, best (min) and median over `--repeats` steps taken in interleaved rounds, so
that load from other processes hits every implementation alike; ratios use the best times.

Peak memory: each implementation runs in a fresh subprocess (`peak_memory.py` says how): the most
memory a step holds beyond its inputs.

    python benchmarks/quantizer.py [--threads N] [--repeats R]
"""

import argparse
import statistics
import time

import torch
from machine import describe_machine
from peak_memory import measure_in_subprocess, peak_step_memory


EMBEDDING_DIM = 64
NUM_CODES = 512
GRID_SIDE = 32
BATCH_SIZES = (16, 1)
IMPLEMENTATIONS = ("hf-vqvae", "vector-quantize-pytorch", "diffusers")
PEERS = IMPLEMENTATIONS[1:]


def build_quantizer(name: str) -> torch.nn.Module:
    if name == "hf-vqvae":
        from hf_vqvae import VQVAEConfig
        from hf_vqvae.quantization.vector_quantizer import VectorQuantizer

        config = VQVAEConfig()  # the defaults: EMA, k-means init, restarts
        return VectorQuantizer(
            num_embeddings=NUM_CODES,
            embedding_dim=EMBEDDING_DIM,
            commitment_cost=config.commitment_cost,
            update_rule=config.update_rule,
            decay=config.decay,
            kmeans_init=config.kmeans_init,
            dead_code_threshold=config.dead_code_threshold,
        )
    if name == "vector-quantize-pytorch":
        from vector_quantize_pytorch import VectorQuantize

        return VectorQuantize(
            dim=EMBEDDING_DIM,
            codebook_size=NUM_CODES,
            decay=0.99,
            commitment_weight=0.25,
            rotation_trick=False,
            kmeans_init=False,
            learnable_codebook=False,
            ema_update=True,
            accept_image_fmap=True,
            channel_last=False,
        )
    if name == "diffusers":
        from diffusers.models.autoencoders.vae import VectorQuantizer

        return VectorQuantizer(NUM_CODES, EMBEDDING_DIM, beta=0.25, legacy=False)
    raise ValueError(f"unknown implementation {name!r}; choose from {IMPLEMENTATIONS}")


def quantize(name: str, quantizer: torch.nn.Module, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(quantized latents, quantizer loss) from one forward pass."""
    if name == "hf-vqvae":
        out = quantizer(latents)
        return out.quantized, out.loss
    if name == "vector-quantize-pytorch":
        quantized, _, loss = quantizer(latents)
        return quantized, loss
    quantized, loss, _ = quantizer(latents)
    return quantized, loss


def make_training_step(name: str, batch_size: int):
    """A function running one training step of `name` on fixed inputs."""
    torch.manual_seed(0)
    quantizer = build_quantizer(name).train()
    latents = torch.randn(batch_size, EMBEDDING_DIM, GRID_SIDE, GRID_SIDE, requires_grad=True)
    upstream = torch.randn(batch_size, EMBEDDING_DIM, GRID_SIDE, GRID_SIDE)

    def step():
        quantized, loss = quantize(name, quantizer, latents)
        torch.autograd.backward([quantized, loss], [upstream, None])
        latents.grad = None
        quantizer.zero_grad(set_to_none=True)

    return step


def time_steps(steps: dict[str, callable], repeats: int) -> dict[str, list[float]]:
    """Seconds per step of each function, over `repeats` interleaved rounds."""
    for step in steps.values():  # warm-up: lazy initialisation, k-means, allocator
        step()
        step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def gemm_floor(rows: int, repeats: int) -> tuple[float, float]:
    """(seconds, flop/s) of the distance GEMM at the best fp32 matmul throughput measured here."""
    latents = torch.randn(rows, EMBEDDING_DIM)
    codebook_t = torch.randn(EMBEDDING_DIM, NUM_CODES)
    whole = torch.empty(rows, NUM_CODES)
    chunk_rows = 1024
    chunk = torch.empty(chunk_rows, NUM_CODES)

    def one_gemm():
        torch.mm(latents, codebook_t, out=whole)

    def chunked_gemm():
        for start in range(0, rows, chunk_rows):
            block = latents[start : start + chunk_rows]
            torch.mm(block, codebook_t, out=chunk[: block.shape[0]])

    times = time_steps({"one": one_gemm, "chunked": chunked_gemm}, repeats)
    flops = 2 * rows * EMBEDDING_DIM * NUM_CODES
    throughput = max(flops / min(seconds) for seconds in times.values())
    return flops / throughput, throughput


def measure_memory_in_subprocess(name: str, batch_size: int, threads: int) -> int | None:
    return measure_in_subprocess([__file__, "--threads", str(threads), "--memory_of", name, str(batch_size)])


def report(batch_size: int, repeats: int, threads: int) -> None:
    rows = batch_size * GRID_SIDE * GRID_SIDE
    floor_seconds, throughput = gemm_floor(rows, repeats)
    times = time_steps({name: make_training_step(name, batch_size) for name in IMPLEMENTATIONS}, repeats)
    best = {name: min(seconds) for name, seconds in times.items()}
    memory = {name: measure_memory_in_subprocess(name, batch_size, threads) for name in IMPLEMENTATIONS}

    print(f"\nbatch {batch_size}: {rows} latents, D={EMBEDDING_DIM}, K={NUM_CODES}, {repeats} steps each")
    print(
        f"  floor: distance GEMM {rows}x{EMBEDDING_DIM} @ {EMBEDDING_DIM}x{NUM_CODES} at {throughput / 1e9:.0f} GFLOP/s "
        f"= {floor_seconds * 1e3:.2f} ms"
    )
    print(f"  {'implementation':26s} {'best ms':>9s} {'median ms':>10s} {'x floor':>8s} {'peak MiB':>9s}")
    for name in IMPLEMENTATIONS:
        peak = "n/a" if memory[name] is None else f"{memory[name] / 2**20:.1f}"
        note = "  (no EMA: forward + backward only)" if name == "diffusers" else ""
        print(
            f"  {name:26s} {best[name] * 1e3:9.2f} {statistics.median(times[name]) * 1e3:10.2f} "
            f"{best[name] / floor_seconds:8.2f} {peak:>9s}{note}"
        )
    fastest_peer = min(PEERS, key=best.get)
    print(f"  hf-vqvae step / GEMM floor: {best['hf-vqvae'] / floor_seconds:.2f}x")
    for peer in PEERS:
        print(f"  speed-up over {peer}: {best[peer] / best['hf-vqvae']:.2f}x")
    print(f"  fastest peer: {fastest_peer}")
    if memory["hf-vqvae"] is not None:
        print(f"  peak memory, hf-vqvae / {fastest_peer}: {memory['hf-vqvae'] / memory[fastest_peer]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per implementation and batch size")
    parser.add_argument("--memory_of", nargs=2, metavar=("IMPLEMENTATION", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_of:
        print(peak_step_memory(make_training_step(args.memory_of[0], int(args.memory_of[1]))))
        return
    print(describe_machine())
    for batch_size in BATCH_SIZES:
        report(batch_size, args.repeats, args.threads)


if __name__ == "__main__":
    main()
