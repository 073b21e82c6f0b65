"""AudioVQVAEPipeline under every contract of tests/pipeline_contracts.py."""

from hf_vqvae import AudioVQVAEConfig, AudioVQVAEFeatureExtractor, AudioVQVAEModel, AudioVQVAEPipeline, PixelCNNPriorConfig, PixelCNNPriorModel

from conftest import seeded
from pipeline_contracts import PipelineContracts, PipelineTester
from test_audio_vqvae import TINY_AUDIO, speech_like


TINY_SPEECH_PRIOR = dict(num_embeddings=16, grid_height=1, grid_width=6, hidden_channels=8, num_layers=2, kernel_size=3, skip_channels=8, num_classes=3)


class AudioVQVAEPipelineTester(PipelineTester):
    pipeline_class = AudioVQVAEPipeline
    optional_components = ("prior", "feature_extractor")

    def pipeline(self, with_optional_components=True):
        vqvae = AudioVQVAEModel(AudioVQVAEConfig(**TINY_AUDIO)).eval()
        if not with_optional_components:
            return AudioVQVAEPipeline(vqvae=vqvae, prior=None, feature_extractor=None)
        return AudioVQVAEPipeline(
            vqvae=vqvae, prior=PixelCNNPriorModel(PixelCNNPriorConfig(**TINY_SPEECH_PRIOR)).eval(),
            feature_extractor=AudioVQVAEFeatureExtractor.for_model(vqvae.config),
        )

    def outputs(self, pipeline, seed=0):
        waveform = speech_like(1, 64)[0].numpy()
        results = [pipeline(audio=waveform, sampling_rate=16000, speaker="ann", generator=seeded(seed)).audios]
        if pipeline.prior is not None:
            results.append(pipeline(speaker="bob", generator=seeded(seed)).audios)
        return results


class TestAudioVQVAEPipeline(PipelineContracts):
    tester = AudioVQVAEPipelineTester()
