"""The contracts every pipeline of the package meets, checked for each pipeline by one mixin, as diffusers' own
`PipelineTesterMixin` (tests/pipelines/test_pipelines_common.py) checks its pipelines.

A pipeline's test module (tests/pipelines/<name>/test_pipeline_<name>.py) gives a `PipelineTester`: tiny
components, which of them are optional, and seeded calls through every path the pipeline has.
`class TestXPipeline(PipelineContracts): tester = XPipelineTester()` then runs every contract below on it.
"""

import json
import sys
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DiffusionPipeline

from conftest import put_in_hub_cache


class PipelineTester:
    """What the contracts need to know about one pipeline."""

    pipeline_class: type = None
    optional_components: tuple[str, ...] = ()

    def pipeline(self, with_optional_components: bool = True):
        """A tiny pipeline; its optional components given (matching the models) or None."""
        raise NotImplementedError

    def outputs(self, pipeline, seed: int = 0) -> list[np.ndarray]:
        """Seeded outputs of `pipeline` through every path it has (those its missing optional components serve
        left out), as arrays."""
        raise NotImplementedError



def photos() -> list:
    """Two flat photos of a size no model takes, for the pipelines' image paths."""
    return [PIL.Image.fromarray(np.full((20, 20, 3), value, dtype=np.uint8)) for value in (30, 200)]


def assert_same_outputs(left: list[np.ndarray], right: list[np.ndarray]) -> None:
    assert len(left) == len(right)
    for expected, actual in zip(left, right):
        np.testing.assert_array_equal(actual, expected)


class PipelineContracts:
    """Every contract, for the pipeline of `tester`."""

    tester: PipelineTester

    @pytest.fixture
    def modules_cache(self, tmp_path, monkeypatch):
        """diffusers copies custom pipeline code into its module cache: a fresh one per test, off the user's."""
        import diffusers.utils.dynamic_modules_utils as dynamic_modules

        monkeypatch.setattr(dynamic_modules, "HF_MODULES_CACHE", str(tmp_path / "modules"))
        monkeypatch.setattr(sys, "path", list(sys.path))
        return tmp_path / "modules"

    def test_the_same_generator_gives_the_same_outputs_and_another_seed_others(self):
        pipeline = self.tester.pipeline()
        first = self.tester.outputs(pipeline, seed=0)
        assert_same_outputs(first, self.tester.outputs(pipeline, seed=0))
        others = self.tester.outputs(pipeline, seed=1)
        assert any(not np.array_equal(left, right) for left, right in zip(first, others)), "the seed changes nothing"

    def test_save_and_load_give_the_same_outputs_with_safetensors_only(self, tmp_path):
        pipeline = self.tester.pipeline()
        pipeline.save_pretrained(tmp_path)
        weights = {path.suffix for path in tmp_path.rglob("*") if path.suffix in (".bin", ".pt", ".pth", ".pkl", ".safetensors")}
        assert weights == {".safetensors"}
        loaded = self.tester.pipeline_class.from_pretrained(tmp_path)
        assert_same_outputs(self.tester.outputs(pipeline), self.tester.outputs(loaded))

    def test_a_variant_is_saved_and_loaded_as_diffusers_does(self, tmp_path):
        pipeline = self.tester.pipeline()
        pipeline.save_pretrained(tmp_path, variant="fp16")
        model_folders = [name for name, component in pipeline.components.items() if isinstance(component, torch.nn.Module)]
        for name in model_folders:
            assert sorted(path.name for path in (tmp_path / name).glob("*.safetensors")) == ["model.fp16.safetensors"], name
        loaded = self.tester.pipeline_class.from_pretrained(tmp_path, variant="fp16")
        assert_same_outputs(self.tester.outputs(pipeline), self.tester.outputs(loaded))
        with pytest.raises(OSError):
            self.tester.pipeline_class.from_pretrained(tmp_path)  # no plain weights: the variant must be asked for

    def test_it_runs_without_its_optional_components_and_keeps_them_none(self, tmp_path):
        given, left_out = self.tester.pipeline(), self.tester.pipeline(with_optional_components=False)
        for name, component in given.components.items():  # the same weights in both
            if isinstance(component, torch.nn.Module) and left_out.components[name] is not None:
                left_out.components[name].load_state_dict(component.state_dict())
        assert self.tester.optional_components
        assert all(getattr(left_out, name) is None for name in self.tester.optional_components)
        expected = self.tester.outputs(given)[: len(self.tester.outputs(left_out))]
        assert_same_outputs(expected, self.tester.outputs(left_out))  # the matching processor is made when it is None

        left_out.save_pretrained(tmp_path)
        index = json.loads((tmp_path / "model_index.json").read_text())
        for name in self.tester.optional_components:
            assert index[name] == [None, None] and not (tmp_path / name).exists()
        reloaded = self.tester.pipeline_class.from_pretrained(tmp_path)
        assert all(getattr(reloaded, name) is None for name in self.tester.optional_components)
        assert_same_outputs(expected, self.tester.outputs(reloaded))

    def test_diffusers_generic_entry_point_loads_it_from_a_folder_and_a_hub_id(
        self, tmp_path, offline_hub, modules_cache, monkeypatch
    ):
        pipeline = self.tester.pipeline()
        folder = tmp_path / "saved"
        pipeline.save_pretrained(folder)
        with pytest.raises(ValueError, match="trust_remote_code=True"):
            DiffusionPipeline.from_pretrained(folder)  # diffusers runs no custom code unless told to
        expected = self.tester.outputs(pipeline)
        loaded = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
        assert type(loaded) is type(pipeline)
        assert_same_outputs(expected, self.tester.outputs(loaded))

        # A Hub id, offline, from the cache.
        put_in_hub_cache(offline_hub, "org/pipeline", folder)
        assert_same_outputs(expected, self.tester.outputs(DiffusionPipeline.from_pretrained("org/pipeline", trust_remote_code=True)))

        # A Hub id with the Hub answering (model_info lists the repository's files; the files come from the cache):
        # diffusers then checks each component's module against the listing, as it does online.
        import diffusers.pipelines.pipeline_utils as diffusers_pipelines
        import diffusers.utils.dynamic_modules_utils as dynamic_modules

        snapshot = next((offline_hub / "models--org--pipeline" / "snapshots").iterdir())
        files = [str(path.relative_to(snapshot)) for path in snapshot.rglob("*") if path.is_file()]
        info = SimpleNamespace(sha=snapshot.name, siblings=[SimpleNamespace(rfilename=name) for name in files])
        for module in (diffusers_pipelines, dynamic_modules):
            monkeypatch.setattr(module, "model_info", lambda *args, **kwargs: info)
        assert_same_outputs(expected, self.tester.outputs(DiffusionPipeline.from_pretrained("org/pipeline", trust_remote_code=True)))
