"""Do a class-conditional `VQVAEPipeline`'s samples follow their class's data? Per class, on the crops the prior was
trained on (by default the embedded scikit-image crops, one class per photograph, at the VQ-VAE's resolution):

- the mean intensity (0-255, over pixels and channels) of the class's crops, of their reconstructions through the
  VQ-VAE (what decoding the data's own codes gives: the VQ-VAE's share of any difference), and of the pipeline's
  samples for that class (over several seeds, each seed's mean shown too); the difference samples - crops;
- the KL divergence KL(data || samples) in nats from the unigram distribution of the class's data codes to that of
  its sampled codes, next to two references measured in the same run: the same KL for as many grids drawn at random
  from the class's own data codes (the floor a perfect sampler reaches with this many grids), and for the samples
  of the closest other class (what samples that ignored the label could reach at best);
- that the plain sampler (the whole network per position) draws the codes of the cached one with the same seed;
- with `--checkpoints`, each class's difference with the weights of each checkpoint of the prior's run (train it with
  `--checkpointing_steps 100 --checkpoints_total_limit 20` to see how the figures move along a run).

A sampled unigram gets add-half smoothing (every code counted 0.5 more) so that a code the samples never drew costs a
finite amount; the floor is smoothed the same way.

    python benchmarks/class_conditional_samples.py --pipeline outputs/prior/pipeline
    python benchmarks/class_conditional_samples.py --pipeline outputs/prior/pipeline --temperature 0.7 1.0 1.3
    python benchmarks/class_conditional_samples.py --pipeline outputs/prior/pipeline --checkpoints outputs/prior/checkpoint-*
"""

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from hf_vqvae import VQVAEPipeline
from hf_vqvae.data.images import ImageDataArguments, ImageTransform, decode_image, load_image_datasets
from hf_vqvae.pipelines.pipeline_vqvae import image_processor_of

from machine import describe_machine


# The largest difference (0-255) between a class's sample mean and its crops' mean that issue 21 accepts.
INTENSITY_TARGET = 20.0
SMOOTHING = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="a class-conditional VQVAEPipeline folder or Hub id")
    parser.add_argument(
        "--dataset_name", default=None, help="the image data set the prior was trained on (default: the embedded crops)"
    )
    parser.add_argument("--train_data_dir", default=None)
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--split", choices=("train", "validation"), default="train", help="whose crops are compared")
    parser.add_argument("--split_seed", type=int, default=0, help="the prior run's --seed, which picks the held-out crops")
    parser.add_argument("--samples_per_seed", type=int, default=32, help="samples per class and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--temperature", type=float, nargs="+", default=[1.0], help="one table per value")
    parser.add_argument("--plain_check_grids", type=int, default=4, help="grids per class drawn by both samplers")
    parser.add_argument(
        "--checkpoints", nargs="+", default=[], help="checkpoint folders of the prior's run: the differences with each"
    )
    parser.add_argument("--num_threads", type=int, default=1)
    return parser.parse_args()


def code_counts(codes: torch.Tensor, num_embeddings: int) -> np.ndarray:
    """How often each code occurs in `codes` (any shape)."""
    return np.bincount(codes.reshape(-1).cpu().numpy(), minlength=num_embeddings).astype(np.float64)


def unigram_kl(data_counts: np.ndarray, sample_counts: np.ndarray, smoothing: float = SMOOTHING) -> float:
    """KL(p || q) in nats, p the data's code frequencies, q the samples' with `smoothing` added to every count."""
    p = data_counts / data_counts.sum()
    q = (sample_counts + smoothing) / (sample_counts.sum() + smoothing * len(sample_counts))
    seen = p > 0
    return float(np.sum(p[seen] * np.log(p[seen] / q[seen])))


def mean_intensity(pixel_values: torch.Tensor) -> float:
    """Mean of pixel values in [-1, 1] on the 0-255 scale."""
    return float(((pixel_values.clamp(-1, 1) + 1) * 127.5).mean())


@dataclass
class ClassData:
    """The compared crops: pixel values in [-1, 1], class labels, the VQ-VAE's codes and reconstructions of them."""

    pixel_values: torch.Tensor
    labels: torch.Tensor
    codes: torch.Tensor
    reconstructions: torch.Tensor


