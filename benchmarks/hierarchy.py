"""The paper's two-stage hierarchy (section 4.2) on ViZDoom frames: does the stage-2 PixelCNN decoder use its 3x1 latents?

On held-out frames (episodes of another seed) it measures
- bits per 21x21 grid of stage-1 codes under the stage-2 decoder given the grid's 3x1 stage-2 codes, against an
  unconditional gated PixelCNN of the same size trained on the same batches for the same steps: the difference is
  the information the 3x1 codes carry (at most 3 x log2(K) = 27 bits for K = 512), the paper's "no posterior
  collapse" as a number;
- stage-2 code usage (distinct codes and perplexity on the held-out grids);
- the stage-1 PSNR;
- the time to sample a batch of frames through the whole pipeline (top prior -> cached stage-2 decoder -> stage-1
  decoder) and of the cached stage-2 decoder alone (tests/test_hierarchy.py checks that it draws the codes the plain
  sampler draws);
- a grid image: frames, their reconstructions through the 21x21 codes, through the 3x1 codes.

Everything is trained here with plain PyTorch loops (the training scripts add checkpoints, processes and tracking,
not different updates), on models far smaller than the paper's so it runs in minutes on two busy CPU cores.

    python benchmarks/hierarchy.py [--quick] [--output_dir outputs/benchmarks/hierarchy]
"""

import argparse
import math
import os
import time

import numpy as np
import PIL.Image
import torch
from diffusers.utils import make_image_grid

from hf_vqvae import (
    HierarchicalVQVAEConfig,
    HierarchicalVQVAEModel,
    HierarchicalVQVAEPipeline,
    PixelCNNPriorConfig,
    PixelCNNPriorModel,
    VQVAEConfig,
    VQVAEModel,
    render_frames,
)

from machine import describe_machine


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer frames and steps (a smoke run, figures are rougher)")
    parser.add_argument("--train_frames", type=int, default=1200)
    parser.add_argument("--heldout_frames", type=int, default=128)
    parser.add_argument("--stage1_steps", type=int, default=200)
    parser.add_argument("--stage2_steps", type=int, default=150)
    parser.add_argument("--prior_steps", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--sample_batch_size", type=int, default=8)
    parser.add_argument("--output_dir", default="outputs/benchmarks/hierarchy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.train_frames, args.heldout_frames = 400, 64
        args.stage1_steps, args.stage2_steps, args.prior_steps = 60, 60, 40
    return args


def pixel_values(frames) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(frame) for frame in frames])).permute(0, 3, 1, 2).float() / 127.5 - 1


