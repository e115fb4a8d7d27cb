"""`eval_configs/infer_*.yaml`: the schema of an inference (and web demo) config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional, Sequence

from minigpt4.common.config import load_config
from minigpt4.features.config import FeatureConfig
from minigpt4.models.config import ModelConfig
from minigpt4.run_config import GenerationConfig


@dataclass
class LimitsConfig:
    """What one request may ask for, checked before any decoding (docs/http_api.md, "Limits").

    The model expects one utterance (a few seconds); the defaults leave room for a minute of
    1080p video and a long transcript, and reject what would hold a server for minutes (a 4K
    film, a 200,000-character question). `request_seconds` bounds a whole request in the web
    demo: waiting for the model, decoding and generating (0 = no deadline).
    """

    max_seconds: float = 60.0  # clip duration
    max_upload_mb: float = 50.0  # file size
    max_pixels: int = 1920 * 1080  # frame width x height (1080p)
    max_frames: int = 1800  # frames decoded (60 s at 30 fps)
    max_question_chars: int = 1000
    max_transcript_chars: int = 2000
    request_seconds: float = 120.0  # web demo: deadline of one request
    BOUNDS: ClassVar[dict[str, str]] = {  # checked at load time (common.config.check_bounds)
        "max_seconds": ">0", "max_upload_mb": ">0", "max_pixels": ">0", "max_frames": ">0",
        "max_question_chars": ">0", "max_transcript_chars": ">0", "request_seconds": ">=0"}


@dataclass
class AppConfig:
    """The web demo (`app.py`)."""

    examples: Optional[str] = None  # folder of example clips offered in the page; missing = none
    examples_list: Optional[str] = None  # only the clips named in this file (an annotation list works)
    max_examples: int = 6
    title: str = "Emotion-LLaMA"
    # requests served at once: decoding one clip overlaps generating another's answer (the model
    # itself answers one at a time), so a long clip does not hold up short ones
    concurrency: int = 2
    BOUNDS: ClassVar[dict[str, str]] = {"max_examples": ">=0", "concurrency": ">0"}


@dataclass
class InferConfig:
    """`eval_configs/infer_*.yaml`. `features` must match the extraction config the model was
    trained on (same encoders, frame choice, face detector), or the inputs differ from training."""

    model: ModelConfig = field(default_factory=ModelConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    label_set: str = "merr"  # the labels the model was trained to name (minigpt4.data.labels)
    protocol: str = "clean"  # clean | release: the release's evaluation prompt, first frame, 500 tokens (--protocol)
    device: str = "auto"  # auto | cpu | cuda, for the model and the encoders (features.device is ignored)
    # generate: the label is parsed from generated text (it may name none); score_labels: the most
    # likely label of the set, with probabilities; both: generated text plus the probabilities
    answer_mode: str = "generate"
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    app: AppConfig = field(default_factory=AppConfig)


def load_infer_config(path: str | Path | None, overrides: Sequence[str] = ()) -> InferConfig:
    return load_config(InferConfig, path, overrides)
