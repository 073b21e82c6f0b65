"""Generate speech with an AudioVQVAEPipeline that has a prior (a local folder or a Hub id): the prior draws the
codes, the WaveNet decoder speaks them in the voices asked for; one 16-bit WAV file per clip.

    python scripts/generate_speech.py --pipeline outputs/speech-prior/pipeline --speaker awb slt --output_dir outputs/speech-samples

A clip lasts the prior's grid_width x the VQ-VAE's hop_length samples. Speakers are names or ids, one per clip
(or one for --num_clips clips); a VQ-VAE without speakers takes none.
"""

import argparse
from pathlib import Path

from hf_vqvae.argument_checks import HelpWithDefaults


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--pipeline", required=True, help="An AudioVQVAEPipeline folder with a prior, or a Hub id.")
    parser.add_argument("--speaker", nargs="*", default=None, help="The voice of each clip: names or ids.")
    parser.add_argument("--num_clips", type=int, default=None, help="Clips to generate; by default one per --speaker.")
    parser.add_argument("--output_dir", default="outputs/speech-samples", help="Where the WAV files go.")
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="Divides the prior's logits: below 1 draws likelier codes, above 1 more varied ones."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the draw: the same seed gives the same clips.")
    parser.add_argument("--device", default=None, help="cuda when there is a GPU, else cpu.")
    parser.add_argument("--cache_dir", default=None, help="Hub cache folder.")
    args = parser.parse_args(argv)
    if args.num_clips is not None and args.num_clips < 1:
        parser.error(f"--num_clips must be >= 1, got {args.num_clips}")
    if not args.temperature > 0:
        parser.error(f"--temperature must be > 0, got {args.temperature}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    # Imported once the flags are known good, so a mistake is reported at once.
    import torch

    from hf_vqvae import AudioVQVAEPipeline
    from hf_vqvae.data.audio_files import wav_bytes

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = AudioVQVAEPipeline.from_pretrained(args.pipeline, cache_dir=args.cache_dir).to(device)
    names = pipeline.vqvae.config.speaker_names or []
    speakers = [int(value) if value.isdigit() and value not in names else value for value in args.speaker or []]
    num_clips = args.num_clips or max(1, len(speakers))
    audios = pipeline(
        batch_size=num_clips, speaker=speakers or None, temperature=args.temperature,
        generator=torch.Generator(device=device).manual_seed(args.seed),
    ).audios
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    clip_speakers = speakers * num_clips if len(speakers) == 1 else speakers
    rate = pipeline.vqvae.config.sampling_rate
    for index, audio in enumerate(audios):
        suffix = f"-{clip_speakers[index]}" if clip_speakers else ""
        (output_dir / f"{index}{suffix}.wav").write_bytes(wav_bytes(audio, rate))
    print(f"wrote {num_clips} clips of {audios.shape[1] / rate:.2f} s to {output_dir}")


if __name__ == "__main__":
    main()
