"""The MERR builder's config (`MERR/configs/*.yaml`): one section per stage, each naming its backend.

Every stage has a built-in backend that runs offline on a CPU (the default) and one or more
external ones; see MERR/README.md for what each backend does and how to start its server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional, Sequence

from minigpt4.common.config import load_config
from minigpt4.common.openai_client import EndpointConfig


@dataclass
class FacesConfig:
    """Stage 1: faces and Action Unit intensities per frame."""

    backend: str = "landmarks"  # landmarks (dlib 68 points -> geometric AU estimates) | openface
    face_detector: str = "dlib"  # dlib | haar | mtcnn | center (minigpt4.features.faces; the main face is tracked)
    min_face_size: int = 64  # smallest face to find, in video pixels (dlib's HOG finds faces from 80 pixels)
    frame_stride: int = 1  # analyse every n-th frame (the peak index is still in decoded-frame order)
    neutral_fraction: float = 0.3  # landmarks: share of frames, closest to the clip's typical face, used as its neutral
    openface_csv_dir: str = ""  # openface: folder of <clip>.csv made by FeatureExtraction; empty = run the binary
    openface_bin: str = "FeatureExtraction"  # openface: the binary to run when a CSV is missing

    BOUNDS: ClassVar[dict[str, str]] = {"min_face_size": ">0", "frame_stride": ">0", "neutral_fraction": "0..1"}


@dataclass
class AUConfig:
    """Stages 2-3: peak frame, expression phrases and the AU-rule pseudo-label."""

    peak_rule: str = "sum"  # sum (largest sum of all AU intensities, what the authors did) | frequent
    frequent_top_k: int = 5  # frequent: sum only the k AUs active in the most frames
    threshold: float = 0.8  # an AU is active at this intensity (0-5 scale); also the label rule's threshold
    label_table: str = "full"  # full (MER-Factory table) | short (the release docs' table)

    BOUNDS: ClassVar[dict[str, str]] = {"frequent_top_k": ">0", "threshold": ">=0"}


@dataclass
class VisualConfig:
    """Stage 4: objective description of the peak frame."""

    backend: str = "geometry"  # geometry (framing/head pose/eyes/mouth from landmarks) | openai | model | none
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    prompt: str = "What do you see in the image? Please describe it using words only."
    model_cfg: str = ""  # model: an infer config (eval_configs/infer_*.yaml) with the checkpoint


@dataclass
class ToneConfig:
    """Stage 5: tone of the voice, one of the ten published tone words."""

    backend: str = "prosody"  # prosody (pitch/energy/rate rules) | openai (audio input) | none
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    crepe_model: str = "tiny"  # prosody: torchcrepe model (tiny | full), weights ship with the package


@dataclass
class TranscriptConfig:
    """Stage 6: what the person says."""

    backend: str = "csv"  # csv (name,sentence file) | openai (/v1/audio/transcriptions) | none
    csv: str = ""  # csv: the transcript file; clips missing from it get an empty subtitle
    column: str = "sentence"  # csv: text column (MER2024: sentence_en)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    language: str = ""  # openai: ISO code passed to the server, empty = let it detect


@dataclass
class ReasonConfig:
    """Stage 8: fine-grained reasoning and its filters."""

    backend: str = "clues"  # clues (the clues in a fixed order, no LLM) | openai | model | none
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    model_cfg: str = ""  # model: an infer config with the checkpoint
    dedupe: bool = True  # drop a reasoning whose normalised text was already kept
    max_per_class: int = 0  # drop reasonings beyond this many per label (0 = no cap)
    neutral_rate: float = 0.1  # add neutral samples: this fraction of the kept non-neutral ones
    min_class_count: int = 1  # drop classes with fewer fine samples than this
    seed: int = 0  # which neutral samples are added

    BOUNDS: ClassVar[dict[str, str]] = {"max_per_class": ">=0", "neutral_rate": ">=0", "min_class_count": ">=0"}


@dataclass
class LabelsConfig:
    """Stage 9: where each clip's label comes from."""

    annotation: str = ""  # a list file (`name frames label`) with known labels; empty = all clips unlabeled
    label_set: str = "merr"  # the labels the outputs may use (minigpt4.data.labels)
    model_cfg: str = ""  # an infer config: also ask a trained Emotion-LLaMA for unlabeled clips
    min_probability: float = 0.5  # keep an unlabeled clip when the model's label probability reaches this ...
    keep_when_agree: bool = True  # ... or when the model and the AU rule name the same label
    coarse_exclude: list[str] = field(default_factory=lambda: ["neutral"])  # MERR's coarse set has no neutral

    BOUNDS: ClassVar[dict[str, str]] = {"min_probability": "0..1"}


@dataclass
class MerrConfig:
    """`python -m minigpt4.merr build --cfg-path MERR/configs/<name>.yaml`."""

    faces: FacesConfig = field(default_factory=FacesConfig)
    aus: AUConfig = field(default_factory=AUConfig)
    visual: VisualConfig = field(default_factory=VisualConfig)
    tone: ToneConfig = field(default_factory=ToneConfig)
    transcript: TranscriptConfig = field(default_factory=TranscriptConfig)
    reason: ReasonConfig = field(default_factory=ReasonConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    features_cfg: str = ""  # --with-features: the feature extraction config (minigpt4/configs/features/*.yaml)
    max_clips: int = 0  # build from the first n videos only (0 = all)
    workers: int = 4  # clips whose endpoint calls run at once (offline stages run one clip at a time)
    sample_rate: int = 16000
    device: Optional[str] = None  # for the model backends (None = the infer config's choice)

    BOUNDS: ClassVar[dict[str, str]] = {"max_clips": ">=0", "workers": ">0", "sample_rate": ">0"}


def load_merr_config(path: str | Path | None, overrides: Sequence[str] = ()) -> MerrConfig:
    return load_config(MerrConfig, path, overrides)
