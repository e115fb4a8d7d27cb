"""Feature extraction on real-photo footage: clips/s, face hit rate and peak memory, before vs after.

    python benchmarks/bench_extraction.py                           # ~6 min on 2 shared cores
    python benchmarks/bench_extraction.py --baseline-rev dfc6540 --rounds 2 --lengths 2 4 8 16

"Before" is the extraction code at git revision `--baseline-rev` (exported with `git archive`
into a temporary folder), "after" is this working tree; both run in the same script run, in
alternating subprocesses with the same settings, on the same clips, so machine load hits both
alike (the best of `--rounds` is kept). Only the face/video code differs: tiny random encoders
stand in for the real ones (on a CPU they are a small part of the time either way).

Clips: `minigpt4.features.sample_clips` places matplotlib's real portrait photograph small in
wide frames (1080p, 720p, portrait phone video, 480p, 360p; .mp4 .mkv .avi .webm .mov; 12-30 fps),
moving, with a larger face-like distractor in some. Each clip's true face box per frame is known.

- clips/s: clips over the wall time of the extraction loop (`extraction_report.json`'s
  `seconds.wall`; decode_workers=2). Loading the encoders, once per job, is reported apart
  (`load_s`): on this shared machine it swings by tens of seconds with the load.
- face hit rate: the fraction of frames whose crop box (the box the extractor crops there)
  overlaps the true face with IoU >= 0.5. Before: the largest Haar box per frame, nearest
  detected frame's box when none (that code's rule); after: the main face track.
- peak memory: peak RSS of extracting one 1080p clip of each length in `--lengths` (seconds at
  25 fps), each in a forked child of a process that loaded the encoders ('before' only up to
  4 s: it holds every decoded frame, 3.2 GB at 8 s).

Writes benchmarks/results/extraction_cpu.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name, suffix, height, width, fps, seconds, face width in pixels, distractor
CLIP_SPECS = [
    ("wide1080_small_face", ".mp4", 1080, 1920, 25, 3, 100, True),
    ("wide1080_face160", ".mp4", 1080, 1920, 30, 2, 160, False),
    ("hd720_distractor", ".mkv", 720, 1280, 25, 3, 120, True),
    ("portrait_phone", ".mp4", 1920, 1080, 30, 2, 180, False),
    ("sd480", ".avi", 480, 854, 25, 3, 90, True),
    ("sd360", ".webm", 360, 640, 15, 4, 80, False),
    ("hd720_12fps", ".mov", 720, 1280, 12, 4, 110, True),
    ("wide1080_6s", ".mp4", 1080, 1920, 25, 6, 110, True),
]

COMMON_OPTIONS = ["face_detector=haar", "face_size=224", "local_max_frames=64", "decode_workers=2",
                  "torch_threads=1"]


# --------------------------------------------------------------------------------------------
# worker: runs inside a subprocess whose `minigpt4` is either the baseline or this tree
# --------------------------------------------------------------------------------------------

def worker(task: dict) -> dict:
    from minigpt4.common.config import load_config
    from minigpt4.features.config import FeatureConfig

    cfg = load_config(FeatureConfig, task["cfg_path"], task["options"])
    if task["kind"] == "throughput":
        from minigpt4.features.extract import extract_features, find_videos

        paths, problems = find_videos(task["videos"])
        start = time.perf_counter()
        report = extract_features(paths, task["out"], cfg, progress=False, problems=problems)
        wall = time.perf_counter() - start
        hits = face_hits(paths, cfg, task["truth"]) if task.get("truth") else None
        return {"wall_s": report.seconds["wall"], "load_s": wall - report.seconds["wall"],
                "done": len(report.done), "failed": report.failed,
                "frames": report.frames_decoded, "seconds": report.seconds, "hits": hits}
    return {"peak_rss_mib": peak_rss_per_clip(cfg, task["jobs"])}


def face_hits(paths, cfg, truth_file: str) -> dict:
    """Per clip: frames whose crop box has IoU >= 0.5 with the true face box, and the frame count."""
    from minigpt4.features import faces

    truth = json.loads(Path(truth_file).read_text())
    hits = {}
    for path in paths:
        if hasattr(faces, "track_video_faces"):  # this tree: the main face track
            result = faces.track_video_faces(path, faces.build_face_detector(cfg.face_detector),
                                             min_face_size=cfg.min_face_size, detect_stride=cfg.detect_stride,
                                             full_scan_stride=cfg.full_scan_stride)
            boxes = result.boxes
        else:  # the baseline: largest box per detected frame, the nearest detected frame's box otherwise
            from minigpt4.common.media import read_frames

            frames = read_frames(path)
            detector = faces.build_face_detector(cfg.face_detector)
            detected = [None] * len(frames)
            for index in range(0, len(frames), cfg.detect_stride):
                found = detector.detect(frames[index])
                detected[index] = found[0] if found else None
            boxes = faces._fill_missing_boxes(detected, frames.shape[1], frames.shape[2])
            del frames
        true_boxes = truth[path.stem]
        hit = sum(iou(box, true) >= 0.5 for box, true in zip(boxes, true_boxes))
        hits[path.stem] = [int(hit), len(true_boxes)]
    return hits


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


def peak_rss_per_clip(cfg, jobs) -> list[float]:
    """Load the encoders once, then extract each clip in a forked child and read its peak RSS
    (torch_threads=1, so no thread pool is forked)."""
    from benchmarks.common import peak_rss_mib_each
    from minigpt4.features.extract import FeatureExtractor

    extractor = FeatureExtractor(cfg)
    return peak_rss_mib_each(lambda job: extractor.run([job[0]], job[1], progress=False).done, jobs)


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------

def run_worker(tree: Path, task: dict) -> dict:
    """Run `worker(task)` in a fresh Python whose `minigpt4` package comes from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    code = (f"import json, sys; sys.path.insert(0, {str(tree)!r}); sys.path.insert(1, {str(REPO)!r}); "
            "from benchmarks.bench_extraction import worker; "
            "print('RESULT' + json.dumps(worker(json.loads(sys.stdin.read()))))")
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(task), cwd=tree, env=env,
                          capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"worker in {tree} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT"):])


