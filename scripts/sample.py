"""Write a grid of images sampled from a VQVAEPipeline (a local folder or a Hub id).

    python scripts/sample.py --pipeline org/vqvae-pipeline --output samples.png

A class-conditional prior gives one row per class, named at its left. Without --output the grid goes
to outputs/samples.png.
"""

import argparse
from pathlib import Path

import PIL.Image

from hf_vqvae.argument_checks import HelpWithDefaults


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--pipeline", required=True, help="A pipeline folder or a Hub id.")
    parser.add_argument("--output", default="outputs/samples.png", help="Where to write the grid (.png, .jpg, .webp, ...).")
    parser.add_argument("--images_per_row", type=int, default=8, help="Samples in each row of the grid.")
    parser.add_argument("--num_rows", type=int, default=4, help="Rows for an unconditional prior.")
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="Divides the prior's logits: below 1 draws likelier codes, above 1 more varied ones."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the draw: the same seed gives the same grid.")
    parser.add_argument("--device", default=None, help="cuda when there is a GPU, else cpu.")
    parser.add_argument("--cache_dir", default=None, help="Hub cache folder.")
    args = parser.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked before the pipeline is loaded and sampled."""
    for name in ("images_per_row", "num_rows"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name} must be >= 1, got {getattr(args, name)}")
    if not args.temperature > 0:
        raise SystemExit(f"error: --temperature must be > 0, got {args.temperature}")
    output = Path(args.output)
    formats = PIL.Image.registered_extensions()
    if output.suffix.lower() not in formats:
        raise SystemExit(f"error: --output {args.output!r} needs an image extension PIL writes, e.g. .png, .jpg or .webp")
    if output.is_dir():
        raise SystemExit(f"error: --output {args.output!r} is a folder; give a file name such as {output / 'samples.png'}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"error: cannot create the folder of --output {args.output!r}: {error}") from None


def main(argv=None) -> None:
    args = parse_args(argv)
    # Imported once the flags are known good, so a mistake is reported at once.
    import torch

    from hf_vqvae import VQVAEPipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = VQVAEPipeline.from_pretrained(args.pipeline, cache_dir=args.cache_dir).to(device)
    grid = pipeline.sample_grid(
        images_per_row=args.images_per_row, num_rows=args.num_rows, temperature=args.temperature, seed=args.seed
    )
    grid.save(args.output)
    print(f"wrote {grid.width}x{grid.height} grid to {args.output}")


if __name__ == "__main__":
    main()
