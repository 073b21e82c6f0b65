"""What a small audio VQ-VAE trained for a few minutes on the synthesised multi-speaker set (4 flite voices) does:
reconstruction quality, code usage, speaker conversion and phonemes from codes, each against its reference point.

1. Trains with the recipe (`train_audio_vqvae`, the same as scripts/train_audio.py) unless --model names a trained
   folder; the data is the default set synthesised by flite (needs `apt-get install -y flite`).
2. On held-out utterances (never trained on), cropped to --seconds:
   - reconstruction: log-mel distance (dB) of the decoded codes (own speaker) to the original, beside 8-bit mu-law
     coding of the same audio (the decoder's output alphabet: its floor) and another utterance of the same speaker
     (what unrelated speech scores);
   - codes: distinct codes used, perplexity, bits per second of the codes (log2 K per latent) and of their entropy;
   - conversion: every clip decoded with each other speaker's id. A speaker classifier (logistic regression on
     log-mel statistics) trained on real training clips labels the converted clips: the share given the target
     speaker vs the source speaker (chance 1 / speakers); the converted audio re-encoded gives codes that agree with
     the source codes (vs the agreement of unrelated code sequences with the same code frequencies);
   - phonemes: each latent's phoneme (flite's timings) predicted from its code by a code -> phoneme table fitted on
     the training utterances, vs always guessing the most frequent phoneme.
3. Robustness, on held-out utterances under each of `speech_metrics.held_out_conditions` (gain 1, gain 0.05, white
   noise at 20 dB SNR, a 0.5 s synthetic room, both at gain 0.05), and on speech of other kinds
   (`held_out_speech`: a real two-speaker telephone call and a real recorded voice shipped inside packages, espeak-ng
   and festival voices), each utterance passed whole through the model's feature extractor as a user would:
   - codes used (share of K) and their perplexity;
   - does the decoder read its codes: teacher-forced bits of each crop given its own codes vs given another crop's
     codes (same decoder, same speaker id), and the share of crops whose own codes cost fewer bits;
   - conversion: the speaker classifier's probability of the target speaker for clips decoded as the target vs the
     same codes decoded as their own speaker (flite voices) or as the other speakers (unknown voices).

    python benchmarks/audio_quality.py [--max_train_steps 300] [--model outputs/audio-bench] [--num_threads 1]
        [--config_overrides normalize_loudness=false ...] [--sections quality robustness]
        [--seed 1] [--noise_probability 0.5 --reverb_probability 0.5]   (the trained model's seed and augmentation)
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from datasets import load_from_disk

from hf_vqvae import AudioVQVAEFeatureExtractor, AudioVQVAEModel
from hf_vqvae.data.audio_files import decode_audio
from hf_vqvae.data.flite_speech import make_default_speech_dataset
from hf_vqvae.data.speech import SpeechDataArguments, undecoded_audio
from hf_vqvae.models.audio_vqvae import mu_law_decode, mu_law_encode
from hf_vqvae.training.arguments import HubArguments, OptimizationArguments, OutputArguments
from hf_vqvae.training.recipes.audio_vqvae import AudioModelArguments, AudioSampleArguments, AudioVQVAETrainingArguments, train_audio_vqvae

from held_out_speech import HELD_OUT_SPEECH, crops_of
from machine import describe_machine
from speech_metrics import (
    SpeakerClassifier,
    agreement_by_chance,
    entropy_bits,
    held_out_conditions,
    log_mel_distance,
    own_versus_other_codes,
    phoneme_prediction,
    phonemes_at_latents,
)


# Small enough to train in minutes on a busy CPU core.
SMALL_MODEL = [
    "hidden_channels=32", "num_embeddings=64", "embedding_dim=16", "residual_channels=32", "gate_channels=32",
    "skip_channels=32", "num_layers=10", "dilation_cycle=10", "conditioning_channels=16",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="outputs/flite-speech", help="the default set's folder (made if missing)")
    parser.add_argument("--minutes_per_speaker", type=float, default=3.0)
    parser.add_argument("--model", default=None, help="a trained AudioVQVAEModel folder; trains one if omitted")
    parser.add_argument("--output_dir", default="outputs/audio-bench")
    parser.add_argument("--max_train_steps", type=int, default=300)
    parser.add_argument("--segment_length", type=int, default=2048, help="training crop in samples")
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the trained model's init, crops and augmentation")
    parser.add_argument(
        "--noise_probability", type=float, default=0.0,
        help="train with this share of clips noised at 10-30 dB SNR, white to brown (the recipe's --noise_probability)",
    )
    parser.add_argument(
        "--reverb_probability", type=float, default=0.0,
        help="train with this share of clips through a synthetic room of 0.1-0.8 s (the recipe's --reverb_probability)",
    )
    parser.add_argument(
        "--config_overrides", nargs="*", default=[],
        help="more model fields for the trained model, e.g. normalize_loudness=false (the control without normalisation)",
    )
    parser.add_argument(
        "--sections", nargs="+", default=["quality", "robustness"], choices=["quality", "robustness"],
        help="what to measure: reconstruction, codes, conversion and phonemes on clean held-out clips; robustness to "
        "level, noise, reverberation and other kinds of speech",
    )
    parser.add_argument("--max_crops", type=int, default=24, help="held-out crops per condition in the robustness section")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of the evaluated held-out crops")
    parser.add_argument("--num_clips", type=int, default=12, help="held-out utterances evaluated")
    parser.add_argument("--temperature", type=float, default=1.0, help="divides the decoder's logits when decoding")
    parser.add_argument("--num_threads", type=int, default=1)
    return parser.parse_args()


class ModelInputs:
    """Whole utterances through the model's feature extractor (its loudness normalisation included), as a user's
    audio goes into the model, then cropped."""

    def __init__(self, feature_extractor: AudioVQVAEFeatureExtractor):
        self.feature_extractor = feature_extractor

    def __call__(self, waveform) -> torch.Tensor:
        rate = self.feature_extractor.sampling_rate
        return self.feature_extractor(waveform, sampling_rate=rate, return_tensors="pt")["input_values"][0]

    def crops(self, rows, length: int, offset: int = 4000, condition=None) -> torch.Tensor:
        """`length` samples from `offset` (past the leading pause) of each utterance (after `condition`, a function
        of the waveform and rate), padded with silence if short."""
        clips = []
        for row in rows:
            waveform = decode_audio(row["audio"])
            if condition is not None:
                waveform = condition(waveform, self.feature_extractor.sampling_rate)
            waveform = self(waveform)[offset : offset + length]
            clips.append(torch.nn.functional.pad(waveform, (0, length - len(waveform))))
        return torch.stack(clips)


def train(args) -> Path:
    output = Path(args.output_dir)
    arguments = AudioVQVAETrainingArguments(
        data=SpeechDataArguments(
            dataset_name=args.data, speaker_column="speaker", segment_length=args.segment_length,
            noise_probability=args.noise_probability, reverb_probability=args.reverb_probability,
        ),
        model=AudioModelArguments(config_overrides=SMALL_MODEL + args.config_overrides),
        samples=AudioSampleArguments(audio_sample_seconds=0.25),
        optimization=OptimizationArguments(
            max_train_steps=args.max_train_steps, train_batch_size=8, learning_rate=args.learning_rate, seed=args.seed
        ),
        output=OutputArguments(output_dir=str(output), report_to="none", validation_steps=10**9, checkpointing_steps=10**9),
        hub=HubArguments(),
    )
    start = time.perf_counter()
    train_audio_vqvae(arguments)
    print(f"trained {args.max_train_steps} steps in {time.perf_counter() - start:.0f} s -> {output}")
    return output


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.num_threads)
    print(describe_machine())
    if not Path(args.data).exists():
        start = time.perf_counter()
        make_default_speech_dataset(args.minutes_per_speaker).save_to_disk(args.data)
        print(f"synthesised the default set in {time.perf_counter() - start:.0f} s -> {args.data}")
    speech = undecoded_audio(load_from_disk(args.data))
    folder = args.model or train(args)
    model = AudioVQVAEModel.from_pretrained(folder).eval()
    if (Path(folder) / "preprocessor_config.json").exists():
        feature_extractor = AudioVQVAEFeatureExtractor.from_pretrained(folder)
    else:
        feature_extractor = AudioVQVAEFeatureExtractor.for_model(model.config)
    print(f"feature extractor: loudness normalisation {'to %g dBFS' % feature_extractor.loudness_target_db if feature_extractor.do_normalize_loudness else 'off'}")
    inputs = ModelInputs(feature_extractor)
    train_rows = speech["train"]
    train_clips = torch.cat([inputs.crops(train_rows, 8000, offset) for offset in (2000, 10000, 18000)])
    classifier = SpeakerClassifier(model.config.num_speakers).fit(train_clips, torch.tensor(list(train_rows["speaker"]) * 3))
    if "quality" in args.sections:
        evaluate(args, speech, model, inputs, classifier)
    if "robustness" in args.sections:
        robustness(args, speech, model, inputs, classifier)


@torch.no_grad()
def evaluate(args, speech, model: AudioVQVAEModel, inputs: ModelInputs, classifier: SpeakerClassifier) -> None:
    config = model.config
    rate, hop, speakers = config.sampling_rate, config.hop_length, config.num_speakers
    length = round(args.seconds * rate) // hop * hop
    print(f"model: K={config.num_embeddings}, hop {hop}, {config.num_layers} WaveNet layers, {speakers} speakers; "
          f"evaluating {args.num_clips} held-out clips of {length / rate:.2f} s, decoding at temperature {args.temperature}")

    validation = speech["validation"].select(range(min(args.num_clips, len(speech["validation"]))))
    originals, sources = inputs.crops(validation, length), torch.tensor(validation["speaker"])
    codes = model.encode(originals).indices
    generator = torch.Generator().manual_seed(0)

    start = time.perf_counter()
    reconstructions = model.decode(codes, sources, generator=generator, temperature=args.temperature).audio_values
    print(f"decoded {len(codes)} x {length} samples in {time.perf_counter() - start:.1f} s (cached, batched)")
    mu_law = mu_law_decode(mu_law_encode(originals))
    # Another utterance of the same speaker: what unrelated speech of the right voice scores.
    others = torch.stack([originals[next((j for j in range(len(sources)) if j != i and sources[j] == sources[i]), (i + 1) % len(sources))]
                          for i in range(len(sources))])
    print("\nreconstruction, log-mel distance to the original (dB, lower is better):")
    print(f"  VQ-VAE reconstruction  {log_mel_distance(reconstructions, originals):6.2f}  "
          f"({config.bits_per_second:.0f} bits/s of codes)")
    print(f"  8-bit mu-law coding    {log_mel_distance(mu_law, originals):6.2f}  (128000 bits/s, the decoder's alphabet)")
    print(f"  another utterance      {log_mel_distance(others, originals):6.2f}  (same speaker, other words)")

    all_codes = torch.cat([codes, model.encode(inputs.crops(speech["train"].select(range(64)), length)).indices])
    entropy = entropy_bits(all_codes, config.num_embeddings)
    print(f"\ncodes: {len(all_codes.unique())} of {config.num_embeddings} used, perplexity {2 ** entropy:.1f}, "
          f"{config.bits_per_second:.0f} bits/s at log2 K, {rate / hop * entropy:.0f} bits/s at their entropy")

    # Speaker conversion: every clip to each other speaker.
    pairs = [(i, (int(sources[i]) + shift) % speakers) for i in range(len(sources)) for shift in range(1, speakers)]
    clip_index, targets = torch.tensor([i for i, _ in pairs]), torch.tensor([t for _, t in pairs])
    start = time.perf_counter()
    converted = model.decode(codes[clip_index], targets, generator=generator, temperature=args.temperature).audio_values
    print(f"\nconverted {len(pairs)} clips in {time.perf_counter() - start:.1f} s")
    held_out = float((classifier.predict(originals) == sources).float().mean())
    recognised = float((classifier.predict(reconstructions) == sources).float().mean())
    predicted = classifier.predict(converted)
    to_target = float((predicted == targets).float().mean())
    to_source = float((predicted == sources[clip_index]).float().mean())
    print(f"speaker classifier (trained on training clips): held-out real clips {held_out:.1%} correct, "
          f"reconstructions {recognised:.1%} as their speaker")
    print(f"converted clips classified as the TARGET speaker {to_target:.1%}, as the source {to_source:.1%} "
          f"(chance {1 / speakers:.1%})")
    reencoded = model.encode(converted).indices
    agreement = float((reencoded == codes[clip_index]).float().mean())
    chance = agreement_by_chance(reencoded, codes[clip_index], config.num_embeddings)
    print(f"content kept: re-encoded converted codes agree with the source codes {agreement:.1%} "
          f"(unrelated codes with these frequencies: {chance:.1%})")

    # Phonemes from codes, on whole utterances.
    def utterance_codes_and_phonemes(rows):
        all_codes, all_phonemes = [], []
        for row in rows:
            waveform = inputs(decode_audio(row["audio"]))
            waveform = waveform[: len(waveform) // hop * hop]
            utterance_codes = model.encode(waveform[None]).indices[0]
            all_codes += utterance_codes.tolist()
            all_phonemes += phonemes_at_latents(row["phonemes"], row["phoneme_ends"], len(utterance_codes), hop / rate)
        return all_codes, all_phonemes

    train_codes, train_phonemes = utterance_codes_and_phonemes(speech["train"])
    test_codes, test_phonemes = utterance_codes_and_phonemes(speech["validation"])
    accuracy, majority, classes = phoneme_prediction(train_codes, train_phonemes, test_codes, test_phonemes)
    print(f"\nphonemes from codes (held-out utterances, {classes} classes): {accuracy:.1%} correct, "
          f"most-frequent-phoneme guess {majority:.1%}")


@torch.no_grad()
def conversion_toward_targets(model, classifier, codes: torch.Tensor, sources: torch.Tensor | None, seed: int = 0) -> tuple:
    """P(target) from the speaker classifier for codes decoded as a target speaker, against the same codes decoded
    as their own speaker (`sources` given) or as each other speaker (unknown voices); returns (mean P(target)
    converted, mean P(target) control, share of clips moved toward their target)."""
    speakers = model.config.num_speakers
    generator = torch.Generator().manual_seed(seed)
    if sources is not None:
        targets = (sources + 1 + torch.arange(len(codes)) % (speakers - 1)) % speakers
        decoded = model.decode(torch.cat([codes, codes]), torch.cat([targets, sources]), generator=generator).audio_values
        probabilities = classifier.probabilities(decoded)
        index = torch.arange(len(codes))
        converted, control = probabilities[: len(codes)][index, targets], probabilities[len(codes) :][index, targets]
    else:
        ids = torch.arange(speakers).repeat_interleave(len(codes))
        decoded = model.decode(codes.repeat(speakers, 1), ids, generator=generator).audio_values
        probabilities = classifier.probabilities(decoded).view(speakers, len(codes), speakers)
        # probabilities[decoded as a, clip, P(speaker b)]: target b, converted a = b, control a != b.
        eye = torch.eye(speakers, dtype=torch.bool)
        converted = probabilities.diagonal(dim1=0, dim2=2).T.reshape(-1)
        control = torch.stack([probabilities[~eye[:, b], :, b].mean(0) for b in range(speakers)]).reshape(-1)
    return float(converted.mean()), float(control.mean()), float((converted > control).float().mean())


def robustness_row(name: str, model, classifier, clips: torch.Tensor, speaker_ids, sources) -> None:
    result = own_versus_other_codes(model, clips, speaker_ids)
    codes = result["codes"]
    converted, control, moved = conversion_toward_targets(model, classifier, codes, sources)
    used = len(codes.unique()) / model.config.num_embeddings
    print(f"| {name} | {len(clips)} | {used:.0%} | {2 ** entropy_bits(codes, model.config.num_embeddings):.1f} | "
          f"{result['own_bits_per_sample']:.3f} / {result['other_bits_per_sample']:.3f} | {result['own_codes_win']:.0%} | "
          f"{converted:.3f} / {control:.3f} | {moved:.0%} |", flush=True)


@torch.no_grad()
def robustness(args, speech, model: AudioVQVAEModel, inputs: ModelInputs, classifier: SpeakerClassifier) -> None:
    """The robustness table: held-out flite utterances under each condition, then speech of other kinds."""
    config = model.config
    length = round(args.seconds * config.sampling_rate) // config.hop_length * config.hop_length
    print(f"\nrobustness: held-out crops of {length / config.sampling_rate:.2f} s through the feature extractor; "
          "bits per sample teacher-forced; P(target): converted / control (own speaker for flite voices, the other "
          "speakers for unknown voices)")
    print("| held-out speech | crops | codes used | perplexity | bits own / other codes | own codes win | "
          "P(target) converted / control | moved toward target |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    validation = speech["validation"].select(range(min(args.max_crops, len(speech["validation"]))))
    sources = torch.tensor(validation["speaker"])
    for name, condition in held_out_conditions().items():
        clips = inputs.crops(validation, length, condition=condition)
        robustness_row(f"flite, {name}", model, classifier, clips, sources, sources)
    for name, source in HELD_OUT_SPEECH.items():
        utterances, reason = source()
        if utterances is None:
            print(f"| {name} | skipped: {reason} | | | | | | |")
            continue
        crops, _ = crops_of([(inputs(waveform).numpy(), speaker) for waveform, speaker in utterances], length)
        step = max(1, len(crops) // args.max_crops)
        clips = torch.from_numpy(np.stack(crops[::step][: args.max_crops]))
        # An unknown voice: teacher-forced with speaker 0 for both its own and the other codes.
        robustness_row(name, model, classifier, clips, torch.zeros(len(clips), dtype=torch.long), None)


if __name__ == "__main__":
    sys.exit(main())
