"""``python -m minigpt4.merr build --videos DIR --out DIR --cfg-path MERR/configs/<name>.yaml``.

Builds MERR-format training data (coarse captions, fine reasoning, transcripts, peak frames)
from a folder of videos; see MERR/README.md. Exits with status 1 when no clip could be built,
2 for a bad config or folder (one ``error:`` line naming it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Optional, Sequence

from minigpt4.common.config import ConfigError
from minigpt4.common.openai_client import EndpointConfigError


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m minigpt4.merr", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build MERR-format data from a folder of videos")
    build.add_argument("--videos", required=True, help="folder of .mp4/.avi/... clips (not recursive)")
    build.add_argument("--out", required=True, help="output folder (re-running it resumes)")
    build.add_argument("--cfg-path", default=None, help="MERR/configs/<name>.yaml (default: all offline backends)")
    build.add_argument("--names", default=None, help="only the clips named in this file (an annotation list works)")
    build.add_argument("--with-features", action="store_true", help="also write HL-UTT/, mae_340_UTT/, maeV_399_UTT/")
    build.add_argument("--options", nargs="*", default=[], help="config overrides, e.g. reason.backend=openai")
    build.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from minigpt4.features.extract import find_videos, read_names_file
    from minigpt4.merr.backends import BackendError
    from minigpt4.merr.build import MerrBuilder
    from minigpt4.merr.config import load_merr_config

    args = parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every rank would build the same files over each other
        print("error: python -m minigpt4.merr build runs as one process, not under torchrun; run it with python "
              "(endpoint stages already run in parallel: --options workers=N), and shard feature extraction "
              "with torchrun -m minigpt4.features extract", file=sys.stderr)
        return 2
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
        print(f"error: no videos found in {args.videos} (suffixes .mp4 .avi .mkv .webm .mov)", file=sys.stderr)
        return 2
    try:
        summary = builder.run(videos, problems, with_features=args.with_features)
    except (EndpointConfigError, BackendError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    printable = {k: summary[k] for k in ("clips", "analysed", "coarse", "fine", "drops", "coarse_labels", "fine_labels", "seconds")}
    print(json.dumps(printable, indent=1))
    for name, reason in summary["failed"].items():
        print(f"FAILED {name}: {reason}", file=sys.stderr)
    print(f"wrote {args.out}/MERR_coarse_grained.txt/.json, MERR_fine_grained.txt/.json, transcripts.csv, "
          f"peak_frames.json, MERR_clips.json, summary.json, class_histogram.png", file=sys.stderr)
    return 0 if summary["analysed"] else 1


if __name__ == "__main__":
    sys.exit(main())