def batches(num_examples: int, batch_size: int, steps: int, seed: int):
    """`steps` batches of indices, reshuffled each epoch from `seed`: the same for every model given the seed."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < batch_size:
            order = torch.cat([order, torch.randperm(num_examples, generator=generator)])
        batch, order = order[:batch_size], order[batch_size:]
        yield batch


def train(model, inputs_of, loss_of, steps: int, batch_size: int, num_examples: int, learning_rate: float, seed: int, name: str) -> float:
    optimizer = torch.optim.Adam([parameter for parameter in model.parameters() if parameter.requires_grad], lr=learning_rate)
    model.train()
    started = time.perf_counter()
    for step, indices in enumerate(batches(num_examples, batch_size, steps, seed)):
        loss = loss_of(model, inputs_of(indices))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % max(1, steps // 4) == 0:
            print(f"  {name} step {step + 1}/{steps}: loss {loss.item():.4f}", flush=True)
    model.eval()
    return time.perf_counter() - started


@torch.no_grad()
def in_batches(function, tensor: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    return torch.cat([function(tensor[start : start + batch_size]) for start in range(0, len(tensor), batch_size)])


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> float:
    mse = ((reconstruction.clamp(-1, 1) - target) / 2).pow(2).mean().item()
    return 10 * math.log10(1 / mse)


def main() -> None:
    args = parse_args()
    print(describe_machine())
    torch.manual_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)

    started = time.perf_counter()
    train_frames = pixel_values(render_frames(args.train_frames, resolution=84, seed=args.seed)["image"])
    heldout_frames = pixel_values(render_frames(args.heldout_frames, resolution=84, seed=args.seed + 1)["image"])
    print(f"rendered {len(train_frames)} training and {len(heldout_frames)} held-out 84x84 frames in {time.perf_counter() - started:.1f} s")

    # Stage 1: the dmlab84 preset (84 -> 21x21, K = 512) with narrower convolutions.
    vqvae = VQVAEModel(VQVAEConfig.from_preset("dmlab84", hidden_channels=32, residual_channels=16))
    seconds = train(
        vqvae, lambda indices: train_frames[indices], lambda model, frames: model(frames).loss,
        args.stage1_steps, args.batch_size, len(train_frames), 1e-3, args.seed, "stage 1",
    )
    stage1_psnr = psnr(in_batches(lambda frames: vqvae(frames).reconstruction, heldout_frames), heldout_frames)
    train_codes = in_batches(lambda frames: vqvae.encode(frames).indices, train_frames)
    heldout_codes = in_batches(lambda frames: vqvae.encode(frames).indices, heldout_frames)
    print(f"stage 1: {args.stage1_steps} steps in {seconds:.0f} s, held-out PSNR {stage1_psnr:.2f} dB, "
          f"{len(heldout_codes.unique())} of 512 codes used")

    # Stage 2 and its unconditional twin: the same gated PixelCNN (size, seed of the batches, steps, learning rate).
    decoder = dict(hidden_channels=32, num_layers=4, kernel_size=5, skip_channels=64)
    stage2 = HierarchicalVQVAEModel(HierarchicalVQVAEConfig(
        encoder_hidden_channels=32, conditioning_channels=32, decoder_hidden_channels=decoder["hidden_channels"],
        decoder_num_layers=decoder["num_layers"], decoder_kernel_size=decoder["kernel_size"],
        decoder_skip_channels=decoder["skip_channels"],
    ))
    unconditional = PixelCNNPriorModel(PixelCNNPriorConfig(num_embeddings=512, grid_height=21, grid_width=21, **decoder))
    stage2_seconds = train(
        stage2, lambda indices: train_codes[indices], lambda model, codes: model(codes).loss,
        args.stage2_steps, args.batch_size, len(train_codes), 1e-3, args.seed, "stage 2",
    )
    unconditional_seconds = train(
        unconditional, lambda indices: train_codes[indices], lambda model, codes: model(codes, labels=codes).loss,
        args.stage2_steps, args.batch_size, len(train_codes), 1e-3, args.seed, "unconditional PixelCNN",
    )
    conditional_bits = in_batches(stage2.bits_per_grid, heldout_codes).mean().item()
    unconditional_bits = (in_batches(unconditional.bits_per_code, heldout_codes) * 441).mean().item()
    heldout_latents = in_batches(lambda codes: stage2.encode(codes).indices, heldout_codes)
    counts = torch.bincount(heldout_latents.flatten(), minlength=512).double()
    probabilities = counts[counts > 0] / counts.sum()
    perplexity = math.exp(-(probabilities * probabilities.log()).sum().item())
    latent_bits = 3 * math.log2(512)

    # The top prior over the 3x1 codes, then sampling through the whole hierarchy.
    train_latents = in_batches(lambda codes: stage2.encode(codes).indices, train_codes)
    prior = PixelCNNPriorModel(PixelCNNPriorConfig(num_embeddings=512, grid_height=3, grid_width=1, **decoder))
    train(
        prior, lambda indices: train_latents[indices], lambda model, codes: model(codes, labels=codes).loss,
        args.prior_steps, args.batch_size, len(train_latents), 1e-3, args.seed, "top prior",
    )
    top_prior_bits = (in_batches(prior.bits_per_code, heldout_latents) * 3).mean().item()
    pipeline = HierarchicalVQVAEPipeline(vqvae=vqvae, stage2=stage2, prior=prior)
    pipeline.set_progress_bar_config(disable=True)
    pipeline(batch_size=1, generator=torch.Generator().manual_seed(0))  # warm-up
    started = time.perf_counter()
    samples = pipeline(batch_size=args.sample_batch_size, generator=torch.Generator().manual_seed(0)).images
    pipeline_seconds = time.perf_counter() - started
    latents = heldout_latents[: args.sample_batch_size]
    started = time.perf_counter()
    stage2.sample(latents, generator=torch.Generator().manual_seed(0))
    cached_seconds = time.perf_counter() - started

    # Frames, through the 21x21 codes, through the 3x1 codes.
    shown = heldout_frames[:8]
    through_stage1 = pipeline.image_processor.postprocess(vqvae.decode(heldout_codes[:8]).reconstruction)
    through_stage2 = pipeline(image=shown, generator=torch.Generator().manual_seed(0)).images
    originals = pipeline.image_processor.postprocess(shown)
    grid_path = os.path.join(args.output_dir, "hierarchy_reconstructions.png")
    make_image_grid([*originals, *through_stage1, *through_stage2], rows=3, cols=8).save(grid_path)
    make_image_grid(samples, rows=1, cols=len(samples)).save(os.path.join(args.output_dir, "hierarchy_samples.png"))

    print()
    print(f"| measure (held-out frames, seed {args.seed + 1}) | value |")
    print("| --- | --- |")
    print(f"| stage-1 PSNR (84x84 -> 21x21 codes, K=512) | {stage1_psnr:.2f} dB |")
    print(f"| bits per 21x21 grid, unconditional PixelCNN | {unconditional_bits:.1f} |")
    print(f"| bits per 21x21 grid, stage-2 decoder given the 3x1 codes | {conditional_bits:.1f} |")
    print(f"| gain from the 3x1 codes: unconditional - conditional (0 = posterior collapse) | {unconditional_bits - conditional_bits:.1f} bits |")
    print(f"| entropy of the 3x1 codes on held-out grids, 3 x log2(perplexity) (at most {latent_bits:.0f}) | {3 * math.log2(perplexity):.1f} bits |")
    print(f"| bits of the 3x1 codes under the top prior | {top_prior_bits:.1f} |")
    print(f"| two-stage bits per frame (top prior + decoder) / unconditional | {(top_prior_bits + conditional_bits) / unconditional_bits:.3f} |")
    print(f"| stage-2 codes used on {len(heldout_latents)} held-out grids | {int((counts > 0).sum())} of 512 (perplexity per position {perplexity:.1f}) |")
    print(f"| training time stage 2 / unconditional ({args.stage2_steps} steps each) | {stage2_seconds:.0f} s / {unconditional_seconds:.0f} s |")
    print(f"| sampling {args.sample_batch_size} frames through the pipeline (cached) | {pipeline_seconds:.2f} s |")
    print(f"| stage-2 decoder alone, {args.sample_batch_size} grids of 21x21 (cached) | {cached_seconds:.2f} s |")
    print(f"\ngrid image (frames / through 21x21 / through 3x1): {grid_path}")


if __name__ == "__main__":
    main()
