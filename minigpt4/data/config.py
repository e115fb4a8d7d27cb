"""Dataset section of train / eval configs (one entry per dataset under `datasets:`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class DatasetConfig:
    reader: str = "merr"  # merr | mer2023 | dfew | emer | iemocap | shards
    annotation: Optional[str] = None  # the release's list file: `name frame_count label [valence]`
    captions: Optional[str] = None  # MERR coarse / fine JSON
    transcripts: Optional[str] = None  # CSV with `name` and `transcript_column`
    transcript_column: str = "sentence"
    videos: Optional[str] = None  # folder of <name>.mp4 / .avi (frame chosen at load time)
    frames: Optional[str] = None  # folder of pre-extracted <name>.jpg / .png frames
    frame_choice: str = "first"  # first | middle | peak
    feature_root: Optional[str] = None  # folder holding the feature folders; default: annotation's folder
    feature_dirs: dict[str, str] = field(
        default_factory=lambda: {"local": "mae_340_UTT", "temporal": "maeV_399_UTT", "audio": "HL-UTT"}
    )
    eva_cache: Optional[str] = None  # folder of cached frozen EVA tokens <name>.npy (1025 x width)
    label_set: str = "merr"  # merr | mer2023 | dfew | iemocap4 | iemocap6 | iemocap9 | ...
    tasks: list[str] = field(default_factory=lambda: ["emotion"])
    drop_modalities: list[str] = field(default_factory=list)  # any of image, local, temporal, audio, text
    on_bad_item: str = "error"  # error | skip
