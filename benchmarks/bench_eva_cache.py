"""EVA token cache on disk: bytes per clip and read time, per-clip .npy files vs token shards.

    python benchmarks/bench_eva_cache.py                  # 48 clips of real-size tokens, ~1 min
    python benchmarks/bench_eva_cache.py --clips 200 --max-per-shard 100

Real-size tokens ([1025, 1408]: EVA ViT-g/14 at 448 px) with random values, written by the code
each format has: `np.save` per clip for the folder layout (fp32, and fp16 as `extract --eva-cache`
writes), and `features.eva_cache.write_shard` + `write_manifest` for the shards (bf16, fp16,
fp32). Reading is what a dataset item does: the folder layout's `np.load` + float32 cast,
the shards' `EvaTokenShards.read` (manifest index, seek, decode; bf16 stays bf16, the model
casts it). Clips are read in a shuffled order, one warm-up pass then the best of `--passes`
(the files were just written, so the page cache is warm either way: this measures the per-item
CPU cost, not the disk). Write time includes the fsync of each file. Storage and per-item cost depend only on the token shape, not on the tower, so
no tower runs here (the tower's own cost is bench_gpu.py's `--eva live` vs `cached`).

Writes benchmarks/results/eva_cache_cpu.json (or --json).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, command_line, format_table, machine_info, write_json  # noqa: E402
from minigpt4.features.eva_cache import FrameTower, cache_spec, write_manifest, write_shard  # noqa: E402
from minigpt4.models.config import VisionConfig  # noqa: E402
from minigpt4.models.eva_cache import EvaTokenShards, encode_tokens, shard_name  # noqa: E402


def folder_layout(root: Path, tokens: dict[str, torch.Tensor], dtype: np.dtype) -> tuple[int, callable]:
    root.mkdir(parents=True)
    for name, value in tokens.items():
        np.save(root / f"{name}.npy", value.numpy().astype(dtype))

    def read(name: str) -> torch.Tensor:  # FolderMedia.eva
        return torch.as_tensor(np.load(root / f"{name}.npy", allow_pickle=False).astype(np.float32, copy=False))

    return sum(p.stat().st_size for p in root.iterdir()), read


def shard_layout(root: Path, tokens: dict[str, torch.Tensor], dtype: str, max_per_shard: int) -> tuple[int, callable]:
    root.mkdir(parents=True)
    names = list(tokens)
    for index, start in enumerate(range(0, len(names), max_per_shard)):
        write_shard(root / shard_name(index), [(n, encode_tokens(tokens[n], dtype)) for n in names[start:start + max_per_shard]])
    write_manifest(root, cache_spec(FrameTower(VisionConfig(), "bf16", "benchmark"), dtype, "first"), complete=True)
    cache = EvaTokenShards(root)
    return sum(p.stat().st_size for p in root.iterdir()), cache.read


def timed_reads(read, names: list[str], seed: int, passes: int) -> float:
    """Seconds per item: the best of `passes` timed passes after one warm-up pass (the machine is shared)."""
    order = names[:]
    random.Random(seed).shuffle(order)
    best = float("inf")
    for timed in range(passes + 1):
        start = time.perf_counter()
        for name in order:
            read(name)
        if timed:
            best = min(best, (time.perf_counter() - start) / len(order))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--max-per-shard", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=1025)
    parser.add_argument("--width", type=int, default=1408)
    parser.add_argument("--passes", type=int, default=3, help="timed read passes (the best is kept)")
    parser.add_argument("--json", default=str(REPO / "benchmarks/results/eva_cache_cpu.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    tokens = {f"clip_{i:05d}": torch.randn(args.tokens, args.width) for i in range(args.clips)}
    names = list(tokens)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench_eva_cache_"))
    try:
        layouts = [
            ("per-clip .npy", "fp32", lambda root: folder_layout(root, tokens, np.float32)),
            ("per-clip .npy", "fp16", lambda root: folder_layout(root, tokens, np.float16)),
            ("shards", "fp32", lambda root: shard_layout(root, tokens, "fp32", args.max_per_shard)),
            ("shards", "fp16", lambda root: shard_layout(root, tokens, "fp16", args.max_per_shard)),
            ("shards", "bf16", lambda root: shard_layout(root, tokens, "bf16", args.max_per_shard)),
        ]
        for i, (layout, dtype, build) in enumerate(layouts):
            root = work / f"{i}"
            start = time.perf_counter()
            total, read = build(root)
            write_s = time.perf_counter() - start
            per_read = timed_reads(read, names, seed=i, passes=args.passes)
            rows.append({"layout": layout, "dtype": dtype, "files": sum(1 for _ in root.iterdir()),
                         "mib_per_clip": total / args.clips / 2**20, "write_ms_per_clip": 1000 * write_s / args.clips,
                         "read_ms_per_clip": 1000 * per_read})
            shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0]["mib_per_clip"]
    for row in rows:
        row["bytes_vs_fp32_npy"] = row["mib_per_clip"] / base
    print(format_table(rows, ["layout", "dtype", "files", "mib_per_clip", "bytes_vs_fp32_npy", "write_ms_per_clip",
                              "read_ms_per_clip"]))
    result = {"command": command_line(), "machine": machine_info("cpu"),
              "settings": {"clips": args.clips, "token_shape": [args.tokens, args.width],
                           "max_per_shard": args.max_per_shard, "passes": args.passes}, "rows": rows}
    print(f"wrote {write_json(args.json, result)}")


if __name__ == "__main__":
    main()
