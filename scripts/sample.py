"""Write a grid of images sampled from a VQVAEPipeline (a local folder or a Hub id).

    python scripts/sample.py --pipeline org/vqvae-pipeline --output samples.png

A class-conditional prior gives one row per class.
"""

import argparse

import torch

from hf_vqvae import VQVAEPipeline


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="A pipeline folder or a Hub id.")
    parser.add_argument("--output", default="samples.png", help="Where to write the grid (PNG).")
    parser.add_argument("--images_per_row", type=int, default=8)
    parser.add_argument("--num_rows", type=int, default=4, help="Rows for an unconditional prior.")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cache_dir", default=None, help="Hub cache folder.")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    pipeline = VQVAEPipeline.from_pretrained(args.pipeline, cache_dir=args.cache_dir).to(args.device)
    grid = pipeline.sample_grid(
        images_per_row=args.images_per_row, num_rows=args.num_rows, temperature=args.temperature, seed=args.seed
    )
    grid.save(args.output)
    print(f"wrote {grid.width}x{grid.height} grid to {args.output}")


if __name__ == "__main__":
    main()
