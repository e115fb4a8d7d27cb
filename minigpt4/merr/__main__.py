"""``python -m minigpt4.merr build --videos DIR --out DIR --cfg-path MERR/configs/<name>.yaml``.

Builds MERR-format training data (coarse captions, fine reasoning, transcripts, peak frames)
from a folder of videos; see MERR/README.md. Exits with status 1 when no clip could be built,
2 for a bad config or folder (one ``error:`` line naming it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from datetime import timedelta
from typing import Optional, Sequence

import torch

from minigpt4.common.config import ConfigError
from minigpt4.common.distributed import barrier, init_distributed, shutdown
from minigpt4.common.media import VIDEO_SUFFIXES
from minigpt4.common.openai_client import EndpointConfigError
from minigpt4.common.sharding import rank_device, shard_of, take_share
from minigpt4.features.extract import find_videos, read_names_file
from minigpt4.features.sharded import extract_features_sharded
from minigpt4.merr.backends import BackendError
from minigpt4.merr.build import MerrBuilder
from minigpt4.merr.config import load_merr_config


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m minigpt4.merr", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build MERR-format data from a folder of videos")
    build.add_argument("--videos", required=True, help=f"folder of {'/'.join(VIDEO_SUFFIXES)} clips (not recursive)")
    build.add_argument("--out", required=True, help="output folder (re-running it resumes)")
    build.add_argument("--cfg-path", default=None, help="MERR/configs/<name>.yaml (default: all offline backends)")
    build.add_argument("--names", default=None, help="only the clips named in this file (an annotation list works)")
    build.add_argument("--with-features", action="store_true", help="also write HL-UTT/, mae_340_UTT/, maeV_399_UTT/")
    build.add_argument("--options", nargs="*", default=[], help="config overrides, e.g. reason.backend=openai")
    build.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = load_merr_config(args.cfg_path, args.options)
        names = read_names_file(args.names) if args.names else None
        videos, problems = find_videos(args.videos, names)
        if cfg.max_clips:
            videos = videos[: cfg.max_clips]
        builder = MerrBuilder(cfg, args.out, progress=not args.no_progress)
    except (ConfigError, BackendError, FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not videos:
        print(f"error: no videos found in {args.videos} (suffixes {' '.join(VIDEO_SUFFIXES)})", file=sys.stderr)
        return 2
    try:
        summary = build(builder, videos, problems, args.with_features)
    except (EndpointConfigError, BackendError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if summary is None:
        return 0  # a torchrun rank other than 0: rank 0 writes the outputs and prints the summary
    printable = {k: summary[k] for k in ("clips", "analysed", "coarse", "fine", "drops", "coarse_labels", "fine_labels", "seconds")}
    print(json.dumps(printable, indent=1))
    for name, reason in summary["failed"].items():
        print(f"FAILED {name}: {reason}", file=sys.stderr)
    for name, reason in summary.get("work_files_redone", {}).items():
        print(f"REDONE {name}: its work file was damaged ({reason})", file=sys.stderr)
    print(f"wrote {args.out}/MERR_coarse_grained.txt/.json, MERR_fine_grained.txt/.json, transcripts.csv, "
          f"peak_frames.json, MERR_clips.json, summary.json, class_histogram.png", file=sys.stderr)
    return 0 if summary["analysed"] else 1


def build(builder, videos, problems, with_features: bool) -> dict | None:
    """`builder.run`, or under torchrun: every rank runs the per-clip stages (and feature
    extraction) on its share of the clips (`minigpt4.common.sharding`), then rank 0 does the
    selection across clips and writes the outputs from the stored per-clip results. Returns the
    summary on rank 0, None on the other ranks."""
    info = init_distributed("cpu", timeout=timedelta(days=7))  # gloo, only to meet at barriers
    if not info.enabled:
        return builder.run(videos, problems, with_features=with_features)
    try:
        device = builder.cfg.device or ("cuda" if torch.cuda.is_available() else None)
        if device:
            builder.cfg = replace(builder.cfg, device=rank_device(device, info.local_rank))
        mine = take_share(videos, info.rank, info.world_size, name=lambda path: path.stem)
        share = builder.run(mine, {k: v for k, v in problems.items() if shard_of(k, info.world_size) == info.rank},
                            per_clip_only=True)
        if with_features:
            extract_features_sharded([v for v in mine if v.stem not in share["failed"]], builder.out,
                                     builder.feature_config(), info, progress=builder.progress)
        print(f"rank {info.rank} of {info.world_size}: analysed {share['analysed']} of {len(mine)} clips",
              file=sys.stderr, flush=True)
        barrier(info)
        return builder.run(videos, problems, with_features=with_features) if info.is_main else None
    finally:
        shutdown(info)


if __name__ == "__main__":
    sys.exit(main())