@torch.no_grad()
def load_class_data(args: argparse.Namespace, pipeline: VQVAEPipeline, batch_size: int = 256) -> ClassData:
    """The split's images center-cropped at the VQ-VAE's resolution (as the prior's codes were made), encoded and
    decoded by the VQ-VAE."""
    data_arguments = ImageDataArguments(
        dataset_name=args.dataset_name, train_data_dir=args.train_data_dir, image_column=args.image_column,
        label_column=args.label_column, resolution=pipeline.vqvae.config.sample_size,
    )
    datasets = load_image_datasets(data_arguments, seed=args.split_seed)
    split = datasets.train if args.split == "train" else datasets.validation
    transform = ImageTransform(image_processor_of(pipeline), center_crop=True)
    pixel_values = torch.stack([transform(decode_image(row[args.image_column])) for row in split])
    codes = torch.cat([
        pipeline.vqvae.encode(pixel_values[start : start + batch_size]).indices
        for start in range(0, len(pixel_values), batch_size)
    ])  # fmt: skip
    reconstructions = torch.cat([
        pipeline.vqvae.decode(codes[start : start + batch_size]).reconstruction
        for start in range(0, len(codes), batch_size)
    ])  # fmt: skip
    return ClassData(pixel_values, torch.tensor(split[args.label_column]), codes, reconstructions)


@dataclass
class ClassStatistics:
    name: str
    crops: int
    crop_mean: float
    reconstruction_mean: float
    seed_means: list[float]  # the samples' mean intensity, one per seed
    kl: float  # KL(data || samples)
    kl_floor: float  # KL(data || as many of the class's own data grids, drawn at random)
    kl_other: float  # KL(data || the samples of the closest other class)

    @property
    def sample_mean(self) -> float:
        return float(np.mean(self.seed_means))

    @property
    def difference(self) -> float:
        return self.sample_mean - self.crop_mean


@torch.no_grad()
def class_statistics(
    pipeline: VQVAEPipeline, data: ClassData, seeds: list[int], samples_per_seed: int, temperature: float
) -> list[ClassStatistics]:
    """Every class's figures (classes without crops are left out)."""
    config = pipeline.prior.config
    sampled_codes, seed_means = {}, {}
    for label in range(config.num_classes):
        codes, means = [], []
        for seed in seeds:
            output = pipeline(
                batch_size=samples_per_seed, class_labels=label, temperature=temperature,
                generator=torch.Generator().manual_seed(seed), output_type="pt",
            )  # fmt: skip
            codes.append(output.codes)
            means.append(mean_intensity(output.images * 2 - 1))
        sampled_codes[label], seed_means[label] = torch.cat(codes), means
    sample_counts = {label: code_counts(codes, config.num_embeddings) for label, codes in sampled_codes.items()}
    rng = np.random.default_rng(0)
    statistics = []
    for label in range(config.num_classes):
        member = data.labels == label
        if not member.any():
            continue
        class_codes = data.codes[member]
        data_counts = code_counts(class_codes, config.num_embeddings)
        as_many_data_grids = class_codes[rng.integers(len(class_codes), size=len(sampled_codes[label]))]
        others = [other for other in range(config.num_classes) if other != label]
        statistics.append(ClassStatistics(
            name=str((config.id2label or {}).get(label, label)), crops=int(member.sum()),
            crop_mean=mean_intensity(data.pixel_values[member]),
            reconstruction_mean=mean_intensity(data.reconstructions[member]), seed_means=seed_means[label],
            kl=unigram_kl(data_counts, sample_counts[label]),
            kl_floor=unigram_kl(data_counts, code_counts(as_many_data_grids, config.num_embeddings)),
            kl_other=min(unigram_kl(data_counts, sample_counts[other]) for other in others),
        ))  # fmt: skip
    return statistics


