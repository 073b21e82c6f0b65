"""Encoding a speech data set with a trained audio VQ-VAE (`extract_speech_codes`, behind scripts/extract_speech_codes.py):
one row of codes per fixed-length segment, the speaker as its class label, the training data of a prior over speech."""

from dataclasses import dataclass, field

from datasets import DatasetDict

from ..data.encoding import encode_speech_dataset
from ..data.speech import SpeechDataArguments
from ..models.auto import is_audio_vqvae, load_audio_vqvae
from ..training.arguments import parse_arguments
from ..training.accelerator import create_accelerator, end_training
from .extraction import CodesArguments, publish_codes


@dataclass
class ExtractSpeechCodesArguments:
    """What `extract_speech_codes` needs: the speech data (cut into --segment_length segments, each one row of
    codes) and the codes' settings (--vqvae: a trained `AudioVQVAEModel`)."""

    data: SpeechDataArguments = field(default_factory=SpeechDataArguments)
    codes: CodesArguments = field(default_factory=lambda: CodesArguments(output_dir="outputs/speech-codes"))


def parse_args(argv: list[str] | None = None) -> ExtractSpeechCodesArguments:
    """The settings of `scripts/extract_speech_codes.py`: its flags, or a JSON / YAML file of them."""
    return parse_arguments(
        ExtractSpeechCodesArguments, argv,
        description="Encode the speech of an audio data set, cut into fixed-length segments, into one-row grids of "
        "audio VQ-VAE codes.",
    )


def extract_speech_codes(arguments: ExtractSpeechCodesArguments) -> DatasetDict:
    """Encode the segments of the speech data set `arguments.data` names with the audio VQ-VAE `--vqvae`, save the
    codes ((1, segment_length / hop_length) grids, speakers as `label`) to `--output_dir` (main process) and push
    them when asked; returns them on every process."""
    options = arguments.codes
    if options.vqvae is None:
        raise ValueError("pass --vqvae, the trained audio VQ-VAE that encodes the speech (a folder or a Hub id)")
    cache_dir = arguments.data.cache_dir
    if not is_audio_vqvae(options.vqvae, cache_dir=cache_dir):
        raise ValueError(
            f"--vqvae {options.vqvae!r} is not an audio VQ-VAE (AudioVQVAEModel); encode images with "
            "scripts/extract_codes.py"
        )
    accelerator = create_accelerator()
    vqvae, _ = load_audio_vqvae(options.vqvae, cache_dir=cache_dir)
    codes, speech_dataset = encode_speech_dataset(
        arguments.data, vqvae, accelerator, batch_size=options.batch_size, seed=options.seed
    )
    sequence_length = arguments.data.segment_length // vqvae.config.hop_length
    publish_codes(codes, vqvae.config, options.vqvae, speech_dataset, options, accelerator, sequence_length)
    end_training(accelerator)
    return codes
