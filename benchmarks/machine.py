"""The line every benchmark prints first: what it ran on."""

import os
import platform

import torch


def describe_machine() -> str:
    processor = platform.processor() or "unknown processor"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            processor = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"machine: {platform.platform()}, {processor}, {os.cpu_count()} logical CPUs\n"
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
