"""`FeatureConfig`: everything feature extraction and encoder pre-training can be told.

Load it with ``load_config(FeatureConfig, "minigpt4/configs/features/real.yaml", ["device=cuda"])``;
unknown keys are errors with a suggestion. Each default is written here once; the YAML files
only name the encoder folders and what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

FEATURE_NAMES = ("audio", "local", "temporal")

# Release folder names (see docs/data_formats.md): they sit beside the annotation file.
FEATURE_FOLDERS = {"audio": "HL-UTT", "local": "mae_340_UTT", "temporal": "maeV_399_UTT"}

# first: frame 0 (the release's protocol); middle: frame T // 2; peak: the tracked face's most
# changed frame; au_peak: the frame a dataset-building pipeline chose by Action Units (au_peaks)
FRAME_CHOICES = ("first", "middle", "peak", "au_peak")


@dataclass
class FeatureConfig:
    # encoder folders written by save_pretrained (real: hidden size 1024)
    audio_encoder: str = "checkpoints/chinese-hubert-large"
    local_encoder: str = "checkpoints/mae_face"
    temporal_encoder: str = "checkpoints/videomae_face"
    features: list[str] = field(default_factory=lambda: list(FEATURE_NAMES))

    # frames and faces
    frame_choice: str = "first"  # first | middle | peak | au_peak (see FRAME_CHOICES above)
    au_peaks: Optional[str] = None  # JSON {clip name: peak frame index, 0-based}; needed by au_peak
    save_frames: bool = True  # the chosen frame as <out>/frames/<name>.jpg, for the global (EVA) view
    face_detector: str = "haar"  # haar | mtcnn | dlib | center (see minigpt4.features.faces)
    face_size: int = 224  # side of the square face crops handed to MAE / VideoMAE
    face_margin: float = 0.2  # crop this fraction of the face box larger on each side
    min_face_size: int = 64  # smallest face to find, in video pixels: detection shrinks frames only this far
    detect_stride: int = 5  # run the face detector on every k-th frame, interpolate boxes between
    full_scan_stride: int = 50  # search the whole frame every this many frames; between, only near tracked faces
    local_max_frames: int = 64  # MAE sees at most this many frames, spread evenly (0 = all)
    frames_per_clip: int = 16  # VideoMAE clip length; must equal the model's num_frames

    # throughput
    device: str = "cpu"
    local_batch_size: int = 32  # frames per MAE forward pass
    temporal_batch_size: int = 4  # clips per VideoMAE forward pass
    decode_workers: int = 2  # threads decoding video, cropping faces and reading audio
    torch_threads: int = 0  # 0 = leave PyTorch's default

    # optional global-view cache: frozen EVA ViT tokens of the chosen frame, <out>/eva_cache/<name>.npy
    eva_cache: bool = False
    eva_vision: Optional[str] = None  # YAML of VisionConfig fields (minigpt4.models.config); None = its defaults

    # encoder pre-training (python -m minigpt4.features pretrain)
    pretrain_steps: int = 20
    pretrain_batch_size: int = 8
    pretrain_lr: float = 1.5e-4
    pretrain_weight_decay: float = 0.05
    pretrain_mask_ratio: float = 0.75  # MAE's ratio; VideoMAE used 0.9 with tube masking
    pretrain_video_mask_ratio: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [name for name in self.features if name not in FEATURE_NAMES]
        if unknown or not self.features:
            raise ValueError(f"features must be a non-empty subset of {list(FEATURE_NAMES)}, got {self.features}")
        if self.frame_choice not in FRAME_CHOICES:
            raise ValueError(f"frame_choice must be one of {list(FRAME_CHOICES)}, got {self.frame_choice!r}")
        if self.frame_choice == "au_peak" and not self.au_peaks:
            raise ValueError("frame_choice=au_peak needs au_peaks: the JSON file {clip name: peak frame index} "
                             "written by the dataset-building pipeline")
        for name in ("face_size", "min_face_size", "detect_stride", "full_scan_stride", "frames_per_clip", "local_batch_size",
                     "temporal_batch_size", "decode_workers", "pretrain_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.local_max_frames < 0:
            raise ValueError(f"local_max_frames must be >= 0 (0 = all frames), got {self.local_max_frames}")
