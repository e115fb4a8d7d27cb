"""Dataset section of train / eval configs (one entry per dataset under `datasets:`).

Every path may contain ``{split}`` and ``{fold}``, filled from `split` / `fold`, so one YAML
entry serves all splits and folds (e.g. DFEW's
``EmoLabel_DataSplit/{split}(single-labeled)/set_{fold}.csv``). Relative paths are relative to
the working directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional

from minigpt4.common.config import ConfigError


@dataclass
class DatasetConfig:
    reader: str = "merr"  # merr | mer2023 | dfew | emer | iemocap | shards | unibench | mafw | ravdess | merfactory
    unibench_set: Optional[str] = None  # reader=unibench: mer2023 | mer2024 | meld | iemocap4 | cmumosi | ... (data/unibench.py)
    annotation: Optional[str] = None  # the release's list file: `name frame_count label [valence]`
    captions: Optional[str] = None  # MERR coarse JSON {name: {caption}} (a fine JSON is recognised too)
    reasons: Optional[str] = None  # MERR fine JSON {name: {smp_reason_caption, reason_caption}}
    reason_field: str = "smp_reason_caption"  # fine field used as the reason_v2 target (as the release)
    reference_column: str = "reason"  # EMER: column / key holding the reference explanation
    transcripts: Optional[str] = None  # CSV with `name` and `transcript_column`
    transcript_column: str = "sentence"
    videos: Optional[str] = None  # folder of <name>.<video suffix> (common.media.VIDEO_SUFFIXES; frame chosen at load time)
    frames: Optional[str] = None  # folder of pre-extracted <name>.jpg / .png frames
    frame_choice: str = "first"  # first | middle | peak
    feature_root: Optional[str] = None  # folder holding the feature folders; default: annotation's folder
    feature_dirs: dict[str, str] = field(
        default_factory=lambda: {"local": "mae_340_UTT", "temporal": "maeV_399_UTT", "audio": "HL-UTT"}
    )  # set a kind to "" when that feature does not exist: zeros, marked absent (YAML merges keys)
    feature_dim: int = 1024  # D used only when no feature folder is configured at all
    # frozen EVA tokens of each clip's frame instead of the frame: a folder written by `python -m
    # minigpt4.features eva-cache` (tar shards + eva_cache.json), or of per-clip <name>.npy (1025 x width)
    eva_cache: Optional[str] = None
    shards: Optional[str] = None  # reader=shards: folder of webdataset *.tar (or one .tar)
    label_set: str = "merr"  # merr | mer2023 | dfew | iemocap4 | iemocap6 | iemocap9
    tasks: list[str] = field(default_factory=lambda: ["emotion"])
    split: Optional[str] = None  # fills {split}; default "train" when training, "test" otherwise
    fold: Optional[int] = None  # fills {fold}; IEMOCAP: the session held out (test = that session)
    drop_modalities: list[str] = field(default_factory=list)  # any of image, local, temporal, audio, text
    # Training only: per-sample probability of dropping each input ({text: 0.3, audio: 0.2, ...}),
    # drawn reproducibly from (seed, epoch, index); never all inputs at once. Empty = never drop.
    modality_dropout: dict[str, float] = field(default_factory=dict)
    max_words: int = 200  # target text cap, as the release
    limit: Optional[int] = None  # keep only the first N clips (smoke tests)
    on_bad_item: str = "error"  # error | skip
    protocol: str = "clean"  # clean | release: whose instruction pools (docs/release_protocol.md); eval's --protocol sets it

    BOUNDS: ClassVar[dict[str, str]] = {  # checked at load time (common.config.check_bounds)
        "feature_dim": ">0", "max_words": ">0", "limit": ">0", "modality_dropout": "0..1"}


def fill_path(path: str | None, cfg: DatasetConfig, split: str) -> Path | None:
    """`path` with ``{split}`` / ``{fold}`` filled in."""
    if path is None:
        return None
    if "{fold}" in path and cfg.fold is None:
        raise ConfigError(f"path {path!r} contains {{fold}} but the dataset config sets no `fold`")
    return Path(path.format(split=split, fold=cfg.fold))
