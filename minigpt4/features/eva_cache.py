"""The EVA token cache as a step of its own: the frozen frame tower over every clip's frame, once.

    python -m minigpt4.features eva-cache --frames MERR/frames --out MERR/eva_cache \\
        --cfg-path train_configs/emotion_llama_stage1_coarse.yaml [--dtype bf16] [--max-per-shard 1000]
    torchrun --nproc-per-node 8 -m minigpt4.features eva-cache ...   # one share of the clips per GPU

The tower is the config's `model.vision`, built and run by the same functions the model uses live
(`models.vision_towers.frozen_frame_tower` / `frame_tokens`, in the model's dtype) on the same
pixels (`common.media.load_frame` + `processors.EvaImageTransform`), so a cached clip gives the
model the tokens it would compute itself (docs/training.md says how close, per storage dtype).
The format (tar shards of ``<name>.eva.npy`` + the ``eva_cache.json`` manifest) is
`models/eva_cache.py`'s, which the dataset reads.

Each rank encodes the clips `common.sharding` gives it and writes its own shard series; a shard
is written under a hidden temporary name and renamed when full, so a killed run leaves only
whole shards, and a re-run encodes only the clips no shard holds. After a barrier rank 0 writes
the manifest (from the shards on disk) and the merged report, ``eva_cache_report.json``: clips
written, clips already cached, and every frame that could not be read, with the reason.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch
import webdataset as wds
from tqdm import tqdm

from minigpt4.common.config import ConfigError, load_config, load_section
from minigpt4.common.distributed import DistInfo, barrier
from minigpt4.common.io import atomic_write, file_sha256
from minigpt4.common.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, MediaError, load_frame
from minigpt4.common.sharding import merge_owned, rank_report_files, rank_report_path, take_share
from minigpt4.features.config import FeatureConfig
from minigpt4.models.config import ModelConfig, VisionConfig
from minigpt4.models.eva_cache import (FORMAT, MANIFEST_NAME, STORAGE_DTYPES, EvaCacheError, encode_tokens,
                                       npy_array, read_manifest, shard_files, shard_members, shard_name, tower_mismatch,
                                       tower_spec)
from minigpt4.models.vision_towers import frame_tokens, frozen_frame_tower
from minigpt4.processors import EvaImageTransform

REPORT_NAME = "eva_cache_report.json"
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NAME_FIELDS = ("written", "skipped_existing", "failed")


@dataclass
class FrameTower:
    """Which tower makes the tokens and in which dtype it runs (the model's `dtype`)."""

    vision: VisionConfig
    dtype: str
    source: str  # the config it came from


def load_frame_tower(cfg_path: str | Path, options: Iterable[str] = ()) -> FrameTower:
    """The tower of a model config or of any train / eval config's `model:` (`options` are keys
    of that section: ``vision.weights=...``), or a features config's `eva_vision` (run in fp32,
    as `extract --eva-cache` does)."""
    options = list(options)
    try:
        model = load_section(ModelConfig, cfg_path, "model", options)
        return FrameTower(model.vision, model.dtype, str(cfg_path))
    except ConfigError as model_error:
        try:
            features = load_config(FeatureConfig, cfg_path, options)
        except (ConfigError, ValueError):
            raise ConfigError(f"--cfg-path {cfg_path}: not a model, train or eval config ({model_error}) "
                              "nor a features config") from None
    return FrameTower(load_config(VisionConfig, features.eva_vision), "fp32", str(cfg_path))


def find_frames(folder: str | Path, names: Iterable[str] | None = None) -> tuple[dict[str, Path], dict[str, str]]:
    """{clip name: its frame image or video} in `folder` (an image wins over a video of the same
    name), and {name: problem} for every name of `names` that has neither."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--frames {folder} is not a folder (give the frames folder, e.g. MERR/frames, "
                                "or a folder of videos)")
    found: dict[str, Path] = {}
    for suffixes in (IMAGE_SUFFIXES, VIDEO_SUFFIXES):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in suffixes and path.is_file():
                found.setdefault(path.stem, path)
    if names is None:
        return found, {}
    wanted = list(dict.fromkeys(names))
    problems = {n: f"no frame image ({'/'.join(IMAGE_SUFFIXES)}) or video in {folder}" for n in wanted if n not in found}
    return {n: found[n] for n in wanted if n in found}, problems


@dataclass
class EvaCacheReport:
    written: list[str] = field(default_factory=list)  # encoded by this run
    skipped_existing: list[str] = field(default_factory=list)  # already in a shard
    failed: dict[str, str] = field(default_factory=dict)  # name -> why its frame was skipped
    shards: list[str] = field(default_factory=list)  # shards this run wrote
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "tower": 0.0, "write": 0.0, "wall": 0.0})

    def summary(self) -> str:
        return (f"eva-cache: {len(self.written)} clips encoded into {len(self.shards)} shard(s), "
                f"{len(self.skipped_existing)} already cached, {len(self.failed)} skipped (bad frame) "
                f"in {self.seconds['wall']:.1f} s")


def cache_spec(tower: FrameTower, dtype: str, frame_choice: str) -> dict:
    """The manifest fields every shard of a cache must share."""
    weights = tower.vision.weights
    spec = tower_spec(tower.vision)
    if weights is not None and Path(weights).is_file():
        spec["weights_bytes"] = Path(weights).stat().st_size
        spec["weights_sha256"] = file_sha256(weights)
    spec["dtype"] = tower.dtype  # what the tower ran in
    return {"format": FORMAT, "tower": spec, "dtype": dtype, "frame_choice": frame_choice, "config": tower.source}


def check_resumable(out_dir: Path, spec: dict) -> None:
    """Shards already in `out_dir` must come from the same tower, weights and storage dtype."""
    if not (out_dir / MANIFEST_NAME).is_file():
        if shard_files(out_dir):
            raise EvaCacheError(f"{out_dir} holds eva-*.tar shards but no {MANIFEST_NAME}, so what made them is "
                                "unknown; move them away or choose another --out")
        return
    earlier = read_manifest(out_dir)
    problems = tower_mismatch(earlier, _vision(spec["tower"]))
    for key in ("weights_sha256", "dtype"):
        if earlier["tower"].get(key) != spec["tower"].get(key):
            problems.append(f"tower {key} {earlier['tower'].get(key)!r} (now {spec['tower'].get(key)!r})")
    if earlier["dtype"] != spec["dtype"]:
        problems.append(f"storage dtype {earlier['dtype']} (now --dtype {spec['dtype']})")
    if problems:
        raise EvaCacheError(f"{out_dir} holds a cache made differently: {'; '.join(problems)}. Choose another --out "
                            "or delete it to rebuild")


def _vision(spec: dict) -> VisionConfig:
    return VisionConfig(**{k: v for k, v in spec.items() if k in VisionConfig.__dataclass_fields__})


def write_manifest(out_dir: Path, spec: dict, complete: bool) -> dict:
    """Index every finished shard in `out_dir` (a clip in two shards counts once, the first)."""
    shards, seen = [], set()
    for path in shard_files(out_dir):
        clips = [(n, o, s) for n, o, s in shard_members(path) if n not in seen]
        seen.update(n for n, _, _ in clips)
        shards.append({"file": path.name, "bytes": path.stat().st_size, "clips": clips})
    manifest = {**spec, "complete": complete, "clips": len(seen), "token_shape": None, "shards": shards}
    first = next((s for s in shards if s["clips"]), None)
    if first is not None:
        name, offset, length = first["clips"][0]
        with open(out_dir / first["file"], "rb") as handle:
            handle.seek(offset)
            manifest["token_shape"] = list(npy_array(handle.read(length), f"{first['file']}:{name}").shape)
    atomic_write(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=1))
    return manifest


def build_eva_cache(frames: dict[str, Path], out_dir: str | Path, tower: FrameTower, *, dtype: str = "bf16",
                    max_per_shard: int = 1000, batch_size: int = 8, device: str = "cpu", frame_choice: str = "first",
                    workers: int = 2, problems: dict[str, str] | None = None, info: DistInfo | None = None,
                    progress: bool = True) -> EvaCacheReport:
    """Encode every clip of `frames` ({name: image or video}) that `out_dir` does not hold yet,
    this rank's share of them under torchrun; returns the merged report on rank 0."""
    if dtype not in STORAGE_DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: choose one of {', '.join(STORAGE_DTYPES)}")
    if max_per_shard < 1 or batch_size < 1:
        raise ConfigError(f"--max-per-shard and --batch-size must be >= 1 (got {max_per_shard}, {batch_size})")
    rank, world = (info.rank, info.world_size) if info is not None and info.enabled else (0, 1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    spec = cache_spec(tower, dtype, frame_choice)
    check_resumable(out_dir, spec)  # every rank reads the same files, so every rank agrees
    _sync(info)
    if rank == 0:
        write_manifest(out_dir, spec, complete=False)  # says what made the shards, should this run stop
    _sync(info)

    cached = {name for path in shard_files(out_dir) for name, _, _ in shard_members(path)}
    problems = dict(problems or {})
    problems.update({n: "the clip name contains '.', which a webdataset key cannot hold; rename the file"
                     for n in frames if "." in n})
    mine = [name for name in take_share(frames, rank, world) if name not in problems]
    report = EvaCacheReport(skipped_existing=[n for n in mine if n in cached])
    report.failed.update({name: problems[name] for name in take_share(problems, rank, world)})
    todo = [n for n in mine if n not in cached]
    part = rank_report_path(out_dir / REPORT_NAME, rank, world) if world > 1 else out_dir / REPORT_NAME
    if todo:
        encoder = _TokenEncoder(tower, dtype, device, batch_size, workers, frame_choice)
        bar = tqdm(total=len(todo), desc="eva-cache", unit="clip", disable=not (progress and rank == 0))
        samples = encoder.samples({n: frames[n] for n in todo}, report, bar)
        index = _next_index(out_dir, rank, world)
        while True:
            batch = list(itertools.islice(samples, max_per_shard))  # at most one shard of bytes in memory
            if not batch:
                break
            start = time.perf_counter()
            path = write_shard(out_dir / shard_name(index, rank, world), batch)
            report.written += [name for name, _ in batch]
            report.shards.append(path.name)
            report.seconds["write"] += time.perf_counter() - start
            index += 1
            atomic_write(part, json.dumps(asdict(report), indent=1))
        bar.close()
    report.seconds["wall"] = time.perf_counter() - wall
    atomic_write(part, json.dumps(asdict(report), indent=1))
    if world > 1:
        print(f"rank {rank} of {world}: {len(report.written)} encoded, {len(report.skipped_existing)} cached, "
              f"{len(report.failed)} failed", file=sys.stderr, flush=True)
    _sync(info)
    if rank != 0:
        return report
    write_manifest(out_dir, spec, complete=True)
    return _merge_reports(out_dir) if world > 1 else report


def _sync(info: DistInfo | None) -> None:
    if info is not None and info.enabled:
        barrier(info)


def write_shard(path: Path, batch: list[tuple[str, bytes]]) -> Path:
    """One tar of (clip name, `encode_tokens` bytes), visible under `path` only once complete."""
    def fill(handle) -> None:
        with wds.TarWriter(handle) as sink:
            for name, data in batch:
                sink.write({"__key__": name, "eva.npy": data})

    return atomic_write(path, fill)


def _next_index(out_dir: Path, rank: int, world: int) -> int:
    """The first shard number of this rank's series that is not on disk (a re-run appends)."""
    taken = {p.name for p in shard_files(out_dir)}
    return next(i for i in itertools.count() if shard_name(i, rank, world) not in taken)


def _merge_reports(out_dir: Path) -> EvaCacheReport:
    """Fold the rank parts into eva_cache_report.json (wall time: the slowest rank's)."""
    files = rank_report_files(out_dir / REPORT_NAME)
    parts = [(rank, world, json.loads(path.read_text())) for rank, world, path in files]
    merged = merge_owned({}, parts, NAME_FIELDS)
    report = EvaCacheReport(**{name: merged[name] for name in NAME_FIELDS})
    for _, _, part in parts:
        report.shards += part.get("shards", [])
        for stage, value in part.get("seconds", {}).items():
            report.seconds[stage] = max(report.seconds[stage], value) if stage == "wall" else report.seconds[stage] + value
    atomic_write(out_dir / REPORT_NAME, json.dumps(asdict(report), indent=1))
    for _, _, path in files:
        path.unlink()
    return report


class _TokenEncoder:
    """The model's frozen tower on this rank's device; frames decoded in a small thread pool."""

    def __init__(self, tower: FrameTower, dtype: str, device: str, batch_size: int, workers: int, frame_choice: str):
        self.model = frozen_frame_tower(tower.vision, TORCH_DTYPES[tower.dtype]).to(device)
        self.transform = EvaImageTransform(tower.vision.image_size)
        self.dtype, self.batch_size, self.workers, self.frame_choice = dtype, batch_size, workers, frame_choice

    def _pixels(self, path: Path) -> torch.Tensor:
        return self.transform(load_frame(path, self.frame_choice))

    def samples(self, frames: dict[str, Path], report: EvaCacheReport, bar) -> Iterator[tuple[str, bytes]]:
        """(name, .eva.npy bytes) of each clip whose frame reads, in `frames` order; bad frames
        go to `report.failed` with the reason and are skipped."""
        names = list(frames)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="frames") as pool:
            for start in range(0, len(names), self.batch_size):
                chunk = names[start:start + self.batch_size]
                began = time.perf_counter()
                outcomes = list(pool.map(lambda n: _attempt(self._pixels, frames[n]), chunk))
                report.seconds["decode"] += time.perf_counter() - began
                good = [(n, x) for n, x in zip(chunk, outcomes) if isinstance(x, torch.Tensor)]
                report.failed.update({n: x for n, x in zip(chunk, outcomes) if isinstance(x, str)})
                if good:
                    began = time.perf_counter()
                    tokens = frame_tokens(self.model, torch.stack([x for _, x in good]))
                    report.seconds["tower"] += time.perf_counter() - began
                    finite = torch.isfinite(tokens.float()).flatten(1).all(dim=1).tolist()
                    for (name, _), row, ok in zip(good, tokens, finite):
                        if ok:
                            yield name, encode_tokens(row, self.dtype)
                        else:
                            report.failed[name] = "the tower gave NaN/inf tokens (check model.vision.weights)"
                bar.update(len(chunk))


def _attempt(load, path: Path):
    """`load(path)`, or the reason it failed as a string (one bad frame never stops the run)."""
    try:
        return load(path)
    except MediaError as err:
        return f"{err.problem} ({type(err).__name__})"
    except Exception as err:  # as extraction: whatever one clip's decoding raises is that clip's failure
        return f"{type(err).__name__}: {err}"
