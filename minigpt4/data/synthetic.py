"""A small synthetic MERR-format corpus that a CPU can learn from (``make demo``, tests).

    python -m minigpt4.data.synthetic --out data/synthetic --clips 600 --seed 0

Each clip is a real ``.mp4`` (H.264 + AAC via `common.media.write_video`) of a cartoon face and
a voice-like sound, plus a transcript, for one of the six MER2023 labels. The label is carried by
three modalities -- the *face* (expression and head motion: every visual feature), the *voice*
(pitch level and contour, loudness, syllable tempo, vibrato, brightness) and the *words* -- but
per clip only some of them carry it: each is informative with probability 0.6, redrawn until at
least two are. An uninformative modality looks/sounds/reads neutral, or shows a weak (35 %)
version of another label. So no single modality is right on every clip (a perfect reader of one
modality is right on ~80 %), while the strong cues of all modalities together always decide the
label. The captions and reasons mention only the clues that are present: explaining which
clues carry the label is the "reasoning" the model has to learn.

Layout written under ``--out`` (the release's formats, see docs/data_formats.md):

    train.txt, val.txt, test.txt   ``name frame_count label`` per line (stratified 70/15/15)
    MERR_coarse_grained.json       {name: {"caption": ...}}
    MERR_fine_grained.json         {name: {"smp_reason_caption": ..., "reason_caption": ...}}
    transcripts.csv                name,sentence
    videos/<name>.mp4              64x64, 8 fps, 1 s, 16 kHz mono audio by default
    corpus.json                    per clip: label, split, informative modalities, what each shows

Everything is a function of ``--seed`` (each clip has its own rng seeded by (seed, index)): the
annotation files are byte-identical across runs and so are the rendered frames and audio. The
H.264 encoder behind `write_video` is not bit-reproducible, so decoded frames may differ by a few
grey levels between runs.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..common.media import write_video
from ..common.threads import usable_cores
from .labels import MER2023_LABELS

log = logging.getLogger(__name__)

LABELS = MER2023_LABELS  # neutral, angry, happy, sad, worried, surprise
MODALITIES = ("face", "voice", "words")
P_INFORMATIVE = 0.6
WEAK = 0.35  # intensity of a misleading cue in an uninformative modality
SAMPLE_RATE = 16000

# Face at full intensity; every cue is a displacement from the neutral face, scaled by intensity.
# curve: mouth corners up (+) / down (-); open: mouth opening; tilt: inner brow ends down (+, frown)
# or up (-, distress); raise: brows lifted; eye: eye opening factor; red/tear/sweat: colour cues;
# bob/shake/droop/jump: head motion over the clip (carried into the temporal feature).
NEUTRAL_FACE = dict(curve=0.0, open=0.0, width=1.0, tilt=0.0, raise_=0.0, eye=1.0, red=0.0, tear=0.0,
                    sweat=0.0, bob=0.0, shake=0.0, droop=0.0, jump=0.0)
FACE = {
    "neutral": {},
    "happy": dict(curve=1.0, open=0.25, width=1.25, eye=0.55, red=0.45, raise_=0.15, bob=1.0),
    "sad": dict(curve=-1.0, tilt=-0.9, eye=0.5, tear=1.0, droop=1.0),
    "angry": dict(curve=-0.35, width=0.7, tilt=1.0, eye=0.55, red=1.0, shake=1.0),
    "worried": dict(curve=-0.45, tilt=-0.7, raise_=0.55, eye=1.2, sweat=1.0, shake=0.35),
    # mouth 0.6 open, brows 0.8 up: with both at 1.0 OpenCV's Haar cascade (the demo's face detector)
    # found 28 % of these faces, so most surprised clips had no face crops at all; now 99 %
    "surprise": dict(open=0.6, width=0.75, raise_=0.8, eye=1.6, jump=1.0),
}

# Voice at full intensity: base pitch (Hz), relative pitch change over the clip, syllables per
# second, loudness, spectral brightness (harmonic roll-off exponent; lower = brighter), vibrato.
NEUTRAL_VOICE = dict(f0=140.0, slope=0.0, tempo=3.0, loud=0.30, rolloff=1.6, vibrato=0.0, burst=0.0)
VOICE = {
    "neutral": {},
    "happy": dict(f0=250.0, slope=0.45, tempo=5.0, loud=0.50, rolloff=1.1),
    "sad": dict(f0=95.0, slope=-0.3, tempo=1.5, loud=0.12, rolloff=2.4),
    "angry": dict(f0=200.0, tempo=6.5, loud=0.85, rolloff=0.6),
    "worried": dict(f0=175.0, tempo=4.0, loud=0.28, vibrato=0.09),
    "surprise": dict(f0=230.0, slope=1.0, loud=0.70, burst=1.0),
}

SENTENCES = {
    "neutral": ["I took the bus to work this morning", "the meeting is at three in the afternoon",
                "we moved the table to the other room", "the report has twelve pages"],
    "happy": ["this is wonderful, I love it", "I am so glad we did this together",
              "what a great day, everything went well", "I got the job, I am thrilled"],
    "sad": ["I miss her so much, it hurts", "nothing feels right since he left",
            "I lost everything I worked for", "I feel so lonely these days"],
    "angry": ["how dare you lie to me again", "this is outrageous, I am furious",
              "stop it right now, I have had enough", "you ruined everything, get out"],
    "worried": ["what if something bad happens to them", "I am afraid we will not make it in time",
                "I keep thinking it might go wrong", "I am nervous about the results"],
    "surprise": ["wow, I did not expect that at all", "really, you are here already",
                 "no way, that is unbelievable", "oh, what a shock, since when"],
}
# A weak, hedged version of a label's words for an uninformative "words" modality.
HEDGED = {
    "happy": "it was fine I guess, kind of nice", "sad": "it was a bit of a pity maybe",
    "angry": "that was slightly annoying, whatever", "worried": "I wonder a little how it goes",
    "surprise": "huh, that is a bit unusual",
}

FACE_CLUES = {
    "neutral": "the face is relaxed with a straight mouth and level brows",
    "happy": "the corners of the mouth turn up into a smile, the eyes squint, the cheeks are flushed and the head bobs",
    "sad": "the mouth turns down, the inner brows rise, the eyes are half closed with a tear and the head droops",
    "angry": "the brows are drawn down into a frown, the lips are pressed tight, the face is red and the head shakes",
    "worried": "the brows are raised and knitted, the eyes are wide, a drop of sweat shows and the head trembles",
    "surprise": "the eyes open wide, the brows shoot up, the mouth falls open and the head jerks back",
}
VOICE_CLUES = {
    "neutral": "the voice is calm and steady at a medium pitch",
    "happy": "the voice is bright and lively with a rising pitch",
    "sad": "the voice is low, quiet and slow with a falling pitch",
    "angry": "the voice is loud, harsh and fast",
    "worried": "the voice trembles with a wavering pitch",
    "surprise": "the voice bursts out loudly with a sharply rising pitch",
}
WORD_CLUES = {
    "neutral": "the words are plain and matter of fact",
    "happy": "the words express joy",
    "sad": "the words express loss and sorrow",
    "angry": "the words are hostile and accusing",
    "worried": "the words express fear that something will go wrong",
    "surprise": "the words express astonishment",
}


@dataclass
class ClipPlan:
    """What one clip shows: its label and, per modality, the label shown and its intensity."""

    name: str
    label: str
    split: str
    shows: dict[str, tuple[str, float]]  # modality -> (label shown, intensity 0..1)
    informative: list[str]
    sentence: str


def plan_clip(name: str, label: str, split: str, rng: np.random.Generator) -> ClipPlan:
    """Draw which modalities carry the label (>= 2 of 3) and what the others show."""
    while True:
        informative = [m for m in MODALITIES if rng.random() < P_INFORMATIVE]
        if len(informative) >= 2:
            break
    others = [l for l in LABELS if l not in ("neutral", label)]
    shows = {}
    for modality in MODALITIES:
        if modality in informative:
            shows[modality] = (label, 1.0)
        elif rng.random() < 0.5:
            shows[modality] = ("neutral", 0.0)
        else:
            shows[modality] = (str(rng.choice(others)), WEAK)
    word_label, word_level = shows["words"]
    if word_level >= 1.0:
        sentence = str(rng.choice(SENTENCES[word_label]))
    elif word_label != "neutral":
        sentence = HEDGED[word_label]
    else:
        sentence = str(rng.choice(SENTENCES["neutral"]))
    return ClipPlan(name, label, split, shows, informative, sentence)


def _cue(table: dict, neutral: dict, label: str, level: float) -> dict:
    full = {**neutral, **table[label]}
    return {k: neutral[k] + level * (full[k] - neutral[k]) for k in neutral}


def render_face(label: str, level: float, size: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [T, size, size, 3]: a cartoon face centred, ~60 % of the frame, drawn at 4x and shrunk."""
    p = _cue(FACE, NEUTRAL_FACE, label, level)
    scale = 4
    big = size * scale
    skin = np.array(rng.choice([(224, 190, 160), (200, 160, 120), (170, 120, 90), (235, 205, 180)]), float)
    skin = skin * (1 - 0.35 * p["red"]) + np.array([230.0, 70.0, 60.0]) * 0.35 * p["red"]
    background = rng.integers(40, 110, size=3).astype(float)
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        phase = t / max(frames - 1, 1)
        dx = p["shake"] * 0.05 * big * np.sin(2 * np.pi * 2.0 * phase) + rng.normal(0, 0.004 * big)
        dy = p["bob"] * 0.045 * big * np.sin(2 * np.pi * 1.5 * phase) + p["droop"] * 0.07 * big * phase
        zoom = 1.0 + p["jump"] * 0.12 * np.exp(-6.0 * phase)
        canvas = np.empty((big, big, 3), np.float64)
        canvas[:] = background
        _draw_face(canvas, p, skin, big / 2 + dx, big / 2 + dy, 0.30 * big * zoom)
        small = cv2.resize(canvas.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        noisy = small + rng.normal(0, 3.0, small.shape)
        out[t] = np.clip(noisy, 0, 255).astype(np.uint8)
    return out


def _draw_face(img: np.ndarray, p: dict, skin: np.ndarray, cx: float, cy: float, r: float) -> None:
    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round(cx + x * r)), int(round(cy + y * r))

    aa, dark = cv2.LINE_AA, (35.0, 25.0, 25.0)
    cv2.ellipse(img, pt(0, 0), (int(r), int(1.25 * r)), 0, 0, 360, tuple(skin), -1, aa)
    thick = max(2, int(0.07 * r))
    for side in (-1, 1):
        ex, ey = 0.38 * side, -0.25
        eye_h = max(1, int(0.13 * r * p["eye"]))
        cv2.ellipse(img, pt(ex, ey), (int(0.17 * r), eye_h), 0, 0, 360, (245.0, 245.0, 245.0), -1, aa)
        cv2.circle(img, pt(ex, ey), max(1, min(int(0.08 * r), eye_h)), dark, -1, aa)
        # Brow: inner end (towards the nose) lowered by tilt > 0, raised by tilt < 0.
        lift = -0.48 - 0.18 * p["raise_"]
        inner, outer = pt(0.12 * side, lift + 0.14 * p["tilt"]), pt(0.62 * side, lift - 0.06 * p["tilt"])
        cv2.line(img, inner, outer, dark, thick, aa)
        alpha = min(1.0, 0.6 * p["red"])
        if alpha > 0:  # cheek flush, blended so a weak cue is a faint one (only the cheek's box is touched)
            (x, y), radius = pt(0.55 * side, 0.2), int(0.16 * r)
            y0, y1, x0, x1 = max(0, y - radius - 2), y + radius + 3, max(0, x - radius - 2), x + radius + 3
            box = img[y0:y1, x0:x1]
            overlay = box.copy()
            cv2.circle(overlay, (x - x0, y - y0), radius, (235.0, 90.0, 110.0), -1, aa)
            box[:] = box * (1 - alpha) + overlay * alpha
        if p["tear"] > 0.05:
            cv2.circle(img, pt(ex + 0.05, 0.0 + 0.1 * (1 - p["tear"])), max(1, int(0.09 * r * p["tear"])), (90.0, 160.0, 255.0), -1, aa)
    if p["sweat"] > 0.05:
        cv2.circle(img, pt(0.72, -0.75), max(1, int(0.13 * r * p["sweat"])), (150.0, 210.0, 255.0), -1, aa)
    # Mouth: a parabola whose corners move with `curve`; an opening becomes a dark ellipse.
    half = 0.38 * p["width"]
    xs = np.linspace(-half, half, 21)
    ys = 0.58 - p["curve"] * 0.22 * (xs / half) ** 2 + p["curve"] * 0.08
    cv2.polylines(img, [np.array([pt(x, y) for x, y in zip(xs, ys)], np.int32)], False, (120.0, 30.0, 40.0), thick, aa)
    if p["open"] > 0.05:
        cv2.ellipse(img, pt(0, 0.62), (int(half * r * 0.8), max(1, int(0.3 * r * p["open"]))), 0, 0, 360, (60.0, 15.0, 25.0), -1, aa)


