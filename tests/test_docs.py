"""The README's, docs' and docstrings' examples run, so they cannot drift from the code.

Every ```python block runs; a block fenced ```python no-run (one that needs the Hub, say) does not.
"""

import doctest
import importlib
import re
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MODULES_WITH_EXAMPLES = [
    "hf_vqvae.models.vqvae.modeling_vqvae",
    "hf_vqvae.models.vqvae.image_processing_vqvae",
    "hf_vqvae.models.audio_vqvae.modeling_audio_vqvae",
    "hf_vqvae.models.hierarchical_vqvae.modeling_hierarchical_vqvae",
]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if python_blocks(p)], ids=lambda p: p.name)
def test_document_examples_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in python_blocks(path):
        exec(compile(block, str(path), "exec"), namespace)


@pytest.mark.parametrize("module_name", MODULES_WITH_EXAMPLES)
def test_docstring_examples_run(module_name):
    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_api_reference_covers_every_public_name():
    import hf_vqvae

    reference = (ROOT / "docs" / "api.md").read_text()
    missing = [name for name in hf_vqvae.__all__ if f"### `{name}`" not in reference]
    assert not missing, f"docs/api.md has no section for {missing}"
