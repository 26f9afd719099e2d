"""The JSON that every ``coffea-hepfm bench ... --json PATH`` writes: figures plus their provenance.

Each file holds the benchmark's own figures and, under the same keys everywhere, what produced them::

    {"benchmark": "score", "command": "coffea-hepfm bench score -n 200000 --json s.json",
     "created": "2026-11-30T19:26:06+00:00", "machine": {...}, "versions": {...}, ...figures...}

``machine`` names the CPU model, the cores this process may use, the load average (1, 5, 15 min) at the
start and at the end of the run, and total memory: a figure from a loaded machine says so in its file.

Like :mod:`coffea_hepfm.errors`, this module imports nothing from the package, so every stage may use it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["command_line", "machine_info", "versions", "write_json"]


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed: ``coffea-hepfm bench ...`` (the script path shortened to its name)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name in ("coffea-hepfm", "__main__.py", "cli.py"):
        argv[0] = "coffea-hepfm"
    return shlex.join(argv)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    """The SIMD / matrix extensions that decide CPU inference speed (from /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
                return [f for f in wanted if f in flags]
    except OSError:
        pass
    return []


def machine_info() -> dict[str, Any]:
    """CPU model and SIMD flags, usable cores, load average now, total memory, GPU (if torch sees one)."""
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_avg": [round(v, 2) for v in os.getloadavg()],
        "hostname": platform.node(),
    }
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError):
        pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries the figures depend on (those already imported)."""
    out = {"python": platform.python_version()}
    for name in ("coffea_hepfm", "torch", "numpy", "numba", "awkward", "uproot", "coffea", "onnxruntime"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = str(getattr(module, "__version__", "?"))
    return out


def _clean(value):
    """JSON-safe: numpy scalars/arrays to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(
    path: str | os.PathLike, benchmark: str, figures: dict, start_machine: dict | None = None
) -> Path:
    """Write ``figures`` with their provenance to ``path`` (temporary name, then rename).

    ``start_machine`` is :func:`machine_info` taken when the run began; the load average at the end is
    added as ``machine.load_avg_end``.
    """
    machine = dict(start_machine) if start_machine is not None else machine_info()
    machine["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    doc = {
        "benchmark": benchmark,
        "command": command_line(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "versions": versions(),
        **figures,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(_clean(doc), indent=1, sort_keys=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
