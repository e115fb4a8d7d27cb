"""Feature extraction over torchrun processes: each rank extracts its share of the clips.

    torchrun --nproc-per-node 8 -m minigpt4.features extract --videos DIR --out DIR --cfg-path ...

The share, the per-rank report parts and their merge are `minigpt4.common.sharding`'s: a clip
belongs to rank ``sha1(name) mod WORLD_SIZE``, each rank runs its encoders on ``cuda:LOCAL_RANK``
(or the CPU), writes its records to ``.ranks/extraction_report.rank<k>-of-<n>.json``, and rank 0
merges the parts into the one extraction_report.json after a barrier. The progress bar is
rank 0's (its share is about 1/WORLD_SIZE of the clips).
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Iterable

from minigpt4.common.sharding import (merge_owned, rank_device, rank_report_files, rank_report_path, shard_of,
                                      take_share)
from minigpt4.features.config import FeatureConfig
from minigpt4.features.extract import REPORT_NAME, ExtractionReport, FeatureExtractor, extract_features, write_report
from minigpt4.common.distributed import DistInfo, barrier

# report fields that hold clip names: merged by which rank owns each name
NAME_FIELDS = ("done", "skipped_existing", "failed", "no_audio", "no_face_frames", "faces_seen", "extracted")


def extract_features_sharded(video_paths: Iterable[str | Path], out_dir: str | Path, cfg: FeatureConfig,
                             info: DistInfo, problems: dict[str, str] | None = None,
                             progress: bool = True) -> ExtractionReport:
    """`extract_features` for this rank's share; returns the merged report on rank 0 and this
    rank's own part elsewhere. With one process it is `extract_features` itself."""
    if not info.enabled:
        return extract_features(video_paths, out_dir, cfg, progress=progress, problems=problems)
    out_dir = Path(out_dir)
    if info.is_main:
        merge_rank_reports(out_dir)  # parts a crashed run left behind
    barrier(info)

    def mine(name: str) -> bool:
        return shard_of(name, info.world_size) == info.rank

    start = _only(ExtractionReport.continuing(out_dir), mine)
    paths = take_share(map(Path, video_paths), info.rank, info.world_size, name=lambda p: p.stem)
    extractor = FeatureExtractor(replace(cfg, device=rank_device(cfg.device, info.local_rank)))
    report = extractor.run(paths, out_dir, problems={k: v for k, v in (problems or {}).items() if mine(k)},
                           progress=progress and info.is_main, report=start,
                           report_path=rank_report_path(out_dir / REPORT_NAME, info.rank, info.world_size))
    counts = report.counts()
    print(f"rank {info.rank} of {info.world_size}: done {counts['done']}, skipped {counts['skipped_existing']}, "
          f"failed {len(report.failed)} ({len(paths)} clips in its share)", file=sys.stderr, flush=True)
    barrier(info)
    if info.is_main:
        return merge_rank_reports(out_dir) or report
    return report


def merge_rank_reports(out_dir: Path) -> ExtractionReport | None:
    """Fold the rank parts in `out_dir` into extraction_report.json and delete them; None if
    there are none. Run counters are summed over ranks, except wall time (the slowest rank's)."""
    files = rank_report_files(out_dir / REPORT_NAME)
    if not files:
        return None
    parts = []
    for rank, world, path in files:
        try:
            parts.append((rank, world, json.loads(path.read_text())))
        except json.JSONDecodeError:
            continue  # written atomically, so only a foreign file; its clips are still on disk
    base = ExtractionReport.continuing(out_dir).to_json()
    merged = merge_owned(base, parts, NAME_FIELDS)
    report = ExtractionReport(**{f.name: merged[f.name] for f in fields(ExtractionReport) if f.name in NAME_FIELDS})
    report.frames_decoded = sum(int(part.get("frames_decoded", 0)) for _, _, part in parts)
    for _, _, part in parts:
        for stage, value in part.get("seconds", {}).items():
            if stage == "wall":
                report.seconds["wall"] = max(report.seconds["wall"], value)
            else:
                report.seconds[stage] = report.seconds.get(stage, 0.0) + value
    write_report(report, out_dir)
    for _, _, path in files:
        path.unlink()
    return report


def _only(report: ExtractionReport, keep) -> ExtractionReport:
    """The records of `report` for the names `keep` accepts."""
    data = report.to_json()
    kept = {}
    for name in NAME_FIELDS:
        value = data[name]
        kept[name] = {k: v for k, v in value.items() if keep(k)} if isinstance(value, dict) else [k for k in value if keep(k)]
    return ExtractionReport(**kept)