def export_baseline(rev: str, into: Path) -> Path:
    """The repository's `minigpt4/` package at `rev`, unpacked into `into`."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "minigpt4"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def make_clips(folder: Path) -> Path:
    """The real-photo clips of CLIP_SPECS and their true face boxes (truth.json)."""
    sys.path.insert(0, str(REPO))
    from minigpt4.features.sample_clips import PhotoClip, write_photo_clip

    truth = {}
    for seed, (name, suffix, height, width, fps, seconds, face_px, distractor) in enumerate(CLIP_SPECS):
        clip = PhotoClip(num_frames=int(fps * seconds), height=height, width=width, face_px=face_px,
                         distractor=distractor, seed=seed)
        write_photo_clip(folder / f"{name}{suffix}", clip, fps=fps)
        truth[name] = [clip.face_box(t) for t in range(clip.num_frames)]
    (folder.parent / "truth.json").write_text(json.dumps(truth))
    return folder.parent / "truth.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-rev", default="dfc6540", help="git revision of the 'before' code")
    parser.add_argument("--rounds", type=int, default=2, help="throughput runs of each; the fastest is kept")
    parser.add_argument("--lengths", type=float, nargs="*", default=[2, 4, 8, 16],
                        help="1080p clip lengths (s) for peak memory; 'before' stops at 4 s (it holds every "
                             "frame: 3.2 GB at 8 s)")
    parser.add_argument("--cfg-path", default="minigpt4/configs/features/tiny.yaml")
    parser.add_argument("--options", nargs="*", default=["min_face_size=64"],
                        help="config overrides for 'after' only (default: FeatureConfig's own min_face_size, "
                             "which tiny.yaml lowers for its 64-pixel synthetic clips)")
    parser.add_argument("--json", default=str(REPO / "benchmarks/results/extraction_cpu.json"))
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from benchmarks.common import command_line, format_table, machine_info, write_json
    from minigpt4.features.encoders import make_tiny_encoders
    from minigpt4.features.sample_clips import PhotoClip, write_photo_clip

    with tempfile.TemporaryDirectory(prefix="bench_extraction_") as tmp:
        tmp = Path(tmp)
        trees = {"before": export_baseline(args.baseline_rev, tmp / "baseline"), "after": REPO}
        folders = make_tiny_encoders(tmp / "encoders", hidden=32, image_size=32)
        encoder_options = [f"audio_encoder={folders['hubert']}", f"local_encoder={folders['mae']}",
                           f"temporal_encoder={folders['videomae']}"]
        options = {"before": encoder_options + COMMON_OPTIONS,
                   "after": encoder_options + COMMON_OPTIONS + args.options}
        print("writing the real-photo clips ...", flush=True)
        truth = make_clips(tmp / "videos" / "clips")

        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for round_index in range(args.rounds):
            for which in ("before", "after"):
                task = {"kind": "throughput", "cfg_path": args.cfg_path, "options": options[which],
                        "videos": str(tmp / "videos" / "clips"), "out": str(tmp / f"out_{which}_{round_index}"),
                        "truth": str(truth) if round_index == 0 else None}
                result = run_worker(trees[which], task)
                print(f"round {round_index + 1} {which}: {result['wall_s']:.1f} s", flush=True)
                runs[which].append(result)

        print("peak memory ...", flush=True)
        memory_jobs: dict[str, list] = {}
        for seconds in args.lengths:
            path = tmp / "memory" / f"len_{seconds:g}s.mp4"
            write_photo_clip(path, PhotoClip(num_frames=int(25 * seconds), seed=7), fps=25)
            for which in ("before", "after"):
                if which == "before" and seconds > 4:
                    continue
                memory_jobs.setdefault(which, []).append([str(path), str(tmp / f"mem_{which}_{seconds:g}")])
        memory = {}
        for which, jobs in memory_jobs.items():
            memory_options = [o for o in options[which] if not o.startswith("decode_workers")] + ["decode_workers=1"]
            task = {"kind": "memory", "cfg_path": args.cfg_path, "options": memory_options, "jobs": jobs}
            peaks = run_worker(trees[which], task)["peak_rss_mib"]
            memory[which] = {Path(video).stem.removeprefix("len_"): round(peak, 1)
                             for (video, _), peak in zip(jobs, peaks)}

    rows, summary = [], {}
    for which in ("before", "after"):
        best = min(runs[which], key=lambda r: r["wall_s"])
        hits = runs[which][0]["hits"]
        hit_frames, all_frames = sum(h for h, _ in hits.values()), sum(n for _, n in hits.values())
        summary[which] = {
            "clips": best["done"], "failed": best["failed"], "frames": best["frames"],
            "wall_s": [round(r["wall_s"], 2) for r in runs[which]],
            "load_s": [round(r["load_s"], 2) for r in runs[which]],
            "clips_per_s": round(best["done"] / best["wall_s"], 3),
            "face_hit_rate": round(hit_frames / all_frames, 4),
            "face_hits_per_clip": hits, "seconds_best_run": {k: round(v, 3) for k, v in best["seconds"].items()},
            "peak_rss_mib_by_length": memory.get(which, {}),
        }
        rows.append({"code": which, "clips/s": summary[which]["clips_per_s"],
                     "face hit rate": summary[which]["face_hit_rate"],
                     **{f"RSS {k} (MiB)": v for k, v in memory.get(which, {}).items()}})
    speedup = summary["after"]["clips_per_s"] / summary["before"]["clips_per_s"]
    columns = ["code", "clips/s", "face hit rate"] + [f"RSS {s:g}s (MiB)" for s in args.lengths]
    print(format_table(rows, columns))
    print(f"speed-up: {speedup:.2f}x clips/s")
    result = {
        "command": command_line(), "machine": machine_info(),
        "settings": {"baseline_rev": args.baseline_rev, "rounds": args.rounds, "cfg_path": args.cfg_path,
                     "options": COMMON_OPTIONS, "after_options": args.options, "clips": [dict(zip(
                         ("name", "suffix", "height", "width", "fps", "seconds", "face_px", "distractor"), spec))
                         for spec in CLIP_SPECS]},
        "before": summary["before"], "after": summary["after"], "speedup_clips_per_s": round(speedup, 2),
    }
    print(f"wrote {write_json(args.json, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
