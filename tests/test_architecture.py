"""The package's layers (docs/architecture.md), read from its sources without importing them: every import runs
downward or stays within its own part, no two files and no two folders import each other, the recipes and the
commands stand side by side; and `import hf_vqvae` loads no pipeline, no data module and no training code."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest


PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "hf_vqvae"

# The parts of the package from the bottom up. A module may import modules of its own part and of the parts below;
# parts on one line stand side by side and never import each other. A part is a module or a package (a dotted path
# below `hf_vqvae`, its submodules included); a module belongs to the longest part that names it. `folder.*` makes
# every module or package directly in the folder a part of its own: a new model, recipe or command needs no entry.
LAYERS = [
    ["version", "argument_checks", "input_checks", "loading", "hub"],
    ["quantization", "layers.sampling", "layers.fused_steps", "layers.gates", "layers.sampler_threads"],
    ["layers.gated_pixelcnn", "layers.wavenet"],
    ["layers"],
    ["configuration_utils"],
    ["modeling_utils", "model_card_utils"],
    ["models.*"],
    ["models.auto", "models"],
    ["pipelines", "data"],
    ["training", "commands.extraction"],
    ["training.recipes.*", "commands.*", "training.recipes", "commands"],
    [""],  # the package itself: the public API, which nothing in the package imports
]
# The gated PixelCNN's cached sampler belongs to it: the two files are one part.
SAME_PART = {"layers.gated_pixelcnn_sampler": "layers.gated_pixelcnn"}


def module_name(path: Path, root: Path) -> str:
    """`models.vqvae.modeling_vqvae` for `<root>/models/vqvae/modeling_vqvae.py`; a package by its folder."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path, modules: set[str]) -> list[tuple[str, int]]:
    """The package's modules that `path` imports anywhere (module level or inside a function), with their lines."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            absolute = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            absolute = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".") if package else []
            base = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
            relative = [f"{base}.{alias.name}".strip(".") for alias in node.names]
            # `from .a import b` imports the submodule a.b when there is one, else the module a.
            found += [(target if target in modules else base, node.lineno) for target in relative]
            continue
        else:
            continue
        for target in absolute:
            if target == "hf_vqvae" or target.startswith("hf_vqvae."):
                target = target.removeprefix("hf_vqvae").lstrip(".")
                while target and target not in modules:  # `from hf_vqvae.a import name`
                    target = target.rpartition(".")[0]
                found.append((target, node.lineno))
    return found


def import_graph(root: Path) -> dict[str, list[tuple[str, int]]]:
    """Each module of the package and the package's modules it imports."""
    paths = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    return {name: imported_modules(path, root, set(paths)) for name, path in paths.items()}


def part_of(module: str) -> str:
    module = SAME_PART.get(module, module)
    named = [part for layer in LAYERS for part in layer if part == "" or module == part or module.startswith(f"{part}.")]
    part = max(named, key=len)
    folders = [part[:-2] for layer in LAYERS for part in layer if part.endswith(".*")]
    for folder in folders:
        if module.startswith(f"{folder}.") and len(folder) >= len(part):
            return f"{folder}.{module[len(folder) + 1:].split('.')[0]}"
    return part


def layer_of(part: str) -> int:
    named = [index for index, layer in enumerate(LAYERS) if part in layer]
    return named[0] if named else next(index for index, layer in enumerate(LAYERS) if f"{part.rpartition('.')[0]}.*" in layer)


def upward_imports(graph: dict) -> list[str]:
    """Imports of a part above the importer, or of a part beside it."""
    problems = []
    for module, imports in graph.items():
        for target, line in imports:
            source_part, target_part = part_of(module), part_of(target)
            if source_part == target_part:
                continue
            source_layer, target_layer = layer_of(source_part), layer_of(target_part)
            if target_layer > source_layer:
                problems.append(f"{module}:{line} imports {target or 'hf_vqvae'}, a layer above it")
            elif target_layer == source_layer:
                problems.append(f"{module}:{line} imports {target}, which stands beside it ({target_part})")
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of a directed graph found by depth-first search, one per back edge."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def folder_of(module: str, root: Path) -> str:
    path = root.joinpath(*module.split(".")) if module else root
    return module if path.is_dir() else module.rpartition(".")[0]


