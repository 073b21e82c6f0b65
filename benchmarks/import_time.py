"""How long `import hf_vqvae` takes, against what it cannot avoid (torch, transformers' model classes) and against
another copy of the package (`--compare`, e.g. an older checkout's `src/`), each in fresh Python processes.

Each statement runs in `--runs` new processes; a process reports the CPU time (user + system, all its threads) and the
wall time of the statement alone, and the best of the runs is printed (on a machine shared with other work the
wall time mostly measures the others; the CPU time does not). It also lists which heavy libraries and package modules
the statement left imported.

    python benchmarks/import_time.py [--runs 5] [--compare /path/to/other/src]
"""

import argparse
import json
import os
import subprocess
import sys

from machine import describe_machine


STATEMENTS = {
    "floor: torch": "import torch",
    "floor: transformers' models and processors": (
        "import torch; from transformers import PreTrainedModel, AutoModel, AutoImageProcessor, SequenceFeatureExtractor; "
        "import transformers.image_processing_backends"
    ),
    "import hf_vqvae": "import hf_vqvae",
    "from hf_vqvae import VQVAEModel": "from hf_vqvae import VQVAEModel",
    "from hf_vqvae import VQVAEPipeline": "from hf_vqvae import VQVAEPipeline",
}
HEAVY = ("diffusers", "datasets", "accelerate", "vizdoom", "scipy")
PROBE = """
import json, sys, time
start_cpu, start_wall = time.process_time(), time.perf_counter()
{statement}
cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
modules = sorted(sys.modules)
print(json.dumps({{
    "cpu": cpu, "wall": wall,
    "heavy": [name for name in {heavy!r} if name in sys.modules],
    "package": sorted({{name.split(".")[1] for name in modules if name.startswith("hf_vqvae.")}}),
}}))
"""


def measure(statement: str, runs: int, source: str | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if source is not None:
        env["PYTHONPATH"] = source
    results = []
    for _ in range(runs):
        probe = PROBE.format(statement=statement, heavy=HEAVY)
        output = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True, timeout=600)
        results.append(json.loads(output.stdout.strip().splitlines()[-1]))
    best = min(results, key=lambda result: result["cpu"])
    return {**best, "cpu": best["cpu"], "wall": min(result["wall"] for result in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="Fresh processes per statement; the best is kept.")
    parser.add_argument("--compare", default=None, help="Another copy's src/ folder, measured the same way.")
    args = parser.parse_args()
    print(describe_machine())
    print(f"best of {args.runs} fresh processes; CPU time = user + system of the statement")
    sources = {"this copy": None} | ({f"--compare {args.compare}": args.compare} if args.compare else {})
    floor = None
    for label, source in sources.items():
        print(f"\n{label}")
        for name, statement in STATEMENTS.items():
            if source is not None and name.startswith("floor"):
                continue
            result = measure(statement, args.runs, source)
            if name.startswith("floor: transformers"):
                floor = result["cpu"]
            ratio = f"  {result['cpu'] / floor:.2f}x the floor" if floor and not name.startswith("floor") else ""
            print(
                f"  {name:45s} CPU {result['cpu']:6.2f} s  wall {result['wall']:6.2f} s{ratio}\n"
                f"  {'':45s} heavy libraries: {', '.join(result['heavy']) or 'none'}; package parts: "
                f"{', '.join(result['package']) or 'none'}"
            )


if __name__ == "__main__":
    main()