def print_table(statistics: list[ClassStatistics]) -> None:
    print("| class | crops | crop mean | recon mean | sample mean | per seed | sample - crop | KL(data‖samples) | "
          "KL floor (data grids) | KL, closest other class's samples |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for item in statistics:
        seeds = " ".join(f"{mean:.0f}" for mean in item.seed_means)
        print(f"| {item.name} | {item.crops} | {item.crop_mean:.1f} | {item.reconstruction_mean:.1f} | "
              f"{item.sample_mean:.1f} | {seeds} | {item.difference:+.1f} | {item.kl:.3f} | {item.kl_floor:.3f} | "
              f"{item.kl_other:.3f} |")
    worst = max(statistics, key=lambda item: abs(item.difference))
    beyond = sum(abs(item.difference) > INTENSITY_TARGET for item in statistics)
    kls = [item.kl for item in statistics]
    closer = sum(item.kl < item.kl_other for item in statistics)
    print(f"\nlargest |sample - crop|: {abs(worst.difference):.1f} ({worst.name}); classes beyond {INTENSITY_TARGET:g} "
          f"levels: {beyond} of {len(statistics)} (target: 0)")
    print(f"KL(data‖samples): mean {np.mean(kls):.3f}, max {np.max(kls):.3f}; mean floor "
          f"{np.mean([item.kl_floor for item in statistics]):.3f}; own samples closer than every other class's: "
          f"{closer} of {len(statistics)} classes")


def print_checkpoints(args, pipeline: VQVAEPipeline, data: ClassData) -> None:
    """Every class's sample - crop difference with the weights of each checkpoint in turn, then the pipeline's own."""
    own_weights = {name: tensor.clone() for name, tensor in pipeline.prior.state_dict().items()}
    rows = []
    for checkpoint in [*args.checkpoints, None]:
        weights = load_file(Path(checkpoint) / "model.safetensors") if checkpoint else own_weights
        pipeline.prior.load_state_dict(weights)
        statistics = class_statistics(pipeline, data, args.seeds, args.samples_per_seed, temperature=1.0)
        rows.append((Path(checkpoint).name if checkpoint else "pipeline", statistics))
    print(f"\nsample - crop with each checkpoint's weights (temperature 1, seeds {args.seeds}):\n")
    print("| weights | " + " | ".join(item.name for item in statistics) + " | max abs | mean KL |")
    print("| --- |" + " ---: |" * (len(statistics) + 2))
    for name, statistics in rows:
        differences = [item.difference for item in statistics]
        print(f"| {name} | " + " | ".join(f"{difference:+.0f}" for difference in differences)
              + f" | {max(map(abs, differences)):.1f} | {np.mean([item.kl for item in statistics]):.3f} |")


@torch.no_grad()
def check_plain_sampler(pipeline: VQVAEPipeline, grids: int, seed: int) -> None:
    """The plain and the cached sampler draw the same codes from the same seed, for every class (they compute the
    logits in different orders, so a uniform number within float rounding of a CDF boundary may pick a neighbour)."""
    prior = pipeline.prior
    labels = torch.arange(prior.config.num_classes).repeat_interleave(grids)
    cached, plain = (
        prior.sample(len(labels), labels, generator=torch.Generator().manual_seed(seed), use_cache=use_cache)
        for use_cache in (True, False)
    )
    print(f"plain vs cached sampler, seed {seed}, {len(labels)} grids: {int((cached == plain).sum())} of "
          f"{cached.numel()} codes equal")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.num_threads)
    print(describe_machine())
    pipeline = VQVAEPipeline.from_pretrained(args.pipeline)
    pipeline.set_progress_bar_config(disable=True)
    if not pipeline.prior.config.num_classes:
        raise SystemExit(f"error: the prior of {args.pipeline!r} is unconditional (num_classes=0)")
    data = load_class_data(args, pipeline)
    print(f"pipeline {args.pipeline}: {len(data.labels)} {args.split} crops, {pipeline.prior.config.num_classes} classes")
    if args.plain_check_grids:
        check_plain_sampler(pipeline, args.plain_check_grids, args.seeds[0])
    for temperature in args.temperature:
        started = time.perf_counter()
        statistics = class_statistics(pipeline, data, args.seeds, args.samples_per_seed, temperature)
        print(f"\ntemperature {temperature:g}: {args.samples_per_seed} samples per class and seed, seeds {args.seeds} "
              f"({time.perf_counter() - started:.1f} s); intensities 0-255, KL in nats\n")
        print_table(statistics)
    if args.checkpoints:
        print_checkpoints(args, pipeline, data)


if __name__ == "__main__":
    main()
