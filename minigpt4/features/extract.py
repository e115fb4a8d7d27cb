"""Video files -> the release's feature folders, resumably, one bad clip never stopping the run.

For every clip `<name>.<ext>` it writes (each file atomically, with `common.io.atomic_write`)

    <out>/HL-UTT/<name>.npy        audio    (D,) float32  HuBERT, mean over time
    <out>/mae_340_UTT/<name>.npy   local    (D,) float32  ViT-MAE on face crops, mean over frames
    <out>/maeV_399_UTT/<name>.npy  temporal (D,) float32  VideoMAE on 16 face crops, mean over tokens
                                   (another encoder of a kind, `encoders.<kind>` in the config, writes
                                   its own folder, `<kind>_<name>` unless `output` names it, with
                                   (D,) or, for `tokens: k`, (k, D) arrays; docs/encoders.md)
    <out>/frames/<name>.jpg        the chosen frame (first / middle / peak / au_peak)
    <out>/eva_cache/<name>.npy     optional: frozen EVA ViT tokens of that frame
    <out>/extraction_report.json   counts, failures by name with the reason, per-clip face counts;
                                   rewritten as clips finish and merged with earlier runs

A clip without an audio track still gets its video features; its audio feature is absent, the
clip is counted under `no_audio`, and a marker in `<out>/.extraction_state/no_audio/` lets a
re-run treat it as finished. A clip whose outputs all exist is skipped, so an interrupted run
picks up where it stopped.

Each clip is streamed (`faces.read_video_faces`): the main face is tracked over all frames, and
only what the encoders see is kept — face crops at the frames MAE and VideoMAE sample, the
chosen frame — so memory does not grow with the clip's length or resolution. Decoding, face
tracking and audio loading run in a small thread pool (PyAV and OpenCV release the GIL); the
encoders run in the main thread, batched.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from minigpt4.common.config import load_config
from minigpt4.common.io import atomic_write
from minigpt4.common.media import VIDEO_SUFFIXES, MediaError, NoAudioError, load_audio
from minigpt4.features.config import FeatureConfig
from minigpt4.features.encoders import build_feature_encoder, sample_clip_indices
from minigpt4.features.faces import build_face_detector, read_video_faces
from minigpt4.models.config import VisionConfig
from minigpt4.models.vision_towers import frame_tokens, frozen_frame_tower
from minigpt4.processors import EvaImageTransform

REPORT_NAME = "extraction_report.json"
NO_AUDIO_MARKERS = Path(".extraction_state") / "no_audio"


@dataclass
class ExtractionReport:
    """What the runs into one output folder did; saved as extraction_report.json after every
    batch (so a killed run leaves one) and merged with the report of earlier runs: `done`,
    `skipped_existing` and `seconds` are this run's, the per-clip records cover all runs."""

    done: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> reason (cleared when a re-run succeeds)
    no_audio: list[str] = field(default_factory=list)
    no_face_frames: dict[str, int] = field(default_factory=dict)  # name -> frames without the face nearby
    faces_seen: dict[str, int] = field(default_factory=dict)  # name -> faces tracked (the main one is used)
    extracted: list[str] = field(default_factory=list)  # every clip extracted into this folder, all runs
    frames_decoded: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {
        "video": 0.0, "audio_decode": 0.0, "audio": 0.0, "local": 0.0,
        "temporal": 0.0, "eva": 0.0, "write": 0.0, "wall": 0.0})

    @classmethod
    def continuing(cls, out_dir: Path) -> "ExtractionReport":
        """A fresh report for a new run that keeps the per-clip records of the folder's last one."""
        report = cls()
        path = out_dir / REPORT_NAME
        if not path.is_file():
            return report
        try:
            earlier = json.loads(path.read_text())
            report.failed = dict(earlier.get("failed", {}))
            report.no_audio = list(earlier.get("no_audio", []))
            report.no_face_frames = dict(earlier.get("no_face_frames", {}))
            report.faces_seen = dict(earlier.get("faces_seen", {}))
            report.extracted = list(earlier.get("extracted", []))
        except (json.JSONDecodeError, AttributeError, TypeError):
            return cls()  # a damaged report: start over, the outputs on disk are what counts
        return report

    def record_done(self, name: str, no_face_frames: int, faces_seen: int, no_audio: bool) -> None:
        self.done.append(name)
        self.failed.pop(name, None)
        self.no_face_frames[name] = no_face_frames
        self.faces_seen[name] = faces_seen
        if no_audio and name not in self.no_audio:
            self.no_audio.append(name)
        elif not no_audio and name in self.no_audio:
            self.no_audio.remove(name)
        if name not in self.extracted:
            self.extracted.append(name)

    def counts(self) -> dict[str, int]:
        return {"done": len(self.done), "skipped_existing": len(self.skipped_existing),
                "failed": len(self.failed), "no_audio": len(self.no_audio), "extracted": len(self.extracted),
                "clips_with_no_face_frames": sum(1 for n in self.no_face_frames.values() if n),
                "no_face_frames": sum(self.no_face_frames.values()),
                "clips_with_several_faces": sum(1 for n in self.faces_seen.values() if n > 1)}

    def to_json(self) -> dict:
        return {"counts": self.counts(), **asdict(self)}

    def summary(self) -> str:
        counts = self.counts()
        lines = [f"done {counts['done']}, skipped (already extracted) {counts['skipped_existing']}, "
                 f"failed {counts['failed']}, without audio {counts['no_audio']}, "
                 f"frames without a detected face {counts['no_face_frames']} "
                 f"(in {counts['clips_with_no_face_frames']} clips), "
                 f"clips showing several faces {counts['clips_with_several_faces']}; {self.seconds['wall']:.1f} s"]
        lines += [f"  FAILED {name}: {reason}" for name, reason in sorted(self.failed.items())]
        return "\n".join(lines)


