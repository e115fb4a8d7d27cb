"""Throughput of the MERR builder's offline backends: clips per second per stage on this machine.

    python benchmarks/bench_merr.py                 # 12 clips of 2 s at 25 fps, 300x256
    python benchmarks/bench_merr.py --clips 24 --seconds 4

The clips are matplotlib's Grace Hopper photograph animated with a smile (a real face, so dlib's
detector and landmark predictor do their real work) with a synthetic voice track. Each stage is
timed on its own over all clips (decode, face detection + landmarks, AU estimation + peak,
prosody tone), then the whole `python -m minigpt4.merr build` path (offline config) runs once
cold and once resumed. Results: benchmarks/results/merr_cpu.json (or --json).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import command_line, format_table, machine_info, write_json  # noqa: E402
from minigpt4.data.synthetic import render_voice  # noqa: E402
from minigpt4.common.media import write_video  # noqa: E402
from minigpt4.merr import aus, media  # noqa: E402
from minigpt4.merr.build import MerrBuilder  # noqa: E402
from minigpt4.merr.config import load_merr_config  # noqa: E402
from minigpt4.merr.prosody import measure, tone_word  # noqa: E402


def animated_photo(frames: int, peak: int, amount: float = 14.0) -> np.ndarray:
    """The Grace Hopper photo with the mouth corners warped up around frame `peak`."""
    import cv2
    import matplotlib.cbook as cbook
    from PIL import Image

    image = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    image = cv2.resize(image, (256, 300), interpolation=cv2.INTER_AREA)
    points = media.LandmarkPredictor()(image, media.DlibFaceDetector().detect(image)[0])
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(np.float32)
    out = []
    for t in range(frames):
        weight = np.exp(-0.5 * ((t - peak) / 3.0) ** 2)
        dx, dy = np.zeros_like(xx), np.zeros_like(yy)
        for index, side in ((48, -1), (54, 1)):
            bump = np.exp(-((xx - points[index][0]) ** 2 + (yy - points[index][1]) ** 2) / (2 * 9.0 ** 2))
            dy += weight * amount * bump
            dx -= side * weight * amount * 0.5 * bump
        out.append(cv2.remap(image, xx + dx, yy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


def make_clips(folder: Path, count: int, seconds: float, fps: float) -> list[Path]:
    frames = int(round(seconds * fps))
    labels = ("happy", "sad", "angry", "surprise", "neutral", "worried")
    paths = []
    for i in range(count):
        rng = np.random.default_rng(i)
        video = animated_photo(frames, peak=int(rng.integers(frames // 4, 3 * frames // 4)))
        audio = render_voice(labels[i % len(labels)], 1.0, seconds, rng)
        path = folder / f"clip_{i:03d}.mp4"
        write_video(path, video, fps, audio)
        paths.append(path)
    return paths


def timed(label: str, clips: int, work) -> dict:
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    return {"stage": label, "seconds": round(seconds, 3), "clips_per_s": round(clips / seconds, 3)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "merr_cpu.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "videos").mkdir()
        videos = make_clips(root / "videos", args.clips, args.seconds, args.fps)
        decoded, points, tracks, audio = {}, {}, {}, {}
        measure(render_voice("happy", 1.0, 1.0, np.random.default_rng(0)))  # load torchcrepe once, untimed
        rows = [
            timed("decode video + audio (common.media)", len(videos), lambda: [
                (decoded.__setitem__(v, media.read_frames(v)), audio.__setitem__(v, media.decode_audio(v)))
                for v in videos]),
            timed("faces + 68 landmarks per frame (dlib)", len(videos), lambda: [
                points.__setitem__(v, media.landmarks_per_frame(decoded[v], "dlib", range(len(decoded[v])))[0])
                for v in videos]),
            timed("AU estimates + peak + label", len(videos), lambda: [
                tracks.__setitem__(v, aus.au_label(aus.active_aus(aus.landmark_aus(points[v])[
                    aus.peak_index(aus.landmark_aus(points[v]))]))) for v in videos]),
            timed("prosody tone (torchcrepe tiny)", len(videos), lambda: [tone_word(measure(audio[v])) for v in videos]),
        ]
        cfg = load_merr_config(Path(__file__).resolve().parents[1] / "MERR/configs/offline.yaml")
        summary = {}
        rows.append(timed("whole build, offline config (cold)", len(videos), lambda: summary.update(
            MerrBuilder(cfg, root / "merr", progress=False).run(videos))))
        rows.append(timed("whole build, resumed (all cached)", len(videos), lambda: MerrBuilder(
            cfg, root / "merr", progress=False).run(videos)))
    print(format_table(rows, ["stage", "seconds", "clips_per_s"], ["stage", "seconds", "clips/s"]))
    result = {
        "command": command_line(), "machine": machine_info("cpu"),
        "settings": {"clips": args.clips, "seconds": args.seconds, "fps": args.fps, "size": "256x300"},
        "load_average_1_5_15min_at_end": [round(v, 2) for v in os.getloadavg()],  # other jobs on the machine slow every stage
        "stages": rows,
        "build_summary": {k: summary.get(k) for k in ("analysed", "coarse", "fine", "failed", "seconds", "tones")},
    }
    write_json(args.json, result)
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
