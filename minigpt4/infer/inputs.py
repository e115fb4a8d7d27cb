"""One raw clip -> model inputs, in memory: what batch extraction does to the training clips.

`check_video` rejects a file before any model is loaded (missing, corrupt, over the limits);
`ClipEncoder.prepare` decodes it, crops faces, chooses the frame and runs the feature encoders
(`minigpt4.features.extract.FeatureExtractor`, the code batch extraction runs), giving `ClipInputs`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from minigpt4.common.config import ConfigError
from minigpt4.common.errors import UserError
from minigpt4.common.media import MediaError, probe_video
from minigpt4.data.datasets import FEATURE_ORDER
from minigpt4.features.extract import FeatureExtractor
from minigpt4.infer.config import InferConfig, LimitsConfig


@dataclass
class ClipInputs:
    """One clip turned into model inputs, plus what the page shows about them."""

    video: str
    frame: np.ndarray  # uint8 [H,W,3], the chosen frame (the global view for EVA)
    frame_index: int
    face: np.ndarray  # uint8 [S,S,3], the face crop of the chosen frame
    features: np.ndarray  # float32 [3, D] in the model's order: local, temporal, audio
    present: np.ndarray  # bool [3]
    notes: list[str]
    seconds: dict[str, float]


class VideoRejected(MediaError):
    """A readable video that breaks a configured limit (too long, too large)."""


class RequestRejected(UserError):
    """A request over a configured limit (question or transcript too long, deadline passed)."""


def check_video(path: str | Path, limits: LimitsConfig) -> float:
    """Fail fast, before anything is decoded: the file must be a readable video within the
    limits (size, duration, pixels, frames), read from its header with PyAV (`probe_video`).
    Returns its duration in seconds (0 when the container does not say)."""
    path = Path(path)
    if path.is_file():
        megabytes = path.stat().st_size / 2**20
        if megabytes > limits.max_upload_mb:
            raise VideoRejected(path, f"the file is {megabytes:.1f} MB, over the limit of {limits.max_upload_mb:g} MB",
                                "cut or re-encode the clip, or raise limits.max_upload_mb in the config")
    info = probe_video(path)  # MediaError naming the file when it is missing, empty or corrupt
    seconds = info.num_frames / info.fps if info.fps > 0 else 0.0
    if seconds > limits.max_seconds:
        raise VideoRejected(path, f"the clip lasts {seconds:.1f} s, over the limit of {limits.max_seconds:g} s",
                            "cut the utterance out of the video (the model expects one utterance), "
                            "or raise limits.max_seconds in the config")
    if info.width * info.height > limits.max_pixels:
        raise VideoRejected(path, f"the frames are {info.width}x{info.height}, over the limit of "
                                  f"{limits.max_pixels} pixels", "scale the clip down (e.g. to 1280x720), "
                                  "or raise limits.max_pixels in the config")
    if info.num_frames > limits.max_frames:
        raise VideoRejected(path, f"the clip has {info.num_frames} frames, over the limit of {limits.max_frames}",
                            "cut the clip or lower its frame rate, or raise limits.max_frames in the config")
    return seconds


def check_text(question: str | None, transcript: str | None, limits: LimitsConfig) -> None:
    """A question or transcript over its length limit is refused before the clip is decoded."""
    for what, text, limit, key in (("question", question, limits.max_question_chars, "max_question_chars"),
                                   ("transcript", transcript, limits.max_transcript_chars, "max_transcript_chars")):
        if text and len(text) > limit:
            raise RequestRejected(f"the {what} has {len(text)} characters, over the limit of {limit}; shorten it "
                                  f"(or raise limits.{key} in the config)")


class ClipEncoder:
    """The feature encoders of `cfg.features`, loaded once on `device`; `prepare` turns one clip into `ClipInputs`.

    `cfg.features.frame_choice` is the frame the model sees: the caller passes the config with
    the prompt template's choice (the first frame under the release protocol).
    """

    def __init__(self, cfg: InferConfig, device: torch.device):
        self.cfg = cfg
        self.extractor = FeatureExtractor(dataclasses.replace(cfg.features, device=str(device), save_frames=False,
                                                              eva_cache=False))
        self._check_feature_dims()

    def _check_feature_dims(self) -> None:
        for name in ("audio", "local", "temporal"):
            encoder = getattr(self.extractor, name)
            if encoder is not None and encoder.dim != self.cfg.model.feature_dim:
                raise ConfigError(
                    f"the {name} encoder (features.{name}_encoder={getattr(self.cfg.features, name + '_encoder')}) "
                    f"outputs {encoder.dim}-d vectors but model.feature_dim is {self.cfg.model.feature_dim}; "
                    f"use the encoders the model was trained with")

    def prepare(self, video_path: str | Path) -> ClipInputs:
        """Decode, crop faces, choose the frame, encode: the batch extraction steps, in memory."""
        path = Path(video_path)
        check_video(path, self.cfg.limits)
        start = time.perf_counter()
        clip = self.extractor.prepare(path)  # MediaError for unreadable files
        seconds = dict(clip.seconds)
        vectors = self.extractor.encode(clip, seconds)
        frame_index = clip.chosen_index

        dim = self.cfg.model.feature_dim
        features = np.zeros((len(FEATURE_ORDER), dim), dtype=np.float32)
        present = np.zeros(len(FEATURE_ORDER), dtype=bool)
        for row, kind in enumerate(FEATURE_ORDER):
            if kind in vectors:
                features[row], present[row] = vectors[kind], True

        notes = []
        if "audio" in self.cfg.features.features and clip.waveform is None:
            notes.append(f"{path.name} has no audio track: the audio feature is marked absent")
        disabled = [k for k in FEATURE_ORDER if k not in self.cfg.features.features]
        if disabled:
            notes.append(f"features disabled in the config (features.features): {', '.join(disabled)}")
        if clip.no_face_frames:
            notes.append(f"no face detected in {clip.no_face_frames} of {clip.num_frames} frames: "
                         "those use the nearest detected face (or a centred square when none is found)")
        seconds["total_inputs"] = time.perf_counter() - start
        return ClipInputs(str(path), clip.chosen_frame, frame_index, clip.chosen_face, features, present,
                          notes, seconds)
