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

    python benchmarks/audio_quality.py [--max_train_steps 300] [--model outputs/audio-bench] [--num_threads 1]
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from datasets import load_from_disk

from hf_vqvae import AudioVQVAEModel
from hf_vqvae.data.audio_files import decode_audio
from hf_vqvae.data.flite_speech import make_default_speech_dataset
from hf_vqvae.data.speech import SpeechDataArguments
from hf_vqvae.models.audio_vqvae import mu_law_decode, mu_law_encode
from hf_vqvae.training.arguments import HubArguments, OptimizationArguments, OutputArguments
from hf_vqvae.training.recipes.audio_vqvae import AudioModelArguments, AudioSampleArguments, AudioVQVAETrainingArguments, train_audio_vqvae

from machine import describe_machine
from speech_metrics import (
    SpeakerClassifier,
    agreement_by_chance,
    entropy_bits,
    log_mel_distance,
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
    parser.add_argument("--seconds", type=float, default=0.5, help="length of the evaluated held-out crops")
    parser.add_argument("--num_clips", type=int, default=12, help="held-out utterances evaluated")
    parser.add_argument("--temperature", type=float, default=1.0, help="divides the decoder's logits when decoding")
    parser.add_argument("--num_threads", type=int, default=1)
    return parser.parse_args()


def crops(rows, length: int, offset: int = 4000) -> torch.Tensor:
    """`length` samples from `offset` (past the leading pause) of each utterance, padded with silence if short."""
    clips = []
    for row in rows:
        waveform = torch.from_numpy(decode_audio(row["audio"]))[offset : offset + length]
        clips.append(torch.nn.functional.pad(waveform, (0, length - len(waveform))))
    return torch.stack(clips)


def train(args) -> Path:
    output = Path(args.output_dir)
    arguments = AudioVQVAETrainingArguments(
        data=SpeechDataArguments(dataset_name=args.data, speaker_column="speaker", segment_length=2048),
        model=AudioModelArguments(config_overrides=SMALL_MODEL),
        samples=AudioSampleArguments(audio_sample_seconds=0.25),
        optimization=OptimizationArguments(max_train_steps=args.max_train_steps, train_batch_size=8, learning_rate=2e-3),
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
    speech = load_from_disk(args.data)
    model = AudioVQVAEModel.from_pretrained(args.model or train(args)).eval()
    evaluate(args, speech, model)


@torch.no_grad()
def evaluate(args, speech, model: AudioVQVAEModel) -> None:
    config = model.config
    rate, hop, speakers = config.sampling_rate, config.hop_length, config.num_speakers
    length = round(args.seconds * rate) // hop * hop
    print(f"model: K={config.num_embeddings}, hop {hop}, {config.num_layers} WaveNet layers, {speakers} speakers; "
          f"evaluating {args.num_clips} held-out clips of {length / rate:.2f} s, decoding at temperature {args.temperature}")

    validation = speech["validation"].select(range(min(args.num_clips, len(speech["validation"]))))
    originals, sources = crops(validation, length), torch.tensor(validation["speaker"])
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

    all_codes = torch.cat([codes, model.encode(crops(speech["train"].select(range(64)), length)).indices])
    entropy = entropy_bits(all_codes, config.num_embeddings)
    print(f"\ncodes: {len(all_codes.unique())} of {config.num_embeddings} used, perplexity {2 ** entropy:.1f}, "
          f"{config.bits_per_second:.0f} bits/s at log2 K, {rate / hop * entropy:.0f} bits/s at their entropy")

    # Speaker conversion: every clip to each other speaker.
    pairs = [(i, (int(sources[i]) + shift) % speakers) for i in range(len(sources)) for shift in range(1, speakers)]
    clip_index, targets = torch.tensor([i for i, _ in pairs]), torch.tensor([t for _, t in pairs])
    start = time.perf_counter()
    converted = model.decode(codes[clip_index], targets, generator=generator, temperature=args.temperature).audio_values
    print(f"\nconverted {len(pairs)} clips in {time.perf_counter() - start:.1f} s")
    train_rows = speech["train"]
    train_clips = torch.cat([crops(train_rows, length, offset) for offset in (2000, 10000, 18000)])
    train_speakers = torch.tensor(list(train_rows["speaker"]) * 3)
    classifier = SpeakerClassifier(speakers).fit(train_clips, train_speakers)
    held_out = float((classifier.predict(originals) == sources).float().mean())
    recognised = float((classifier.predict(reconstructions) == sources).float().mean())
    predicted = classifier.predict(converted)
    to_target = float((predicted == targets).float().mean())
    to_source = float((predicted == sources[clip_index]).float().mean())
    print(f"speaker classifier (trained on {len(train_clips)} real clips): held-out real clips {held_out:.1%} correct, "
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
            waveform = torch.from_numpy(decode_audio(row["audio"]))
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


if __name__ == "__main__":
    sys.exit(main())
