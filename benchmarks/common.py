"""Helpers shared by the benchmark scripts: machine description, timing, tables and JSON output.

Every result file carries the exact command line, the machine and the settings, so a number in
benchmarks/results/ can always be traced back to how it was produced.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]


def command_line() -> str:
    """The command that produced this run, as one shell-quoted string."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    return shlex.join(["python", str(script), *sys.argv[1:]])


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | str | None = None) -> dict[str, Any]:
    """CPU / GPU, library versions and thread counts: what a reader needs to compare numbers."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - transformers is a hard dependency of the project
        pass
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_count=torch.cuda.device_count(),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so a wall-clock reading covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulates seconds per named stage: ``with watch("forward"): ...``; syncs the GPU around each."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, stage: str) -> "_Lap":
        return _Lap(self, stage)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.counts[stage] = self.counts.get(stage, 0) + 1

    def mean(self, stage: str) -> float:
        return self.seconds[stage] / self.counts[stage]


class _Lap:
    def __init__(self, watch: Stopwatch, stage: str):
        self.watch, self.stage = watch, stage

    def __enter__(self) -> "_Lap":
        synchronize(self.watch.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.watch.device)
        self.watch.add(self.stage, time.perf_counter() - self.start)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    """A plain-text table: numbers right-aligned (3 significant decimals), text left-aligned."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            if not math.isfinite(value):
                return str(value)
            return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
        return str(value)

    headers = list(headers or columns)
    body = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in columns]

    def line(cells: Iterable[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(headers), line("-" * w for w in widths), *(line(r) for r in body)])


def write_json(path: str | Path, result: dict[str, Any]) -> Path:
    """Write `result` (indented, keys in insertion order) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return path


# Published dense (no structured sparsity) bf16 tensor-core peaks, TFLOP/s, with fp32 accumulation:
# the denominator of MFU. The vendors' sheets print the 2:4-sparsity figure first; dense is half.
# Sources: NVIDIA H100 datasheet (SXM 1,979 / PCIe 1,513 / NVL 1,671 sparse), H200 datasheet (SXM 1,979 /
# NVL 1,671 sparse), A100 datasheet (312 dense / 624 sparse), L40S datasheet (362.05 dense / 733 sparse),
# L4 datasheet (242 sparse), A10 datasheet (125 dense / 250 sparse), Ada GPU architecture whitepaper
# appendix (RTX 4090: 165.2 dense / 330.3 sparse with fp32 accumulate), Ampere GA102 whitepaper
# (RTX 3090: 71 dense / 142 sparse with fp32 accumulate). The first key found as a whole word of the device
# name wins (so "L4" is not "L40S", "A10" is not "A100" or "A10G"); an unknown GPU gets None, never a guess.
PUBLISHED_BF16_DENSE_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM5; torch names it "NVIDIA H100 80GB HBM3"
    ("H200 NVL", 835.0),
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
)


def published_peak_tflops(device_name: str) -> float | None:
    """The published dense bf16 peak of a GPU named `device_name` (torch.cuda.get_device_name), or None."""
    for key, tflops in PUBLISHED_BF16_DENSE_TFLOPS:
        if re.search(rf"\b{re.escape(key)}\b", device_name, flags=re.IGNORECASE):
            return tflops
    return None


def peak_rss_mib_each(run_one: Callable[[Any], bool], jobs: Sequence[Any]) -> list[float]:
    """Peak RSS (MiB) of `run_one(job)` for each job, each run in a forked child of this process.

    Every child starts as a copy of this process (models loaded once, before), so the
    difference between two jobs is what the larger one needed: how memory grows with the input.
    -1 for a job whose `run_one` returned False or raised. Fork only from a process whose
    thread pools are not in use (e.g. ``torch.set_num_threads(1)``): a forked pool can hang.
    Used by benchmarks/bench_extraction.py and the memory tests (tests/test_features_photo.py,
    tests/test_merr_hardening.py).
    """
    import resource

    peaks = []
    for job in jobs:
        read, write = os.pipe()
        if os.fork() == 0:  # the child: run, report its own peak, leave without cleanup
            try:
                ok = bool(run_one(job))
            except BaseException:  # noqa: BLE001 (reported as -1; the parent decides)
                ok = False
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if ok else -1024
            os.write(write, str(peak).encode())
            os._exit(0)
        os.close(write)
        os.wait()
        peaks.append(int(os.read(read, 64).decode() or -1024) / 1024)  # KiB on Linux
        os.close(read)
    return peaks