@pytest.fixture(scope="module")
def graph():
    return import_graph(PACKAGE_ROOT)


def test_every_module_has_a_place_in_the_layers(graph):
    # A new top-level module or folder must be placed in LAYERS (and in docs/architecture.md).
    unplaced = [module for module in graph if part_of(module) == "" and module != ""]
    assert not unplaced, f"modules in no part of LAYERS: {unplaced}"


def test_imports_run_downward_and_side_by_side_parts_never_import_each_other(graph):
    problems = upward_imports(graph)
    assert not problems, "imports against the layers of docs/architecture.md:\n" + "\n".join(problems)


def test_no_two_files_import_each_other(graph):
    edges = {module: {target for target, _ in imports if target != module} for module, imports in graph.items()}
    found = cycles(edges)
    assert not found, "import cycles between files:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_no_two_folders_import_each_other(graph):
    # The package's __init__ is the public API over everything; the folders' graph is that of the modules below it.
    edges = {}
    for module, imports in graph.items():
        if module == "":
            continue
        source = folder_of(module, PACKAGE_ROOT)
        for target, _ in imports:
            target_folder = folder_of(target, PACKAGE_ROOT)
            if target_folder != source:
                edges.setdefault(source, set()).add(target_folder)
    found = cycles(edges)
    assert not found, "import cycles between folders:\n" + "\n".join(" -> ".join(f"{f or 'hf_vqvae'}/" for f in cycle) for cycle in found)


def test_an_upward_import_is_caught(tmp_path):
    # The checks above read sources: an import of the training code from a data module must fail them.
    package = tmp_path / "hf_vqvae"
    for folder in ("data", "training"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "training" / "arguments.py").write_text("from ..data import images\n")
    (package / "data" / "images.py").write_text("import math\n\ndef parse():\n    from ..training.arguments import parse_arguments\n")
    graph = import_graph(package)
    assert upward_imports(graph) == ["data.images:4 imports training.arguments, a layer above it"]
    assert cycles({module: {target for target, _ in imports} for module, imports in graph.items()}) == [
        ["data.images", "training.arguments", "data.images"]
    ]


PROBE = """
import json, sys
import hf_vqvae
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("diffusers", "datasets", "vizdoom")
                or name.startswith(("hf_vqvae.pipelines", "hf_vqvae.data", "hf_vqvae.training", "hf_vqvae.commands")))
from transformers import AutoConfig, AutoModel
config = AutoConfig.for_model(hf_vqvae.VQVAEConfig.model_type, hidden_channels=8, residual_channels=4, num_embeddings=4, embedding_dim=2)
model = AutoModel.from_config(config)
pipeline = hf_vqvae.VQVAEPipeline
from hf_vqvae.pipelines import VQVAEPipeline
print(json.dumps({
    "loaded_by_import": loaded,
    "auto_model": type(model).__name__,
    "pipeline_is_the_class": pipeline is VQVAEPipeline,
    "public_names": sorted(name for name in hf_vqvae.__all__ if getattr(hf_vqvae, name, None) is not None),
    "all": sorted(hf_vqvae.__all__),
    "in_dir": sorted(set(hf_vqvae.__all__) - set(dir(hf_vqvae))),
}))
"""


def test_import_hf_vqvae_registers_the_models_and_loads_the_rest_when_used():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded_by_import"] == []
    assert report["auto_model"] == "VQVAEModel"
    assert report["pipeline_is_the_class"]
    assert report["public_names"] == report["all"] and len(report["all"]) == 49
    assert report["in_dir"] == []


def test_an_unknown_name_is_an_attribute_error():
    import hf_vqvae

    with pytest.raises(AttributeError, match="module 'hf_vqvae' has no attribute 'VQVAEPipelin'"):
        hf_vqvae.VQVAEPipelin
