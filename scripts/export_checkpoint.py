"""Turn a training checkpoint into a loadable model: what a run stopped by Ctrl-C leaves usable.

    python scripts/export_checkpoint.py --checkpoint outputs/vqvae/checkpoint-500     # into outputs/vqvae itself
    python scripts/export_checkpoint.py --checkpoint outputs/prior/checkpoint-1000 --output_dir outputs/prior-1000

Works for the checkpoints of every training script: the model (and a VQ-VAE's image processor, an audio VQ-VAE's
feature extractor, a PixelCNN, transformer or video prior's pipeline in pipeline/) goes where `from_pretrained`, the
extraction scripts and `scripts/sample.py` find it. `python scripts/export_checkpoint.py --help` lists every flag with its default.
"""

from hf_vqvae.commands.export_checkpoint import export_checkpoint, parse_args
from hf_vqvae.training.loop import run_command


if __name__ == "__main__":
    run_command(export_checkpoint, parse_args)
