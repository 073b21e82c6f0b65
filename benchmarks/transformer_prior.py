"""The transformer prior (`TransformerPriorModel`, a Llama through `generate()`) against the gated PixelCNN prior at
about the same parameter count: bits per code on held-out codes after the same training, sampling time per code, and
the effect of classifier-free guidance.

1. Bits per code. Both priors train for `--steps` Adam updates (batch 32, learning rate 1e-3, the same seed) on each
   of two code distributions whose entropy is known, and are scored on held-out grids; the true entropy (the floor)
   and log2 K (a uniform guess) are the controls printed beside them:
   - `noisy-sum`: each code is (left + above) mod K, replaced by a uniform code 10% of the time (local structure, what
     a PixelCNN's receptive field covers);
   - `noisy-template`: one fixed random grid per class (4 classes), each code replaced by a uniform one 70% of the
     time; the class label is given (the class is in every code: a dependence across the whole grid).
2. Sampling time per code of the default-sized priors of `scripts/train_prior.py` (K = 512, 8x8 grids, 15 classes: the
   PixelCNN's 1.56M parameters, the Llama's 1.41M), at batch 1, 4 and 16, by process CPU time at one thread (best of
   `--repeats`): the PixelCNN's cached sampler (compiled step where a C++ compiler exists), the transformer through
   `generate()` with its KV cache, and without the cache (the whole sequence per position).
3. Guidance. The transformer trained on `noisy-template` (label dropout 0.1) samples 256 grids per guidance scale;
   each grid is scored by its agreement with the template of its requested class (share of codes equal to it: the
   data have 0.7/K + 0.3 = 0.34 at K = 16, a grid unrelated to the class 1/K = 0.06) and by the true posterior's
   class (class match). Guidance 0 (the unconditional model) is the control.

`--data default` measures bits per code on real codes instead: those of a VQ-VAE (`--vqvae PATH`, else one trained
here for `--vqvae_steps` updates by `scripts/train.py`'s recipe) on the default data set (scikit-image crops, one
class per photograph), scored on its validation split. The default-sized priors of `scripts/train_prior.py` train for
`--steps` updates of 32 grids at 1e-3 decayed to 0 along a cosine (that script's schedule), same seed, without and
with the class labels. No true entropy is known for real codes; the controls are log2 K (a uniform guess), the
held-out codes' cost under the training codes' unigram (no context: what a prior must beat), the per-class unigram
for the class-conditional priors, and each class-conditional prior scored with the held-out labels shuffled (the same
model denied its label: what the label is worth to it).

    python benchmarks/transformer_prior.py [--steps 400] [--repeats 2] [--skip_speed]
    python benchmarks/transformer_prior.py --data default [--vqvae outputs/vqvae] [--vqvae_steps 400] [--steps 400]
"""

import argparse
import math
import os
import sys
import tempfile
import time

import torch
from accelerate import Accelerator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe_machine  # noqa: E402

from hf_vqvae import PixelCNNPriorConfig, PixelCNNPriorModel, TransformerPriorConfig, TransformerPriorModel  # noqa: E402
from hf_vqvae.data.codes import CODES_COLUMN, LABEL_COLUMN  # noqa: E402
from hf_vqvae.data.encoding import encode_image_dataset  # noqa: E402
from hf_vqvae.data.images import ImageDataArguments  # noqa: E402
from hf_vqvae.models.auto import load_vqvae  # noqa: E402
from hf_vqvae.training.recipes.vqvae import parse_args as parse_vqvae_args  # noqa: E402
from hf_vqvae.training.recipes.vqvae import train_vqvae  # noqa: E402


K, SIZE, CLASSES = 16, 8, 4
SUM_NOISE, TEMPLATE_NOISE = 0.1, 0.7

# About 0.16M parameters each at K = 16 (printed by the run).
SMALL_PIXELCNN = dict(hidden_channels=24, num_layers=6, kernel_size=5, skip_channels=48)
SMALL_LLAMA = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4)
# scripts/train_prior.py's defaults.
DEFAULT_PIXELCNN = dict(hidden_channels=64, num_layers=8, kernel_size=5, skip_channels=128)
DEFAULT_LLAMA = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=6, num_attention_heads=4)


