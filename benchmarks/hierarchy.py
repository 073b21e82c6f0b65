"""The paper's two-stage hierarchy (section 4.2): do the 3x1 codes carry their frame?

It evaluates the models the README's hierarchy commands train (stage-1 VQ-VAE, stage 2, top prior: the
`HierarchicalVQVAEPipeline` that `train_prior.py` writes) next to a same-size PixelCNN trained on the same stage-1 codes
for the same steps with stage 2's learning-rate schedule (`train_prior.py --lr_scheduler constant`) without latents
(`--baseline`), on held-out frames of several kinds: the validation episodes of the training data set, and frames of
other ViZDoom scenarios (other maps, textures, monsters) rendered here. For each:

- bits per 21x21 grid of stage-1 codes under the stage-2 decoder given each grid's own 3x1 codes, and given another
  grid's (a random derangement of the set: every grid gets codes that are not its own). The difference is what the
  decoder gets from a grid's own codes over any frame's codes;
- the codes' held-out entropy, estimated by the top prior's cross-entropy on the set (bits per 3x1 tuple). A
  cross-entropy is at least the entropy of the distribution it is measured on, so "difference >= half of it" is a
  conservative test; the plug-in entropy of the tuples (their empirical frequencies) is printed beside it: it is
  biased low (it cannot exceed log2 of the number of grids, and unseen tuples count for nothing);
- bits per frame of the whole two-stage model (top prior + decoder) against the same-size PixelCNN without latents:
  the latents pay for themselves only if the first is lower;
- the pipeline's round trip (`pipeline(image=frames)`: stage-1 codes, 3x1 codes, 21x21 codes sampled back by the
  decoder, pixels): PSNR of each result against its own source frame and against another frame of the set (the same
  derangement), and the stage-1 PSNR (frames through the 21x21 codes) for scale.

    python benchmarks/hierarchy.py --pipeline outputs/world-prior/pipeline --baseline outputs/world-plain \
        --dataset_name outputs/world-frames [--scenarios defend_the_center health_gathering ...]

docs/hierarchy.md gives the commands that train the models, and docs/benchmarks.md the figures.
"""

import argparse
import math
import os
import time

import numpy as np
import torch
from datasets import load_from_disk
from diffusers.utils import make_image_grid

from hf_vqvae import HierarchicalVQVAEPipeline, PixelCNNPriorModel, render_frames

from machine import describe_machine


# Other maps, textures and lighting than the training scenario (my_way_home); the steps per episode each one allows
# before its episodes end (a monster or the goal).
DEFAULT_SCENARIOS = {
    "defend_the_center": 100, "health_gathering": 100, "freedoom2": 30, "defend_the_line": 30, "take_cover": 30,
    "predict_position": 20, "basic": 20,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="A HierarchicalVQVAEPipeline folder (train_prior.py writes <output_dir>/pipeline).")
    parser.add_argument("--baseline", required=True, help="A PixelCNNPriorModel folder trained on the same stage-1 codes without latents.")
    parser.add_argument("--dataset_name", help="The frames data set the models were trained on; its validation split is held out.")
    parser.add_argument("--validation_split", default="validation")
    parser.add_argument("--scenarios", nargs="*", default=list(DEFAULT_SCENARIOS), help="Other ViZDoom scenarios to render and test on (default: %(default)s).")
    parser.add_argument("--frames_per_set", type=int, default=256, help="Held-out frames per set (default: %(default)s).")
    parser.add_argument("--round_trip_frames", type=int, default=64, help="Frames per set sent through the pipeline's round trip (default: %(default)s).")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the derangements, the round trips' sampling and the rendering (default: %(default)s).")
    parser.add_argument("--num_threads", type=int, default=None, help="torch threads (default: torch's).")
    parser.add_argument("--output_dir", default="outputs/benchmarks/hierarchy", help="Where the round-trip image goes (default: %(default)s).")
    return parser.parse_args(argv)


