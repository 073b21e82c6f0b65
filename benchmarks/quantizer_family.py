"""The quantizer family against the same variants of vector-quantize-pytorch, on equal terms.

Every variant trains twice, once with hf-vqvae's quantizer and once with vector-quantize-pytorch's (the `.[bench]`
peer), inside the same encoder and decoder from the same initial weights, on the same batches in the same order, for
the same number of Adam steps (lr 1e-3), K = 512 codes of D = 64:

- images: the package's `VQVAEModel` encoder and decoder (64 hidden channels, 2 residual blocks), 32x32 crops of
  scikit-image's photos (the crops of benchmarks/codebook_usage.py), 8x8 latents, batches of 64, MSE loss;
- speech: the package's `AudioEncoder` (4 strided convolutions, one latent per 16 samples) and a mirrored decoder of
  transposed convolutions trained on the log-mel distance (a deterministic decoder: a WaveNet sampled after a few hundred
  steps would bury the quantizers' differences in sampling noise), 4096-sample crops (0.26 s) of the default speech
  set synthesised by flite (`make_default_speech_dataset`), batches of 16.

The peer's settings match ours wherever it has the feature: EMA decay 0.99, commitment weight 0.25, k-means
initialisation, dead codes restarted below half the mean usage (its `dead_code_threshold_ratio`), the rotation trick
off unless the row turns it on; LFQ with entropy weight 0.1, diversity gamma 1, temperature 0.01 (its inverse
temperature 100) and commitment 0.25; SimVQ with the rotation trick (its default); residual VQ without quantizer
dropout on both sides (the peer drops per batch, hf-vqvae per example: not the same thing). The paper's VQ is the
baseline row.

Reported, on held-out data: PSNR (images; pixels in [0, 1], averaged over crops) or the log-mel distance in dB
(speech, lower is better); codes used (% of K, of N x K (stage, code) pairs for residual VQ) and perplexity (of the
code histogram; for residual VQ the mean over stages). Per training step, measured after training in interleaved
rounds so that load hits both alike: the whole model's step (forward, backward, Adam) and the quantizer's share
(forward + backward on fixed latents); peak memory of the quantizer's step in a fresh subprocess (`peak_memory.py`).

With --seeds S every figure of quality and usage is the mean over S runs (seeds 0..S-1: data order and initial
weights), quality with +- half its range.

    python benchmarks/quantizer_family.py [--steps 300] [--seeds 1] [--data images speech] [--variants NAME ...]
        [--threads 1] [--clock wall|cpu]
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hf_vqvae import VQVAEConfig, VQVAEModel
from hf_vqvae.models.audio_vqvae.configuration_audio_vqvae import AudioVQVAEConfig
from hf_vqvae.models.audio_vqvae.modeling_audio_vqvae import AudioEncoder
from hf_vqvae.quantization import QuantizerOutput
from hf_vqvae.quantization.base import perplexity_of
from hf_vqvae.quantization.factory import build_quantizer

from codebook_usage import photo_crops, split
from machine import describe_machine
from peak_memory import measure_in_subprocess, peak_step_memory
from speech_metrics import log_mel


NUM_CODES = 512
DIM = 64
IMPLEMENTATIONS = ("hf-vqvae", "vector-quantize-pytorch")
# Settings both sides of a VQ row share: the package's defaults (EMA 0.99, k-means, restarts below 0.5 x mean usage).
PEER_VQ = dict(
    decay=0.99, commitment_weight=0.25, kmeans_init=True, kmeans_iters=10, dead_code_threshold_ratio=0.5,
    rotation_trick=False, learnable_codebook=False, ema_update=True,
)

# name -> (hf-vqvae config fields, vector-quantize-pytorch class and arguments, stages of its codes)
VARIANTS = {
    "paper VQ (baseline)": ({}, ("VectorQuantize", dict(codebook_size=NUM_CODES, **PEER_VQ)), 1),
    "rotation trick": (dict(rotation_trick=True), ("VectorQuantize", dict(codebook_size=NUM_CODES, **{**PEER_VQ, "rotation_trick": True})), 1),
    "cosine-similarity codes": (dict(cosine_similarity=True), ("VectorQuantize", dict(codebook_size=NUM_CODES, use_cosine_sim=True, **PEER_VQ)), 1),
    "factorised codes (d=8)": (dict(codebook_dim=8), ("VectorQuantize", dict(codebook_size=NUM_CODES, codebook_dim=8, **PEER_VQ)), 1),
    "residual VQ (4 stages)": (
        dict(quantizer_type="residual_vq", num_quantizers=4),
        ("ResidualVQ", dict(codebook_size=NUM_CODES, num_quantizers=4, **PEER_VQ)), 4,
    ),
    "SimVQ (rotation trick)": (dict(quantizer_type="simvq", rotation_trick=True), ("SimVQ", dict(codebook_size=NUM_CODES, rotation_trick=True)), 1),
    "FSQ [8, 8, 8]": (dict(quantizer_type="fsq", fsq_levels=[8, 8, 8]), ("FSQ", dict(levels=[8, 8, 8])), 1),
    "LFQ (9 bits)": (
        dict(quantizer_type="lfq"),
        ("LFQ", dict(codebook_size=NUM_CODES, entropy_loss_weight=0.1, commitment_loss_weight=0.25, diversity_gamma=1.0)), 1,
    ),
}

IMAGE_MODEL = dict(hidden_channels=64, residual_channels=32, num_residual_blocks=2, sample_size=32, embedding_dim=DIM)
SPEECH_ENCODER = dict(hidden_channels=64, downsampling_strides=[2, 2, 2, 2], embedding_dim=DIM)
SPEECH_CROP = 4096
# The default speech set, made on the first run where benchmarks/audio_quality.py keeps it too.
SPEECH_DATA = Path(__file__).resolve().parents[1] / "outputs" / "flite-speech"


# ------------------------------------------------------------------------------------------------ the peer


class PeerQuantizer(nn.Module):
    """A vector-quantize-pytorch quantizer behind the interface the package's models call: (B, D, *spatial) latents
    in, a `QuantizerOutput` out. Its modules read (B, positions, D), so the latents are laid out channels-last first
    (as its image mode does itself)."""

    def __init__(self, class_name: str, arguments: dict, stages: int):
        super().__init__()
        import vector_quantize_pytorch

        self.module = getattr(vector_quantize_pytorch, class_name)(dim=DIM, **arguments)
        self.stages = stages

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        batch, dim, *spatial = latents.shape
        channels_last = latents.flatten(2).transpose(1, 2)
        result = self.module(channels_last)
        quantized, indices = result[0], result[1]
        loss = result[2].sum() if len(result) > 2 else quantized.new_zeros(())
        quantized = quantized.transpose(1, 2).reshape(latents.shape)
        # Residual codes come as (B, positions, N): stage axis second, as the package lays them out.
        indices = indices.movedim(-1, 1).reshape(batch, self.stages, *spatial) if self.stages > 1 else indices.reshape(batch, *spatial)
        return QuantizerOutput(
            quantized=quantized, indices=indices, loss=loss, commitment_loss=loss, codebook_loss=torch.zeros_like(loss),
            perplexity=code_statistics(indices.detach(), self.stages)[1],
        )


def build(variant: str, implementation: str, seed: int = 0) -> nn.Module:
    fields, (class_name, arguments), stages = VARIANTS[variant]
    torch.manual_seed(seed)
    if implementation == "hf-vqvae":
        return build_quantizer(VQVAEConfig(embedding_dim=DIM, num_embeddings=NUM_CODES, **fields))
    return PeerQuantizer(class_name, arguments, stages)


def code_statistics(indices: torch.Tensor, stages: int) -> tuple[float, torch.Tensor]:
    """(share of the (stage, code) pairs used, mean perplexity over the stages) of codes (B, [N,] *spatial)."""
    per_stage = indices.transpose(0, 1) if stages > 1 else indices[None]
    counts = torch.stack([torch.bincount(stage.flatten(), minlength=NUM_CODES)[:NUM_CODES].float() for stage in per_stage])
    return float((counts > 0).float().mean()), perplexity_of(counts).mean()


# ------------------------------------------------------------------------------------------------ the models


class SpeechAutoencoder(nn.Module):
    """The package's strided audio encoder, a quantizer, and a mirrored stack of transposed convolutions."""

    def __init__(self, quantizer: nn.Module):
        super().__init__()
        config = AudioVQVAEConfig(**SPEECH_ENCODER)
        self.encoder = AudioEncoder(config)
        self.quantizer = quantizer
        hidden = config.hidden_channels
        layers = [nn.Conv1d(DIM, hidden, 3, padding=1), nn.ReLU()]
        for index, stride in enumerate(reversed(config.downsampling_strides)):
            last = index == len(config.downsampling_strides) - 1
            layers.append(nn.ConvTranspose1d(hidden, 1 if last else hidden, 2 * stride, stride=stride, padding=stride // 2))
            if not last:
                layers.append(nn.ReLU())
        self.decoder = nn.Sequential(*layers)

    def forward(self, waveforms: torch.Tensor):
        quantized = self.quantizer(self.encoder(waveforms.unsqueeze(1)))
        reconstruction = torch.tanh(self.decoder(quantized.quantized).squeeze(1))
        # The log-mel distance in dB, scaled to the size of an MSE on [-1, 1] pixels.
        loss = (log_mel(reconstruction) - log_mel(waveforms)).abs().mean() / 20 + quantized.loss
        return loss, reconstruction, quantized.indices


class ImageAutoencoder(nn.Module):
    """`VQVAEModel`'s encoder and decoder around a quantizer."""

    def __init__(self, quantizer: nn.Module, reference: VQVAEModel):
        super().__init__()
        self.vqvae = VQVAEModel(VQVAEConfig(**IMAGE_MODEL, num_embeddings=NUM_CODES))
        self.vqvae.load_state_dict(reference.state_dict())  # the same initial encoder and decoder for every run
        self.vqvae.quantizer = quantizer

    def forward(self, images: torch.Tensor):
        out = self.vqvae(images)
        return out.loss, out.reconstruction, out.indices


def make_model(data: str, variant: str, implementation: str, reference: nn.Module, seed: int) -> nn.Module:
    quantizer = build(variant, implementation, seed)
    if data == "images":
        return ImageAutoencoder(quantizer, reference)
    model = SpeechAutoencoder(quantizer)
    model.load_state_dict(reference.state_dict(), strict=False)  # the encoder and decoder; the quantizer keeps its own
    return model


# ------------------------------------------------------------------------------------------------ data


def image_data() -> tuple[torch.Tensor, torch.Tensor]:
    return split(photo_crops())


def speech_data(seed: int = 0) -> tuple[list[np.ndarray], torch.Tensor]:
    """Training utterances (random crops are drawn from them) and held-out crops (N, SPEECH_CROP)."""
    from datasets import load_from_disk

    from hf_vqvae.data.audio_files import decode_audio
    from hf_vqvae.data.flite_speech import make_default_speech_dataset
    from hf_vqvae.data.speech import undecoded_audio

    if not SPEECH_DATA.exists():
        make_default_speech_dataset().save_to_disk(str(SPEECH_DATA))
    speech = undecoded_audio(load_from_disk(str(SPEECH_DATA)))
    train = [decode_audio(row["audio"]) for row in speech["train"]]
    held_out = []
    for row in speech["validation"]:
        waveform = decode_audio(row["audio"])
        # Crops past the leading pause, one per 0.5 s of speech.
        for start in range(4000, len(waveform) - SPEECH_CROP, 8000):
            held_out.append(torch.from_numpy(waveform[start : start + SPEECH_CROP]))
    return [utterance for utterance in train if len(utterance) > SPEECH_CROP], torch.stack(held_out)


def training_batches(data: str, train, steps: int, batch_size: int, seed: int):
    """A function giving step i's batch, the same for every run of this seed (drawn once, materialised on demand)."""
    if data == "images":
        picks = torch.randint(len(train), (steps, batch_size), generator=torch.Generator().manual_seed(seed))
        return lambda step: train[picks[step]]
    rng = np.random.default_rng(seed)
    utterances = rng.integers(len(train), size=(steps, batch_size))
    starts = [[rng.integers(len(train[i]) - SPEECH_CROP) for i in row] for row in utterances]
    return lambda step: torch.from_numpy(
        np.stack([train[i][start : start + SPEECH_CROP] for i, start in zip(utterances[step], starts[step])])
    )


# ------------------------------------------------------------------------------------------------ measures


def train(model: nn.Module, batch, steps: int, learning_rate: float) -> torch.optim.Optimizer:
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    for step in range(steps):
        training_step(model, optimizer, batch(step))
    return optimizer


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: torch.Tensor) -> None:
    loss = model(batch)[0]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@torch.no_grad()
def evaluate(data: str, model: nn.Module, held_out: torch.Tensor, stages: int) -> dict:
    model.eval()
    reconstructions, codes = [], []
    for batch in held_out.split(64):
        _, reconstruction, indices = model(batch)
        reconstructions.append(reconstruction.float().clamp(-1, 1))
        codes.append(indices)
    reconstruction = torch.cat(reconstructions)
    if data == "images":
        per_image = (reconstruction - held_out).pow(2).flatten(1).mean(1)
        quality = float((10 * torch.log10(4 / per_image.clamp(min=1e-10))).mean())
    else:
        quality = float((log_mel(reconstruction) - log_mel(held_out)).abs().mean())
    used, perplexity = code_statistics(torch.cat(codes), stages)
    return {"quality": quality, "codes used": used, "perplexity": float(perplexity)}


def clock(kind: str):
    return time.thread_time if kind == "cpu" else time.perf_counter


def interleaved_times(steps: dict, repeats: int, timer) -> dict[str, list[float]]:
    """Seconds per call of each function, over `repeats` interleaved rounds after two warm-up calls each."""
    for step in steps.values():
        step()
        step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = timer()
            step()
            times[name].append(timer() - start)
    return times


def quantizer_step(quantizer: nn.Module, latents: torch.Tensor):
    """One forward + backward of the quantizer alone: an upstream gradient on the quantized latents plus its loss."""
    latents = latents.detach().clone().requires_grad_(True)
    upstream = torch.randn_like(latents)

    def step():
        out = quantizer(latents)
        # FSQ has no loss: its zero has no graph.
        losses = [out.loss] if out.loss.requires_grad else []
        torch.autograd.backward([out.quantized, *losses], [upstream, *[None] * len(losses)])
        latents.grad = None
        quantizer.zero_grad(set_to_none=True)

    return step


def fixed_latents(data: str, batch: torch.Tensor) -> torch.Tensor:
    """Encoder-like latents of one batch's shape: what the quantizer step and its memory are measured on."""
    generator = torch.Generator().manual_seed(0)
    positions = (8, 8) if data == "images" else (SPEECH_CROP // 16,)
    return torch.randn(batch.shape[0], DIM, *positions, generator=generator)


# ------------------------------------------------------------------------------------------------ report


def run(data: str, args) -> dict:
    train_set, held_out = image_data() if data == "images" else speech_data()
    batch_size = 64 if data == "images" else 16
    print(f"\n{data}: {len(held_out)} held-out {'crops' if data == 'images' else f'{SPEECH_CROP}-sample crops'}, "
          f"{args.steps} Adam steps of {batch_size}, seeds {list(range(args.seeds))}")
    results = {}
    for variant in args.variants:
        stages = VARIANTS[variant][2]
        runs = {name: [] for name in IMPLEMENTATIONS}
        for seed in range(args.seeds):
            batch = training_batches(data, train_set, args.steps, batch_size, seed)
            # The initial encoder and decoder of both runs of this seed.
            torch.manual_seed(seed)
            reference = VQVAEModel(VQVAEConfig(**IMAGE_MODEL, num_embeddings=NUM_CODES)) if data == "images" else SpeechAutoencoder(nn.Identity())
            models, optimizers = {}, {}
            for implementation in IMPLEMENTATIONS:
                models[implementation] = make_model(data, variant, implementation, reference, seed)
                optimizers[implementation] = train(models[implementation], batch, args.steps, args.learning_rate)
                runs[implementation].append(evaluate(data, models[implementation], held_out, stages))
        for name in IMPLEMENTATIONS:
            results[(variant, name)] = {
                measure: statistics.mean(run[measure] for run in runs[name]) for measure in runs[name][0]
            }
            results[(variant, name)]["spread"] = (max(r["quality"] for r in runs[name]) - min(r["quality"] for r in runs[name])) / 2
        # Timing after training (the last seed's models), interleaved: a training step of each model on the same
        # batch, then the quantizers alone on the same latents.
        timer = clock(args.clock)
        model_times = interleaved_times(
            {name: (lambda m=models[name], o=optimizers[name]: training_step(m.train(), o, batch(0))) for name in IMPLEMENTATIONS},
            args.repeats, timer,
        )
        latents = fixed_latents(data, batch(0))
        quantizer_times = interleaved_times(
            {name: quantizer_step(models[name].train().get_submodule("vqvae.quantizer" if data == "images" else "quantizer"), latents)
             for name in IMPLEMENTATIONS},
            args.repeats, timer,
        )
        for name in IMPLEMENTATIONS:
            results[(variant, name)]["step ms"] = statistics.median(model_times[name]) * 1e3
            results[(variant, name)]["quantizer ms"] = statistics.median(quantizer_times[name]) * 1e3
            results[(variant, name)]["peak MiB"] = measure_in_subprocess(
                [__file__, "--threads", str(args.threads), "--memory_of", data, variant, name, str(batch_size)]
            )
        print_row(data, variant, results, header=variant == args.variants[0])
    return results


def print_row(data: str, variant: str, results: dict, header: bool) -> None:
    quality = "PSNR dB" if data == "images" else "log-mel dB"
    if header:
        print(f"  {'variant':26s} {'implementation':24s} {quality:>10s} {'codes used':>10s} {'perplexity':>10s} "
              f"{'step ms':>8s} {'quant. ms':>9s} {'peak MiB':>8s}")
    for name in IMPLEMENTATIONS:
        result = results[(variant, name)]
        peak = "n/a" if result["peak MiB"] is None else f"{result['peak MiB'] / 2**20:.1f}"
        quality = f"{result['quality']:.2f}" + (f" +-{result['spread']:.2f}" if result["spread"] else "")
        print(f"  {variant:26s} {name:24s} {quality:>10s} {result['codes used']:10.1%} {result['perplexity']:10.1f} "
              f"{result['step ms']:8.1f} {result['quantizer ms']:9.2f} {peak:>8s}")
    ours, peer = results[(variant, "hf-vqvae")], results[(variant, "vector-quantize-pytorch")]
    better = ours["quality"] >= peer["quality"] if data == "images" else ours["quality"] <= peer["quality"]
    print(f"  {'':26s} hf-vqvae vs peer: quality {'matches or beats' if better else 'BELOW'} "
          f"({ours['quality'] - peer['quality']:+.2f} dB), codes used {ours['codes used'] / max(peer['codes used'], 1e-9):.2f}x, "
          f"step {peer['step ms'] / ours['step ms']:.2f}x faster, quantizer {peer['quantizer ms'] / ours['quantizer ms']:.2f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=1, help="runs per variant and implementation (data order and init)")
    parser.add_argument("--data", nargs="+", default=["images", "speech"], choices=["images", "speech"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT",
                        help=f"rows to run, by name (default: all: {', '.join(map(repr, VARIANTS))})")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=10, help="interleaved timing rounds per variant")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: this thread's CPU time (a busy machine)")
    parser.add_argument("--memory_of", nargs=4, metavar=("DATA", "VARIANT", "IMPLEMENTATION", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_of:
        data, variant, implementation, batch_size = args.memory_of
        quantizer = build(variant, implementation).train()
        print(peak_step_memory(quantizer_step(quantizer, fixed_latents(data, torch.empty(int(batch_size))))))
        return
    print(describe_machine())
    print(f"timings: {args.clock} clock, median of {args.repeats} interleaved steps")
    for data in args.data:
        run(data, args)


if __name__ == "__main__":
    main()
