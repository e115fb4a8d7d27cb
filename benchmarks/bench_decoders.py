"""decord vs PyAV on trusted dataset clips: is decord still worth keeping anywhere?

    python benchmarks/bench_decoders.py                 # ~1 min on 2 shared cores
    python benchmarks/bench_decoders.py --rounds 7 --seconds 4

Uploads and inference decode with PyAV (current FFmpeg) only; decord (last release 2021, an
FFmpeg 4.1-era libavcodec) may stay for *trusted* dataset clips only where it is measurably
faster. This measures the three ways the code reads a dataset clip, each with both decoders,
on the same synthetic h264 clips (a moving gradient with noise, so frames differ; 25 fps):

- ``one frame (middle)``: what `EmotionDataset.frame` does with frame_choice first/middle
  (decord: index then seek to the frame; PyAV: decode in order up to it).
- ``one frame (peak)``: frame_choice peak (every frame looked at as a small grey thumbnail,
  then the chosen one read).
- ``all frames``: every frame as RGB (`read_frames`, the MERR builder's old path).

Each cell is the median of `--rounds` runs, the two decoders alternating in one process, so
load hits both alike. The ratio is PyAV time / decord time (> 1: decord is faster). Writes
benchmarks/results/decoders_cpu.json (or --json). Numbers on the shared development machine
are "measured under load".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import command_line, format_table, machine_info, write_json  # noqa: E402
from minigpt4.common import media  # noqa: E402

SIZES = {"360p": (640, 360), "720p": (1280, 720)}
KEEP_RATIO = 1.2  # decord stays for trusted clips only where it is at least this much faster


def make_clip(path: Path, width: int, height: int, seconds: float, fps: int = 25) -> Path:
    rng = np.random.default_rng(0)
    xs = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    ys = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]

    def frames():
        for t in range(int(seconds * fps)):
            base = (xs * 0.6 + ys * 0.4 + 6 * t) % 256
            frame = np.repeat(base, 3, axis=2) + rng.normal(0, 8, (height, width, 3))
            yield np.clip(frame, 0, 255).astype(np.uint8)

    media.write_video(path, frames(), fps=fps)
    return path


# ---- the two decoders, read the way the dataset code reads ------------------------------------

def decord_reader(path: Path):
    import decord

    return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)


def decord_middle(path: Path) -> np.ndarray:
    reader = decord_reader(path)
    return reader[len(reader) // 2].asnumpy()


def pyav_middle(path: Path) -> np.ndarray:
    middle = media.probe_video(path).num_frames // 2
    for frame in media.stream_frames(path, stop_after=middle):
        if frame.index == middle:
            return frame.rgb()
    raise AssertionError("middle frame not reached")


def decord_peak(path: Path) -> np.ndarray:
    reader = decord_reader(path)
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    index = media.choose_frame_index(frames, "peak")
    return frames[index]


def pyav_peak(path: Path) -> np.ndarray:
    frames = pyav_all(path)
    return frames[media.choose_frame_index(frames, "peak")]


def decord_all(path: Path) -> np.ndarray:
    reader = decord_reader(path)
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def pyav_all(path: Path) -> np.ndarray:
    return np.stack([frame.rgb() for frame in media.stream_frames(path)])


TASKS = {
    "one frame (middle)": (decord_middle, pyav_middle),
    "one frame (peak)": (decord_peak, pyav_peak),
    "all frames": (decord_all, pyav_all),
}


def timed(fn, path: Path) -> float:
    start = time.perf_counter()
    fn(path)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length (s, 25 fps)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "decoders_cpu.json"))
    parser.add_argument("--note", default="measured under load (2 CPU cores shared by up to 8 engineers)")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, (width, height) in SIZES.items():
            clip = make_clip(Path(tmp) / f"clip_{size}.mp4", width, height, args.seconds)
            for task, (with_decord, with_pyav) in TASKS.items():
                np.testing.assert_array_equal(with_decord(clip).shape, with_pyav(clip).shape)  # same work
                times = {"decord": [], "pyav": []}
                for _ in range(args.rounds):  # alternate, so load hits both alike
                    times["decord"].append(timed(with_decord, clip))
                    times["pyav"].append(timed(with_pyav, clip))
                decord_s, pyav_s = statistics.median(times["decord"]), statistics.median(times["pyav"])
                rows.append({"clip": f"{size} {args.seconds:g} s", "task": task, "decord_s": round(decord_s, 4),
                             "pyav_s": round(pyav_s, 4), "pyav_over_decord": round(pyav_s / decord_s, 2)})
    table = format_table(rows, ["clip", "task", "decord_s", "pyav_s", "pyav_over_decord"],
                         ["clip", "read", "decord s", "PyAV s", "PyAV / decord"])
    # per way of reading: decord is kept only where it is >= KEEP_RATIO x faster on every clip size
    keep = {task: all(r["pyav_over_decord"] >= KEEP_RATIO for r in rows if r["task"] == task) for task in TASKS}
    verdict = "; ".join(f"{task}: {'keep decord' if kept else 'PyAV'}" for task, kept in keep.items())
    print(table)
    print(f"decoder for trusted dataset clips (decord kept where >= {KEEP_RATIO}x faster): {verdict}")
    print(f"({args.note})")
    write_json(args.json, {"command": command_line(), "machine": machine_info(), "note": args.note,
                           "settings": {"rounds": args.rounds, "seconds": args.seconds, "fps": 25,
                                        "keep_ratio": KEEP_RATIO},
                           "rows": rows, "keep_decord": keep, "verdict": verdict})
    return 0


if __name__ == "__main__":
    sys.exit(main())
