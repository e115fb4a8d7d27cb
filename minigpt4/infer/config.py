"""`eval_configs/infer_*.yaml`: the schema of an inference (and web demo) config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from minigpt4.common.config import load_config
from minigpt4.features.config import FeatureConfig
from minigpt4.models.config import ModelConfig
from minigpt4.run_config import GenerationConfig


@dataclass
class LimitsConfig:
    """What one request may ask for: decoding keeps every frame in memory, so a feature-length
    film would exhaust it; the web demo also caps the upload size."""

    max_seconds: float = 60.0  # clip duration
    max_upload_mb: float = 50.0  # file size


@dataclass
class AppConfig:
    """The web demo (`app.py`)."""

    examples: Optional[str] = None  # folder of example clips offered in the page; missing = none
    examples_list: Optional[str] = None  # only the clips named in this file (an annotation list works)
    max_examples: int = 6
    title: str = "Emotion-LLaMA"


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