@dataclass
class PreparedClip:
    """What the encoders need of one clip, decoded and cropped in a worker thread. Only these
    crops are kept, never the whole clip, so memory does not grow with its length."""

    name: str
    local_crops: np.ndarray  # uint8 [<= local_max_frames, face_size, face_size, 3], spread over the clip
    temporal_crops: np.ndarray  # uint8 [frames_per_clip, face_size, face_size, 3], spread over the clip
    chosen_frame: np.ndarray  # uint8 [H, W, 3], full frame (first / middle / peak / au_peak)
    chosen_index: int
    chosen_face: np.ndarray  # uint8 [face_size, face_size, 3], the face crop of the chosen frame
    waveform: np.ndarray | None  # float32 16 kHz mono; None = no audio track (or audio not wanted)
    num_frames: int
    no_face_frames: int  # frames not within detect_stride of a detection of the main face
    faces_seen: int  # faces tracked in the clip (the main one is cropped)
    seconds: dict[str, float]


def find_videos(folder: str | Path, names: Sequence[str] | None = None) -> tuple[list[Path], dict[str, str]]:
    """Videos in `folder` (not recursive) by suffix, sorted; restricted to `names` when given.

    Returns (paths, problems): a name listed but not found, or two files with the same name
    (a.mp4 and a.avi), is a problem reported by name rather than a crash.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder {folder} does not exist")
    by_name: dict[str, Path] = {}
    problems: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in VIDEO_SUFFIXES or not path.is_file():
            continue
        if path.stem in by_name:
            problems[path.stem] = f"two videos share this name ({by_name[path.stem].name}, {path.name}); rename one"
            continue
        by_name[path.stem] = path
    if names is None:
        return [p for n, p in by_name.items() if n not in problems], problems
    selected = []
    for name in names:
        if name in by_name and name not in problems:
            selected.append(by_name[name])
        elif name not in problems:
            problems[name] = f"no video named {name} with a suffix in {VIDEO_SUFFIXES} in {folder}"
    return selected, problems


def read_names_file(path: str | Path) -> list[str]:
    """Clip names, one a line. A line that looks like the release's annotation lists
    (``name frame_count label ...``: an integer second field) gives its first field; any other
    line is a whole name, spaces included (``my clip 01``). A video suffix is dropped. Blank
    lines and # comments are skipped."""
    names = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        name = fields[0] if len(fields) >= 3 and fields[1].isdigit() else line
        names.append(name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in VIDEO_SUFFIXES else name)
    return names


