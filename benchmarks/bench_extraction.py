"""Throughput of feature extraction: clips/s and seconds per stage (decode, faces, encoders).

    .venv/bin/python benchmarks/bench_extraction.py                       # 12 synthetic clips, tiny encoders
    .venv/bin/python benchmarks/bench_extraction.py --videos DIR --cfg-path minigpt4/configs/features/real.yaml

Without --videos it writes N synthetic clips (a moving face-like ellipse on a gradient, with a
tone) using write_video into a temporary folder. With the tiny config and no encoder folders it
creates tiny random encoders in the temporary folder too, so it runs anywhere. Results go to
benchmarks/results/extraction_cpu.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minigpt4.common.config import load_config  # noqa: E402
from minigpt4.features.config import FeatureConfig  # noqa: E402
from minigpt4.features.extract import extract_features, find_videos  # noqa: E402
from minigpt4.features.media import write_video  # noqa: E402


def synthetic_clip(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """A gradient background with a skin-toned ellipse that drifts and 'opens its mouth'."""
    import cv2

    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    background = (40 + 120 * xs / width + 40 * ys / height).astype(np.uint8)
    frames = np.repeat(np.repeat(background[..., None], 3, axis=2)[None], num_frames, axis=0).copy()
    center = np.array([width / 2, height / 2]) + rng.normal(0, width / 20, 2)
    for t in range(num_frames):
        c = (int(center[0] + 3 * np.sin(t / 5)), int(center[1]))
        axes = (width // 6, height // 4)
        cv2.ellipse(frames[t], c, axes, 0, 0, 360, (200, 160, 130), -1)
        mouth = max(1, int(axes[1] * 0.3 * abs(np.sin(t / 7))))
        cv2.ellipse(frames[t], (c[0], c[1] + axes[1] // 2), (axes[0] // 2, mouth), 0, 0, 360, (90, 30, 30), -1)
    return frames


def make_clips(folder: Path, count: int, num_frames: int, height: int, width: int, fps: float) -> None:
    for i in range(count):
        t = np.arange(int(16000 * num_frames / fps)) / 16000
        audio = (0.3 * np.sin(2 * np.pi * (200 + 20 * i) * t)).astype(np.float32)
        write_video(folder / f"clip_{i:04d}.mp4", synthetic_clip(num_frames, height, width, i), fps, audio)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", help="benchmark these clips instead of synthetic ones")
    parser.add_argument("--num-clips", type=int, default=12)
    parser.add_argument("--frames", type=int, default=50, help="frames per synthetic clip")
    parser.add_argument("--size", default="240x320", help="HxW of synthetic clips")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--cfg-path", default="minigpt4/configs/features/tiny.yaml")
    parser.add_argument("--options", nargs="*", default=[])
    parser.add_argument("--json", default="benchmarks/results/extraction_cpu.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_extraction_") as tmp:
        tmp_dir = Path(tmp)
        cfg = load_config(FeatureConfig, args.cfg_path, args.options)
        missing = [p for p in (cfg.audio_encoder, cfg.local_encoder, cfg.temporal_encoder)
                   if not (Path(p) / "config.json").is_file()]
        if missing and "tiny" in Path(args.cfg_path).name:
            from minigpt4.features.encoders import make_tiny_encoders

            folders = make_tiny_encoders(tmp_dir / "encoders")
            cfg = load_config(FeatureConfig, args.cfg_path, [
                f"audio_encoder={folders['hubert']}", f"local_encoder={folders['mae']}",
                f"temporal_encoder={folders['videomae']}", *args.options])
        if args.videos:
            video_dir = Path(args.videos)
        else:
            video_dir = tmp_dir / "videos"
            height, width = (int(v) for v in args.size.split("x"))
            make_clips(video_dir, args.num_clips, args.frames, height, width, args.fps)
        paths, problems = find_videos(video_dir)
        report = extract_features(paths, tmp_dir / "features", cfg, progress=False, problems=problems)

    seconds = report.seconds
    done = len(report.done)
    result = {
        "clips": done, "failed": len(report.failed), "frames": report.frames_decoded,
        "clips_per_s": done / seconds["wall"] if seconds["wall"] else 0.0,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "config": args.cfg_path, "options": args.options,
        "videos": args.videos or f"{args.num_clips} synthetic {args.size} clips, {args.frames} frames @ {args.fps} fps",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "note": "decode/faces/audio_decode are summed over worker threads, so they can exceed wall time",
    }
    print(f"{'stage':<14}{'seconds':>10}{'per clip (ms)':>16}")
    for stage, value in seconds.items():
        print(f"{stage:<14}{value:>10.2f}{1000 * value / max(done, 1):>16.1f}")
    print(f"{done} clips ({report.frames_decoded} frames), {len(report.failed)} failed: "
          f"{result['clips_per_s']:.2f} clips/s")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
