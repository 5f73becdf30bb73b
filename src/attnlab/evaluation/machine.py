"""The machine a measurement came from, recorded beside every benchmark result."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# the CPU features that decide which kernels torch can use (fp32 AVX-512, bf16 dot products, AMX)
MATTERING_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """Which of MATTERING_FLAGS /proc/cpuinfo lists (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in MATTERING_FLAGS if flag in present]
    except OSError:
        pass
    return []


def machine_info() -> dict[str, Any]:
    """Platform, CPU, core count, Python, torch version and threads (and the GPU, if any)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def record_header(script: str, argv: list[str]) -> dict[str, Any]:
    """What every benchmark record starts with: the command that made it (`python SCRIPT
    ARGS`), when (UTC) and on which machine."""
    import datetime as dt
    import shlex

    return {"command": shlex.join(["python", script, *argv]),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine_info()}


def write_record(path: str | Path, record: dict[str, Any]) -> Path:
    """Write a benchmark record as indented JSON, atomically (never half-written), and say
    where."""
    import json

    from attnlab.serialization import atomic_write

    text = json.dumps(record, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    print(f"wrote {path}")
    return Path(path)
