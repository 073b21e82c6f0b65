"""VQVAEPipeline under every contract of tests/pipeline_contracts.py."""

import pytest
import torch
from diffusers import DiffusionPipeline

from hf_vqvae import PixelCNNPriorConfig, PixelCNNPriorModel, VQVAEConfig, VQVAEImageProcessor, VQVAEModel, VQVAEPipeline

from conftest import TINY_VQVAE, seeded
from pipeline_contracts import PipelineContracts, PipelineTester, photos


TINY_PRIOR = dict(num_embeddings=16, grid_height=4, grid_width=4, hidden_channels=8, num_layers=2, kernel_size=3, skip_channels=8)


class VQVAEPipelineTester(PipelineTester):
    pipeline_class = VQVAEPipeline
    optional_components = ("image_processor",)

    def pipeline(self, with_optional_components=True):
        vqvae = VQVAEModel(VQVAEConfig(**TINY_VQVAE)).eval()
        prior = PixelCNNPriorModel(PixelCNNPriorConfig(**TINY_PRIOR, num_classes=2)).eval()
        processor = VQVAEImageProcessor.for_vqvae(vqvae.config) if with_optional_components else None
        return VQVAEPipeline(vqvae=vqvae, prior=prior, image_processor=processor)

    def outputs(self, pipeline, seed=0):
        return [
            pipeline(batch_size=2, class_labels=[0, 1], generator=seeded(seed), output_type="np").images,
            pipeline(image=photos(), output_type="np").images,
        ]


class TestVQVAEPipeline(PipelineContracts):
    tester = VQVAEPipelineTester()

    def test_the_package_never_runs_the_entry_module_that_diffusers_runs(self, tmp_path, modules_cache):
        pipeline = self.tester.pipeline()
        pipeline.save_pretrained(tmp_path)
        entries = sorted(tmp_path.rglob("hf_vqvae_entry.py"))
        assert [path.parent.name for path in entries] == [tmp_path.name, "image_processor", "prior", "vqvae"]
        for path in entries:
            path.write_text("raise RuntimeError('the entry module ran')\n")
        loaded = VQVAEPipeline.from_pretrained(tmp_path)  # the package's own loading: no file of the folder runs
        assert torch.equal(loaded(batch_size=2, class_labels=0, generator=seeded(), output_type="latent").codes,
                           pipeline(batch_size=2, class_labels=0, generator=seeded(), output_type="latent").codes)
        with pytest.raises(RuntimeError, match="the entry module ran"):
            DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)  # the generic loader runs it: trust it first