def noisy_code_entropy(noise: float) -> float:
    """Entropy in bits of a code that is a known value, replaced by a uniform code with probability `noise`."""
    kept, other = 1 - noise + noise / K, noise / K
    return -(kept * math.log2(kept) + (K - 1) * other * math.log2(other))


def noisy_sum(count: int, generator: torch.Generator) -> tuple[torch.Tensor, None, float]:
    grids = torch.zeros(count, SIZE, SIZE, dtype=torch.long)
    for row in range(SIZE):
        for column in range(SIZE):
            left = grids[:, row, column - 1] if column else 0
            above = grids[:, row - 1, column] if row else 0
            uniform = torch.randint(K, (count,), generator=generator)
            keep = torch.rand(count, generator=generator) >= SUM_NOISE
            grids[:, row, column] = uniform if row == column == 0 else torch.where(keep, (left + above) % K, uniform)
    entropy = (math.log2(K) + (SIZE * SIZE - 1) * noisy_code_entropy(SUM_NOISE)) / (SIZE * SIZE)
    return grids, None, entropy


TEMPLATES = torch.randint(K, (CLASSES, SIZE, SIZE), generator=torch.Generator().manual_seed(1234))


def noisy_template(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    labels = torch.randint(CLASSES, (count,), generator=generator)
    uniform = torch.randint(K, (count, SIZE, SIZE), generator=generator)
    keep = torch.rand(count, SIZE, SIZE, generator=generator) >= TEMPLATE_NOISE
    return torch.where(keep, TEMPLATES[labels], uniform), labels, noisy_code_entropy(TEMPLATE_NOISE)


def template_posterior_class(grids: torch.Tensor) -> torch.Tensor:
    """The most likely class of each grid under the true distribution: the template it agrees with most."""
    return (grids[:, None] == TEMPLATES[None]).flatten(2).sum(2).argmax(1)


def build(kind: str, num_classes: int, architecture: dict, num_embeddings: int = K, size: int = SIZE, dropout=0.1):
    torch.manual_seed(0)
    grid = dict(num_embeddings=num_embeddings, grid_height=size, grid_width=size, num_classes=num_classes)
    if kind == "pixelcnn":
        return PixelCNNPriorModel(PixelCNNPriorConfig(**grid, **architecture))
    return TransformerPriorModel(TransformerPriorConfig(**grid, class_dropout_prob=dropout, decoder_config=architecture))


def parameters(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def train(model, grids, labels, steps: int, learning_rate: float = 1e-3, cosine: bool = False):
    """`steps` Adam updates of 32 random grids at `learning_rate`, decayed to 0 along a cosine when `cosine`."""
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if cosine else None
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        batch = torch.randint(len(grids), (32,), generator=generator)
        loss = model(grids[batch], None if labels is None else labels[batch], labels=grids[batch]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
    return model.eval()


def held_out_bits(model, grids, labels) -> float:
    return model.bits_per_code(grids, labels).mean().item()


def default_data_codes(vqvae: str | None, vqvae_steps: int, work_dir: str) -> tuple[dict, int]:
    """The train and validation codes (and photograph labels) of the default crops under `vqvae`, or under a VQ-VAE
    trained here for `vqvae_steps` updates with scripts/train.py's defaults; and the number of codes K."""
    if vqvae is None:
        vqvae = os.path.join(work_dir, "vqvae")
        started = time.process_time()
        flags = ["--output_dir", vqvae, "--max_train_steps", str(vqvae_steps), "--report_to", "none"]
        train_vqvae(parse_vqvae_args(flags))
        print(f"  trained a VQ-VAE for {vqvae_steps} updates in {time.process_time() - started:.0f} s CPU", flush=True)
    model, processor = load_vqvae(vqvae)
    # The splits scripts/train_prior.py --vqvae trains and validates on.
    splits, _ = encode_image_dataset(
        ImageDataArguments(resolution=None), model, processor, Accelerator(cpu=True), batch_size=64
    )
    codes = {}
    for name, split in splits.items():
        columns = split.with_format("torch")[:]
        codes[name] = columns[CODES_COLUMN].long(), columns[LABEL_COLUMN].long()
    return codes, model.config.code_layout.prior_num_embeddings


def unigram_bits(train_grids: torch.Tensor, test_grids: torch.Tensor, num_embeddings: int) -> float:
    """Bits per code of `test_grids` under the code frequencies of `train_grids` (each count plus 0.5, so a code
    unseen in training costs a finite amount)."""
    counts = torch.bincount(train_grids.flatten(), minlength=num_embeddings).double() + 0.5
    return -torch.log2(counts / counts.sum())[test_grids.flatten()].mean().item()


def class_unigram_bits(train, test, num_embeddings: int) -> float:
    """`unigram_bits` with one unigram per class: each held-out grid under its own class's code frequencies."""
    (train_grids, train_labels), (test_grids, test_labels) = train, test
    total = 0.0
    for label in test_labels.unique():
        grids = test_grids[test_labels == label]
        total += unigram_bits(train_grids[train_labels == label], grids, num_embeddings) * grids.numel()
    return total / test_grids.numel()


def default_data_bits(args) -> None:
    """Section 1 on the codes of the default data set (`--data default`)."""
    print(f"\n1. held-out bits per code on the default data set's codes, {args.steps} updates of 32 grids each")
    with tempfile.TemporaryDirectory() as work_dir:
        codes, num_embeddings = default_data_codes(args.vqvae, args.vqvae_steps, work_dir)
    (train_grids, train_labels), (test_grids, test_labels) = codes["train"], codes["validation"]
    size = train_grids.shape[-1]
    num_classes = int(train_labels.max()) + 1
    print(f"  codes: {len(train_grids)} train / {len(test_grids)} validation grids of {size}x{size}, K = "
          f"{num_embeddings} ({train_grids.unique().numel()} used in training), {num_classes} classes")
    uniform = math.log2(num_embeddings)
    unigram = unigram_bits(train_grids, test_grids, num_embeddings)
    class_unigram = class_unigram_bits(codes["train"], codes["validation"], num_embeddings)
    print(f"  controls: uniform {uniform:.3f}, unigram {unigram:.3f}, per-class unigram {class_unigram:.3f}")
    shuffled_labels = test_labels[torch.randperm(len(test_labels), generator=torch.Generator().manual_seed(0))]
    for conditioning, classes in (("unconditional", 0), ("class-conditional", num_classes)):
        labels, held_out_labels = (train_labels, test_labels) if classes else (None, None)
        bits = {}
        for kind, architecture in (("pixelcnn", DEFAULT_PIXELCNN), ("transformer", DEFAULT_LLAMA)):
            learning_rate = args.transformer_learning_rate if kind == "transformer" else 1e-3
            model = build(kind, classes, architecture, num_embeddings=num_embeddings, size=size)
            started = time.process_time()
            train(model, train_grids, labels, args.steps, learning_rate=learning_rate, cosine=True)
            seconds = time.process_time() - started
            with torch.no_grad():
                bits[kind] = held_out_bits(model, test_grids, held_out_labels)
                denied = f", labels shuffled {held_out_bits(model, test_grids, shuffled_labels):.3f}" if classes else ""
            control = class_unigram if classes else unigram
            print(f"  {conditioning:17s} {kind:11s} ({parameters(model) / 1e6:.2f}M params, lr {learning_rate:g}, "
                  f"{seconds:.0f} s CPU): {bits[kind]:.3f} ({bits[kind] / control:.3f}x the "
                  f"{'per-class ' if classes else ''}unigram{denied})", flush=True)
        print(f"  {conditioning}: transformer - pixelcnn = {bits['transformer'] - bits['pixelcnn']:+.3f} bits per code "
              f"(ratio {bits['transformer'] / bits['pixelcnn']:.3f})")


def cpu_seconds(function, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        started = time.process_time()
        function()
        best = min(best, time.process_time() - started)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip_speed", action="store_true")
    parser.add_argument("--data", choices=("synthetic", "default"), default="synthetic",
                        help="synthetic: all three sections on known distributions; default: bits per code on the "
                        "default data set's VQ-VAE codes only")
    parser.add_argument("--vqvae", default=None, help="with --data default: a trained VQ-VAE (default: train one here)")
    parser.add_argument("--vqvae_steps", type=int, default=400, help="updates of the VQ-VAE trained when --vqvae is absent")
    parser.add_argument("--transformer_learning_rate", type=float, default=1e-3,
                        help="with --data default: the transformer's peak learning rate (the PixelCNN's is 1e-3)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(describe_machine())
    print(f"load average before: {os.getloadavg()}")
    if args.data == "default":
        started = time.process_time()
        default_data_bits(args)
        print(f"\n{time.process_time() - started:.0f} s CPU in all; load average after: {os.getloadavg()}")
        return

    print(f"\n1. held-out bits per code after {args.steps} updates of 32 grids (K = {K}, {SIZE}x{SIZE})")
    trained = {}
    for name, make in (("noisy-sum", noisy_sum), ("noisy-template", noisy_template)):
        train_grids, train_labels, entropy = make(4096, torch.Generator().manual_seed(0))
        test_grids, test_labels, _ = make(512, torch.Generator().manual_seed(1))
        num_classes = 0 if train_labels is None else CLASSES
        row = [f"{name:15s} true entropy {entropy:.3f}, uniform {math.log2(K):.3f}"]
        for kind, architecture in (("pixelcnn", SMALL_PIXELCNN), ("transformer", SMALL_LLAMA)):
            model = build(kind, num_classes, architecture)
            started = time.process_time()
            trained[name, kind] = train(model, train_grids, train_labels, args.steps)
            seconds = time.process_time() - started
            bits = held_out_bits(model, test_grids, test_labels)
            row.append(f"{kind} ({parameters(model) / 1e6:.3f}M params, {seconds:.0f} s CPU): {bits:.3f} "
                       f"(+{bits - entropy:.3f} above the floor)")
        print("\n  ".join(row))

    print("\n3. guidance: the transformer trained on noisy-template, 256 samples per scale (64 per class)")
    model = trained["noisy-template", "transformer"]
    requested = torch.arange(CLASSES).repeat_interleave(64)
    data, data_labels, _ = noisy_template(256, torch.Generator().manual_seed(2))
    agreement = (data == TEMPLATES[data_labels]).float().mean().item()
    match = (template_posterior_class(data) == data_labels).float().mean().item()
    print(f"  held-out data: template agreement {agreement:.3f}, class match {match:.3f} (chance {1 / CLASSES:.3f})")
    for scale in (0.0, 1.0, 2.0, 4.0):
        grids = model.sample(class_labels=requested, guidance_scale=scale, generator=torch.Generator().manual_seed(3))
        agreement = (grids == TEMPLATES[requested]).float().mean().item()
        match = (template_posterior_class(grids) == requested).float().mean().item()
        print(f"  guidance {scale:.0f}: template agreement {agreement:.3f}, class match {match:.3f}")

    if not args.skip_speed:
        print("\n2. sampling: CPU ms per code, one thread, default-sized priors (K = 512, 8x8, 15 classes)")
        pixelcnn = build("pixelcnn", 15, DEFAULT_PIXELCNN, num_embeddings=512).eval()
        transformer = build("transformer", 15, DEFAULT_LLAMA, num_embeddings=512).eval()
        print(f"  parameters: pixelcnn {parameters(pixelcnn) / 1e6:.2f}M, transformer {parameters(transformer) / 1e6:.2f}M")
        pixelcnn.sample(class_labels=[0])  # builds the compiled step once
        for batch_size in (1, 4, 16):
            labels = torch.arange(batch_size) % 15
            codes = batch_size * SIZE * SIZE
            times = {
                "pixelcnn cached": cpu_seconds(lambda: pixelcnn.sample(class_labels=labels), args.repeats),
                "transformer generate (KV cache)": cpu_seconds(lambda: transformer.sample(class_labels=labels), args.repeats),
                "transformer generate (no cache)": cpu_seconds(
                    lambda: transformer.sample(class_labels=labels, use_cache=False), args.repeats
                ),
            }
            base = times["pixelcnn cached"]
            print(f"  batch {batch_size:2d}: " + ", ".join(
                f"{name} {1000 * seconds / codes:.3f} ({seconds / base:.1f}x)" for name, seconds in times.items()
            ))
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
