"""Peak memory of a step, as the quantizer benchmarks measure it (Linux only).

Run each measurement in a fresh subprocess with glibc's mmap threshold fixed at 64 KiB (`MEMORY_ENV`), so that every
tensor above that size is mapped on allocation and unmapped on release: after warm-up steps the peak-RSS mark is reset
(/proc/self/clear_refs), a few steps run, and the peak resident set above the resident set before them is the most
memory a step holds beyond its inputs. (Python-level tracers such as tracemalloc do not see torch's allocations.)
"""

import gc
import os
import subprocess
import sys


MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}


def can_measure() -> bool:
    return sys.platform.startswith("linux") and os.path.exists("/proc/self/clear_refs")


def peak_step_memory(step, warmup: int = 3, steps: int = 3) -> int:
    """Bytes: peak resident memory of `step()` above the memory held before it (run in this process)."""
    for _ in range(warmup):
        step()
    gc.collect()
    resident = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets the peak-RSS mark (VmHWM) to the current RSS
    for _ in range(steps):
        step()
    return (_status_kib("VmHWM") - resident) * 1024


def measure_in_subprocess(arguments: list[str]) -> int | None:
    """Run `python <arguments>` (a benchmark asked to measure one step) and read the bytes it prints last; None where
    this machine cannot measure."""
    if not can_measure():
        return None
    result = subprocess.run([sys.executable, *arguments], env={**os.environ, **MEMORY_ENV}, capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1])


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")