def render_voice(label: str, level: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """float32 mono at 16 kHz: syllable bursts of a harmonic tone whose prosody carries the label."""
    v = _cue(VOICE, NEUTRAL_VOICE, label, level)
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    speaker = rng.uniform(0.92, 1.08)
    f0 = v["f0"] * speaker * (1 + v["slope"] * t / seconds) * (1 + v["vibrato"] * np.sin(2 * np.pi * 6.0 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    tone = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k ** v["rolloff"] for k in range(1, 9))
    syllables = np.clip(np.sin(np.pi * v["tempo"] * t + rng.uniform(0, np.pi)), 0, None) ** 1.5
    burst = np.exp(-5.0 * t / seconds)
    envelope = (1 - v["burst"]) * syllables + v["burst"] * burst
    wave = v["loud"] * envelope * tone / 1.6 + rng.normal(0, 0.01, n)
    return np.clip(wave, -1, 1).astype(np.float32)


def explain(plan: ClipPlan) -> tuple[str, str, str]:
    """(coarse caption, smp_reason_caption, reason_caption) naming only the clues present."""
    clue_text = {"face": FACE_CLUES, "voice": VOICE_CLUES, "words": WORD_CLUES}
    clues = [clue_text[m][plan.label] for m in MODALITIES if m in plan.informative]
    joined = "; ".join(clues)
    caption = f"In the video, {joined}. Therefore, the emotion of the person is {plan.label}."
    smp = f"{joined[0].upper()}{joined[1:]}. These clues indicate that the person feels {plan.label}."
    names = {"face": "facial expression", "voice": "tone of voice", "words": "spoken words"}
    sources = " and ".join(names[m] for m in MODALITIES if m in plan.informative)
    said = f' The person says: "{plan.sentence}".' if "words" in plan.informative else ""
    reason = (
        f"{joined[0].upper()}{joined[1:]}.{said} Taking the {sources} together, the person's emotion is {plan.label}."
    )
    return caption, smp, reason


def _splits(labels: list[str], rng: np.random.Generator) -> list[str]:
    """Stratified 70 / 15 / 15: per label, >= 1 val and test clip once it has 3 clips."""
    splits = ["train"] * len(labels)
    for label in LABELS:
        members = [i for i, l in enumerate(labels) if l == label]
        rng.shuffle(members)
        held = max(1, round(0.15 * len(members))) if len(members) >= 3 else 0
        for i in members[:held]:
            splits[i] = "val"
        for i in members[held: 2 * held]:
            splits[i] = "test"
    return splits


def generate_corpus(out: str | Path, clips: int = 600, seed: int = 0, size: int = 64,
                    seconds: float = 1.0, fps: float = 8.0, workers: int | None = None) -> Path:
    """Write the corpus (see module docstring) and return its folder. `workers` processes render
    and encode the clips (default: the usable cores, one per 100 clips at most); each clip depends only on (seed, index), so
    the corpus is the same for any number of workers."""
    if clips < 1 or size < 16 or seconds <= 0 or fps <= 0:
        raise ValueError("need clips >= 1, size >= 16, seconds > 0 and fps > 0")
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    frames = max(1, int(round(seconds * fps)))
    labels = [LABELS[i % len(LABELS)] for i in range(clips)]
    splits = _splits(labels, np.random.default_rng([seed, 10**6]))
    jobs = [(out, seed, i, label, split, size, frames, seconds, fps) for i, (label, split) in enumerate(zip(labels, splits))]
    # by default one process per usable core, but not for a small corpus (starting a worker costs ~1 s)
    workers = min(workers or min(usable_cores(), max(1, clips // 100)), clips)
    started = time.time()
    if workers == 1:
        plans = [_make_clip(*job) for job in jobs]
    else:  # each worker renders with one OpenCV thread: the processes share the cores. Spawned, not
        # forked: a fork of a process whose threads hold locks (torch, OpenMP: a test run, a notebook)
        # can hang the child for ever.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=cv2.setNumThreads, initargs=(1,)) as pool:
            plans = list(pool.map(_make_clip, *zip(*jobs), chunksize=max(1, clips // (8 * workers))))
    _write_annotations(out, plans, frames, seed)
    log.info("wrote %d clips to %s in %.1fs (%d worker%s)", clips, out, time.time() - started, workers,
             "s" if workers > 1 else "")
    return out


def _make_clip(out: Path, seed: int, i: int, label: str, split: str, size: int, frames: int, seconds: float,
               fps: float) -> ClipPlan:
    """Plan, render and write clip `i` (its own rng, seeded by (seed, i)); returns its plan."""
    rng = np.random.default_rng([seed, i])
    plan = plan_clip(f"synth_{i:05d}", label, split, rng)
    face_label, face_level = plan.shows["face"]
    voice_label, voice_level = plan.shows["voice"]
    video = render_face(face_label, face_level, size, frames, rng)
    audio = render_voice(voice_label, voice_level, seconds, rng)
    write_video(out / "videos" / f"{plan.name}.mp4", video, fps, audio, SAMPLE_RATE)
    return plan


def _write_annotations(out: Path, plans: list[ClipPlan], frames: int, seed: int) -> None:
    for split in ("train", "val", "test"):
        lines = [f"{p.name} {frames} {p.label}\n" for p in plans if p.split == split]
        (out / f"{split}.txt").write_text("".join(lines), encoding="utf-8")
    coarse, fine = {}, {}
    for plan in plans:
        caption, smp, reason = explain(plan)
        coarse[plan.name] = {"caption": caption}
        fine[plan.name] = {"smp_reason_caption": smp, "reason_caption": reason}
    _write_json(out / "MERR_coarse_grained.json", coarse)
    _write_json(out / "MERR_fine_grained.json", fine)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "sentence"])
    writer.writerows([p.name, p.sentence] for p in plans)
    (out / "transcripts.csv").write_text(buffer.getvalue(), encoding="utf-8")
    oracle = {m: float(np.mean([_readable(p, m) for p in plans])) for m in MODALITIES}
    corpus = {
        "description": "synthetic MERR-format corpus; see minigpt4/data/synthetic.py",
        "seed": seed,
        "labels": list(LABELS),
        "modalities": list(MODALITIES),
        "p_informative": P_INFORMATIVE,
        "weak_intensity": WEAK,
        "single_modality_oracle_accuracy": oracle,
        "clips": {
            p.name: {
                "label": p.label,
                "split": p.split,
                "informative": p.informative,
                "shows": {m: {"label": l, "intensity": level} for m, (l, level) in p.shows.items()},
                "sentence": p.sentence,
            }
            for p in plans
        },
    }
    _write_json(out / "corpus.json", corpus)


def _readable(plan: ClipPlan, modality: str) -> bool:
    """Whether a perfect reader of this one modality would name the right label."""
    shown, level = plan.shows[modality]
    return level >= 1.0 or (plan.label == "neutral" and shown == "neutral")


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="frame width and height in pixels")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--workers", type=int, help="processes rendering clips (default: the usable cores, one per 100 clips at most)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate_corpus(args.out, args.clips, args.seed, args.size, args.seconds, args.fps, args.workers)


if __name__ == "__main__":
    main()
