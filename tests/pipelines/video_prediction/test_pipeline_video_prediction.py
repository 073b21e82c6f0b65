"""VideoPredictionPipeline under every contract of tests/pipeline_contracts.py."""

from hf_vqvae import VideoPredictionPipeline, VideoPriorConfig, VideoPriorModel, VQVAEConfig, VQVAEImageProcessor, VQVAEModel

from conftest import TINY_VQVAE, seeded
from pipeline_contracts import PipelineContracts, PipelineTester, photos
from test_video_prior import TINY_VIDEO_PRIOR


class VideoPredictionPipelineTester(PipelineTester):
    pipeline_class = VideoPredictionPipeline
    optional_components = ("image_processor",)

    def pipeline(self, with_optional_components=True):
        vqvae = VQVAEModel(VQVAEConfig(**TINY_VQVAE)).eval()
        return VideoPredictionPipeline(
            vqvae=vqvae, video_prior=VideoPriorModel(VideoPriorConfig(**TINY_VIDEO_PRIOR)).eval(),
            image_processor=VQVAEImageProcessor.for_vqvae(vqvae.config) if with_optional_components else None,
        )

    def outputs(self, pipeline, seed=0):
        frames = [photo.resize((16, 16)) for photo in photos()]
        return [pipeline(frames=frames, actions=[0, 2], generator=seeded(seed), output_type="np").frames]


class TestVideoPredictionPipeline(PipelineContracts):
    tester = VideoPredictionPipelineTester()