def derangement(count: int, seed: int) -> torch.Tensor:
    """A random permutation with no fixed point: grid i gets the codes of grid other[i], the next one in a random
    cycle through the set."""
    if count < 2:
        raise ValueError(f"shuffling needs at least 2 grids, got {count}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    other = torch.empty_like(order)
    other[order] = order.roll(1)
    return other


@torch.no_grad()
def in_batches(function, *tensors: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    return torch.cat([function(*(tensor[start : start + batch_size] for tensor in tensors)) for start in range(0, len(tensors[0]), batch_size)])


def plug_in_entropy(tuples: torch.Tensor) -> float:
    """Entropy in bits of the empirical distribution of the rows of `tuples` (N, ...)."""
    _, counts = torch.unique(tuples.flatten(1), dim=0, return_counts=True)
    probabilities = counts.double() / counts.sum()
    return float(-(probabilities * probabilities.log2()).sum()) + 0.0  # + 0.0: one tuple gives 0, not -0


def psnr(images: torch.Tensor, targets: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1] against targets in [0, 1], over the whole set."""
    mse = (images.float() - targets.float()).pow(2).mean().item()
    return 10 * math.log10(1 / mse)


@torch.no_grad()
def latent_information(stage2, prior, baseline, stage1_codes: torch.Tensor, seed: int) -> dict:
    """What a set of stage-1 grids' own 3x1 codes carry: bits per grid with own and another grid's codes, the codes'
    entropy (top prior cross-entropy and plug-in), and bits per frame of the two-stage model and of the baseline."""
    latents = in_batches(lambda codes: stage2.encode(codes).indices, stage1_codes)
    other = derangement(len(stage1_codes), seed)
    own = in_batches(stage2.bits_per_grid, stage1_codes, latents).mean().item()
    shuffled = in_batches(stage2.bits_per_grid, stage1_codes, latents[other]).mean().item()
    latent_cross_entropy = (in_batches(prior.bits_per_code, latents) * latents[0].numel()).mean().item()
    plain = (in_batches(baseline.bits_per_code, stage1_codes) * stage1_codes[0].numel()).mean().item()
    return {
        "grids": len(stage1_codes),
        "own": own,
        "shuffled": shuffled,
        "difference": shuffled - own,
        "latent_cross_entropy": latent_cross_entropy,
        "latent_plug_in_entropy": plug_in_entropy(latents),
        "distinct_tuples": len(torch.unique(latents.flatten(1), dim=0)),
        "two_stage": latent_cross_entropy + own,
        "plain": plain,
    }


@torch.no_grad()
def round_trip(pipeline: HierarchicalVQVAEPipeline, pixel_values: torch.Tensor, seed: int) -> tuple[dict, torch.Tensor]:
    """PSNR of frames sent through both stages against their own source and against another frame, and the stage-1
    PSNR; returns the figures and the round-tripped frames in [0, 1]."""
    sources = (pixel_values / 2 + 0.5).clamp(0, 1)
    through_stage1 = in_batches(lambda frames: pipeline.vqvae(frames).reconstruction, pixel_values)
    through_both = pipeline(image=pixel_values, generator=torch.Generator().manual_seed(seed), output_type="pt").images
    other = derangement(len(pixel_values), seed + 1)
    figures = {
        "psnr_own": psnr(through_both, sources),
        "psnr_other": psnr(through_both, sources[other]),
        "psnr_stage1": psnr((through_stage1 / 2 + 0.5).clamp(0, 1), sources),
    }
    return figures, through_both


def pixel_values_of(pipeline: HierarchicalVQVAEPipeline, images) -> torch.Tensor:
    return pipeline.image_processor(list(images), return_tensors="pt")["pixel_values"]


def held_out_sets(args, pipeline) -> dict:
    """name -> (pixel values, description)."""
    sets = {}
    resolution = pipeline.vqvae.config.sample_size
    if args.dataset_name:
        split = load_from_disk(args.dataset_name)[args.validation_split]
        split = split.select(range(min(args.frames_per_set, len(split))))
        sets["validation episodes"] = pixel_values_of(pipeline, split["image"])
    for scenario in args.scenarios:
        frames = render_frames(
            args.frames_per_set, resolution=resolution, seed=args.seed + 2, scenario=scenario,
            steps_per_episode=DEFAULT_SCENARIOS.get(scenario, 30),
        )
        sets[scenario] = pixel_values_of(pipeline, frames["image"])
    return sets


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    print(describe_machine())
    pipeline = HierarchicalVQVAEPipeline.from_pretrained(args.pipeline)
    pipeline.set_progress_bar_config(disable=True)
    baseline = PixelCNNPriorModel.from_pretrained(args.baseline).eval()
    stage2, prior = pipeline.stage2, pipeline.prior
    decoder = {name: getattr(stage2.config, f"decoder_{name}") for name in ("hidden_channels", "num_layers", "kernel_size", "skip_channels")}
    peer = {name: getattr(baseline.config, name) for name in decoder}
    print(f"stage-2 decoder {decoder}; baseline PixelCNN {peer}{'' if decoder == peer else '  (NOT the same size)'}")

    started = time.perf_counter()
    sets = held_out_sets(args, pipeline)
    print(f"{sum(len(frames) for frames in sets.values())} held-out frames in {len(sets)} sets ({time.perf_counter() - started:.0f} s)")

    rows, strips = [], []
    for name, pixel_values in sets.items():
        stage1_codes = in_batches(lambda frames: pipeline.vqvae.encode(frames).indices, pixel_values)
        figures = latent_information(stage2, prior, baseline, stage1_codes, args.seed)
        shown = pixel_values[: args.round_trip_frames]
        round_trip_figures, through_both = round_trip(pipeline, shown, args.seed)
        rows.append((name, {**figures, **round_trip_figures}))
        strips.append((pixel_values[:6] / 2 + 0.5).clamp(0, 1))
        strips.append(through_both[:6])
        print(f"  {name}: done", flush=True)

    print()
    print("| held-out set | grids | bits/grid, own 3x1 codes | another grid's | difference | codes' entropy: top prior CE (plug-in) "
          "| difference / entropy | bits/frame: two-stage | same-size PixelCNN | two-stage - PixelCNN | round-trip PSNR vs own / other frame | stage-1 PSNR |")
    print("| --- |" + " --- |" * 11)
    for name, row in rows:
        print(
            f"| {name} | {row['grids']} | {row['own']:.1f} | {row['shuffled']:.1f} | {row['difference']:.1f} "
            f"| {row['latent_cross_entropy']:.1f} ({row['latent_plug_in_entropy']:.1f}) | {row['difference'] / row['latent_cross_entropy']:.2f} "
            f"| {row['two_stage']:.1f} | {row['plain']:.1f} | {row['two_stage'] - row['plain']:+.1f} "
            f"| {row['psnr_own']:.2f} / {row['psnr_other']:.2f} dB | {row['psnr_stage1']:.2f} dB |"
        )
    print()
    for name, row in rows:
        half = row["difference"] >= 0.5 * row["latent_cross_entropy"]
        cheaper = row["two_stage"] < row["plain"]
        closer = row["psnr_own"] > row["psnr_other"]
        print(f"{name}: difference >= half the entropy: {half}; two-stage cheaper than the PixelCNN: {cheaper}; "
              f"round trip closer to its own frame: {closer}")

    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "hierarchy_round_trips.png")
    images = pipeline.image_processor.postprocess(torch.cat(strips) * 2 - 1)
    make_image_grid(images, rows=len(strips), cols=6).save(path)
    print(f"\nframes and their round trips through the 3x1 codes, one pair of rows per set: {path}")


if __name__ == "__main__":
    main()
