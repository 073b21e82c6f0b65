"""VQVAEPipeline with a transformer prior under every contract of tests/pipeline_contracts.py."""

from hf_vqvae import TransformerPriorConfig, TransformerPriorModel, VQVAEConfig, VQVAEImageProcessor, VQVAEModel, VQVAEPipeline

from conftest import TINY_VQVAE, seeded
from pipeline_contracts import PipelineContracts

from test_pipeline_vqvae import VQVAEPipelineTester


TINY_TRANSFORMER_PRIOR = dict(
    num_embeddings=16, grid_height=4, grid_width=4, num_classes=2,
    decoder_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2),
)


class VQVAEPipelineWithTransformerPriorTester(VQVAEPipelineTester):
    def pipeline(self, with_optional_components=True):
        vqvae = VQVAEModel(VQVAEConfig(**TINY_VQVAE)).eval()
        prior = TransformerPriorModel(TransformerPriorConfig(**TINY_TRANSFORMER_PRIOR)).eval()
        processor = VQVAEImageProcessor.for_vqvae(vqvae.config) if with_optional_components else None
        return VQVAEPipeline(vqvae=vqvae, prior=prior, image_processor=processor)

    def outputs(self, pipeline, seed=0):
        return [
            *super().outputs(pipeline, seed),
            pipeline(class_labels=[0, 1], guidance_scale=2.0, top_k=4, generator=seeded(seed), output_type="latent").codes,
        ]


class TestVQVAEPipelineWithTransformerPrior(PipelineContracts):
    tester = VQVAEPipelineWithTransformerPriorTester()
