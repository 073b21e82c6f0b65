"""HierarchicalVQVAEPipeline under every contract of tests/pipeline_contracts.py."""

from hf_vqvae import (
    HierarchicalVQVAEConfig, HierarchicalVQVAEModel, HierarchicalVQVAEPipeline, PixelCNNPriorConfig, PixelCNNPriorModel,
    VQVAEConfig, VQVAEImageProcessor, VQVAEModel,
)

from conftest import TINY_VQVAE, seeded
from pipeline_contracts import PipelineContracts, PipelineTester, photos
from test_hierarchy import TINY_STAGE2, TINY_TOP_PRIOR


class HierarchicalVQVAEPipelineTester(PipelineTester):
    pipeline_class = HierarchicalVQVAEPipeline
    optional_components = ("image_processor",)

    def pipeline(self, with_optional_components=True):
        vqvae = VQVAEModel(VQVAEConfig(**TINY_VQVAE)).eval()
        return HierarchicalVQVAEPipeline(
            vqvae=vqvae, stage2=HierarchicalVQVAEModel(HierarchicalVQVAEConfig(**TINY_STAGE2)).eval(),
            prior=PixelCNNPriorModel(PixelCNNPriorConfig(**TINY_TOP_PRIOR)).eval(),
            image_processor=VQVAEImageProcessor.for_vqvae(vqvae.config) if with_optional_components else None,
        )

    def outputs(self, pipeline, seed=0):
        return [
            pipeline(batch_size=2, generator=seeded(seed), output_type="np").images,
            pipeline(image=photos(), generator=seeded(seed), output_type="np").images,
        ]


class TestHierarchicalVQVAEPipeline(PipelineContracts):
    tester = HierarchicalVQVAEPipelineTester()