class FeatureExtractor:
    """Holds the loaded encoders; `run` processes a list of videos into `out_dir`."""

    def __init__(self, cfg: FeatureConfig):
        import torch

        self.cfg = cfg
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        batch_sizes = {"audio": 1, "local": cfg.local_batch_size, "temporal": cfg.temporal_batch_size}
        # the encoder of each enabled kind, built from `encoders.<kind>` (FEATURE_ENCODERS)
        self.audio, self.local, self.temporal = (
            build_feature_encoder(kind, cfg.encoder(kind), cfg.weights(kind), cfg.device, batch_sizes[kind])
            if kind in cfg.features else None for kind in ("audio", "local", "temporal"))
        self.folders = {kind: cfg.output_folder(kind) for kind in cfg.features}
        if getattr(self.temporal, "num_frames", cfg.frames_per_clip) != cfg.frames_per_clip:
            raise ValueError(f"frames_per_clip={cfg.frames_per_clip} but the VideoMAE in {cfg.temporal_encoder} "
                             f"was built for {self.temporal.num_frames} frames; set frames_per_clip="
                             f"{self.temporal.num_frames}")
        self.eva = _EvaTokenCache(cfg) if cfg.eva_cache else None
        self.au_peaks = load_au_peaks(cfg.au_peaks) if cfg.frame_choice == "au_peak" else {}
        self._thread_state = threading.local()  # one face detector per decode thread

    # ---- per clip --------------------------------------------------------------------------

    def expected_outputs(self, out_dir: Path, name: str) -> list[Path]:
        paths = [out_dir / self.folders[f] / f"{name}.npy" for f in self.cfg.features]
        if self.cfg.save_frames:
            paths.append(out_dir / "frames" / f"{name}.jpg")
        if self.eva is not None:
            paths.append(out_dir / "eva_cache" / f"{name}.npy")
        return paths

    def is_finished(self, out_dir: Path, name: str) -> bool:
        no_audio = (out_dir / NO_AUDIO_MARKERS / name).exists()
        return all(p.exists() or (no_audio and p.parent.name == self.folders.get("audio"))
                   for p in self.expected_outputs(out_dir, name))

    def prepare(self, path: Path) -> PreparedClip:
        """Track the face, crop it where the encoders look, pick the frame, read the audio
        (runs in a worker thread; streaming, see `read_video_faces`)."""
        cfg = self.cfg
        seconds = {}
        start = time.perf_counter()
        detector = getattr(self._thread_state, "detector", None)
        if detector is None:
            detector = self._thread_state.detector = build_face_detector(cfg.face_detector)
        plan: dict[str, np.ndarray] = {}

        def wanted(num_frames: int) -> np.ndarray:
            local = min(cfg.local_max_frames or num_frames, num_frames)
            plan["local"] = sample_clip_indices(num_frames, local)
            plan["temporal"] = sample_clip_indices(num_frames, cfg.frames_per_clip)
            return np.concatenate([plan["local"], plan["temporal"]])

        faces = read_video_faces(path, detector, cfg.face_size, cfg.face_margin, wanted, self._choice(path),
                                 min_face_size=cfg.min_face_size, detect_stride=cfg.detect_stride,
                                 full_scan_stride=cfg.full_scan_stride)
        seconds["video"] = time.perf_counter() - start

        start = time.perf_counter()
        waveform = None
        if self.audio is not None:
            try:
                waveform = load_audio(path, self.audio.sample_rate)
            except NoAudioError:
                waveform = None
        seconds["audio_decode"] = time.perf_counter() - start
        return PreparedClip(path.stem, faces.stack(plan["local"]), faces.stack(plan["temporal"]),
                            faces.chosen_frame, faces.chosen_index, faces.chosen_face, waveform, faces.num_frames,
                            faces.track.no_face_frames, faces.track.faces_seen, seconds)

    def _choice(self, path: Path) -> str | int:
        """The frame choice for this clip: a name, or the index the au_peaks file gives it."""
        if self.cfg.frame_choice != "au_peak":
            return self.cfg.frame_choice
        if path.stem not in self.au_peaks:
            raise ValueError(f"no peak frame for clip {path.stem!r} in au_peaks={self.cfg.au_peaks}; "
                             f"add it there or use another frame_choice")
        return self.au_peaks[path.stem]

    # ---- the run ---------------------------------------------------------------------------

    def run(self, video_paths: Iterable[str | Path], out_dir: str | Path,
            problems: dict[str, str] | None = None, progress: bool = True,
            report: ExtractionReport | None = None, report_path: Path | None = None) -> ExtractionReport:
        """`report` / `report_path`: start from these records and save there instead of the
        folder's extraction_report.json (one torchrun rank's part, see `minigpt4.features.sharded`)."""
        out_dir = Path(out_dir)
        report = report if report is not None else ExtractionReport.continuing(out_dir)
        report.failed.update(problems or {})
        wall_start = time.perf_counter()
        todo = []
        for path in map(Path, video_paths):
            if self.is_finished(out_dir, path.stem):
                report.skipped_existing.append(path.stem)
            else:
                todo.append(path)
        write_report(report, out_dir, report_path)
        bar = tqdm(total=len(todo), desc="extract", unit="clip", disable=not progress)
        pending: list[PreparedClip] = []
        for path, outcome in self._prepared_in_order(todo):
            if isinstance(outcome, Exception):
                report.failed[path.stem] = _reason(outcome)
                bar.update(1)
                continue
            pending.append(outcome)
            if len(pending) >= self.cfg.temporal_batch_size:
                self._encode_and_write(pending, out_dir, report)
                bar.update(len(pending))
                pending = []
                report.seconds["wall"] = time.perf_counter() - wall_start
                write_report(report, out_dir, report_path)  # as clips finish: a killed run still leaves its report
        if pending:
            self._encode_and_write(pending, out_dir, report)
            bar.update(len(pending))
        bar.close()
        report.seconds["wall"] = time.perf_counter() - wall_start
        write_report(report, out_dir, report_path)
        return report

    def _prepared_in_order(self, paths: Sequence[Path]) -> Iterator[tuple[Path, PreparedClip | Exception]]:
        """Prepare clips in the pool, a few ahead of the encoders, yielding in input order."""
        workers = self.cfg.decode_workers
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
            queue: deque[tuple[Path, Future]] = deque()
            paths_left = iter(paths)
            for path in paths_left:
                queue.append((path, pool.submit(self.prepare, path)))
                if len(queue) >= 2 * workers:
                    break
            while queue:
                path, future = queue.popleft()
                next_path = next(paths_left, None)
                if next_path is not None:
                    queue.append((next_path, pool.submit(self.prepare, next_path)))
                try:
                    yield path, future.result()
                except Exception as err:  # one bad clip must not stop the run
                    yield path, err

    def _encode_and_write(self, clips: list[PreparedClip], out_dir: Path, report: ExtractionReport) -> None:
        temporal_vectors: dict[str, np.ndarray] = {}
        if self.temporal is not None:
            start = time.perf_counter()
            try:
                batch = self.temporal.encode_batch([c.temporal_crops for c in clips])
                temporal_vectors = {c.name: v for c, v in zip(clips, batch)}
            except Exception:  # find out which clip is to blame below, one at a time
                temporal_vectors = {}
            report.seconds["temporal"] += time.perf_counter() - start
        for clip in clips:
            try:
                self._finish_clip(clip, temporal_vectors, out_dir, report)
            except Exception as err:
                report.failed[clip.name] = _reason(err)

    def encode(self, clip: PreparedClip, seconds: dict[str, float],
               temporal_vector: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The enabled utterance features of one decoded clip (float32, finite; (D,) or (k, D)),
        keyed local / temporal / audio: the one place both batch extraction and single-clip
        inference compute them. `temporal_vector` is a result the batched VideoMAE pass already has; each encoder's
        time is added to `seconds`."""
        jobs = (
            ("temporal", self.temporal,
             lambda enc: temporal_vector if temporal_vector is not None else enc.encode(clip.temporal_crops)),
            ("local", self.local, lambda enc: enc.encode(clip.local_crops)),
            ("audio", self.audio if clip.waveform is not None else None, lambda enc: enc.encode(clip.waveform)),
        )
        vectors: dict[str, np.ndarray] = {}
        for kind, encoder, run in jobs:
            if encoder is None:
                continue
            with _timed(seconds, kind):
                vector = run(encoder)
            if not np.isfinite(vector).all():
                raise ValueError(f"{clip.name}: the {kind} feature has NaN/inf values; check the encoder "
                                 f"weights ({kind}_encoder)")
            vectors[kind] = vector.astype(np.float32)
        return vectors

    def _finish_clip(self, clip: PreparedClip, temporal_vectors: dict[str, np.ndarray], out_dir: Path,
                     report: ExtractionReport) -> None:
        outputs = self.encode(clip, report.seconds, temporal_vectors.get(clip.name))
        eva_tokens = None
        if self.eva is not None:
            with _timed(report.seconds, "eva"):
                eva_tokens = self.eva.encode(clip.chosen_frame)
        with _timed(report.seconds, "write"):
            for feature, vector in outputs.items():
                save_npy_atomic(out_dir / self.folders[feature] / f"{clip.name}.npy", vector)
            if eva_tokens is not None:
                save_npy_atomic(out_dir / "eva_cache" / f"{clip.name}.npy", eva_tokens)
            if self.cfg.save_frames:
                save_jpg_atomic(out_dir / "frames" / f"{clip.name}.jpg", clip.chosen_frame)
            if self.audio is not None and clip.waveform is None:
                marker = out_dir / NO_AUDIO_MARKERS / clip.name
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
        for stage, value in clip.seconds.items():
            report.seconds[stage] += value
        report.frames_decoded += clip.num_frames
        report.record_done(clip.name, clip.no_face_frames, clip.faces_seen,
                           no_audio=self.audio is not None and clip.waveform is None)


class _EvaTokenCache:
    """Frozen frame-encoder tokens ([1 + patches, width] float16) of the chosen frame, one .npy per
    clip. The tower is `eva_vision`'s `arch` (EVA by default), run in fp32. The shipped configs use
    the token-shard cache instead (`python -m minigpt4.features eva-cache`, features/eva_cache.py:
    the model's own tower and dtype, a few large files)."""

    def __init__(self, cfg: FeatureConfig):
        import torch

        vision = load_config(VisionConfig, cfg.eva_vision)
        self.model = frozen_frame_tower(vision, torch.float32).to(cfg.device)
        self.transform = EvaImageTransform(vision.image_size)

    def encode(self, frame: np.ndarray) -> np.ndarray:
        return frame_tokens(self.model, self.transform(frame)[None])[0].half().cpu().numpy()


@contextmanager
def _timed(totals: dict[str, float], stage: str):
    """Add the time spent in the block to totals[stage]."""
    start = time.perf_counter()
    try:
        yield
    finally:
        totals[stage] = totals.get(stage, 0.0) + time.perf_counter() - start


def load_au_peaks(path: str | Path) -> dict[str, int]:
    """{clip name: peak frame index (0-based, in decoded frame order)} from the JSON file that
    the dataset-building pipeline writes; read by ``frame_choice: au_peak``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"au_peaks file {path} does not exist; write it with the dataset-building "
                                f"pipeline or set au_peaks to the right path (frame_choice=au_peak needs it)")
    try:
        peaks = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"au_peaks file {path} is not valid JSON ({err})") from None
    if not isinstance(peaks, dict) or not all(isinstance(v, int) and v >= 0 for v in peaks.values()):
        raise ValueError(f"au_peaks file {path} must map clip names to frame indices (integers >= 0)")
    return peaks


def _reason(err: Exception) -> str:
    if isinstance(err, MediaError):
        return f"{err.problem} ({type(err).__name__})"
    return f"{type(err).__name__}: {err}"


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write then rename, so a crash never leaves a half-written .npy that resuming would trust."""
    atomic_write(path, lambda handle: np.save(handle, array))


def save_jpg_atomic(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    import cv2

    ok, encoded = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not encode the chosen frame of {path.stem} as JPEG")
    atomic_write(path, encoded.tobytes())


def write_report(report: ExtractionReport, out_dir: Path, path: Path | None = None) -> Path:
    """Atomically (re)write <out_dir>/extraction_report.json (or `path`)."""
    path = path or out_dir / REPORT_NAME
    return atomic_write(path, json.dumps(report.to_json(), indent=2, sort_keys=True))


def extract_features(video_paths: Iterable[str | Path], out_dir: str | Path, cfg: FeatureConfig,
                     progress: bool = True, problems: dict[str, str] | None = None) -> ExtractionReport:
    """Extract every enabled feature for `video_paths` into `out_dir`; see the module docstring.

    `problems` (name -> reason), e.g. from `find_videos`, are reported as failures alongside
    the clips that fail here.
    """
    return FeatureExtractor(cfg).run(video_paths, out_dir, problems=problems, progress=progress)
