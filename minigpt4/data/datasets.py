"""One generic dataset for every benchmark: records from a registered reader -> samples.

A *reader* (registered by name in `DATASET_READERS`) parses one release format into `Record`s and
says where the clip's media lives (a `FolderMedia` for the release's folder layout, a shard index
for webdataset tars). `EmotionDataset` then does the same thing for every benchmark: it joins the
side files (transcripts, captions, reasons), checks that every referenced file exists, maps each
index to a (clip, task) pair and builds the sample dict the collator consumes:

    name, image [3,S,S] | None, (image_embeds [N,W]), features [F,D], feature_present [F],
    transcript, task, instruction, target, label, valence

`features` has one row per feature token (`feature_layout.FeatureLayout`; the release's layout:
3 rows, one vector each of local, temporal, audio).

Adding a benchmark means writing one reader function, not another Dataset class.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np
import torch

from ..common.config import ConfigError
from ..common.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, load_frame
from ..common.registry import Registry
from ..models.config import VisionConfig
from ..models.eva_cache import EvaTokenShards, is_token_cache
from ..models.feature_layout import FEATURE_ORDER, FeatureLayout, FeatureShapeError
from . import shards as shard_io
from .annotations import (
    AnnotationError,
    BadItems,
    Record,
    normalise_text,
    read_captions,
    read_dfew_split,
    read_emer_references,
    read_fine_json,
    read_iemocap,
    read_list_file,
    read_mer2023_csv,
    read_transcripts,
)
from .config import DatasetConfig, fill_path
from .labels import label_key, label_set
from .merfactory import read_merfactory_export
from .prompts import TASKS, PromptTemplate
from .unibench import UNIBENCH_SETS, read_mafw_split, read_ravdess_folder, read_unibench_labels

log = logging.getLogger(__name__)

MODALITIES = ("image",) + FEATURE_ORDER + ("text",)

ImageTransform = Callable[[np.ndarray], torch.Tensor]


class Media(Protocol):
    """Where a reader's clips keep their frame, features and cached EVA tokens."""

    layout: FeatureLayout  # set by `prepare`

    def prepare(self, records: list[Record], bad: BadItems, layout: FeatureLayout | None = None) -> list[Record]:
        """Check every referenced file up front; return the records that can be loaded. `layout`:
        the model's feature rows (None = the release's, at the width the files have)."""

    def frame(self, record: Record) -> np.ndarray | None:
        """RGB uint8 [H, W, 3], or None when the source has no image."""

    def features(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        """float32 [F, D] rows of `layout` (zeros where absent) and bool [F] presence."""

    def eva(self, record: Record) -> np.ndarray | torch.Tensor | None:
        """Cached frozen EVA tokens [N, W] in their stored dtype (a bf16 cache gives a torch
        tensor: numpy has no bf16; the model casts them), or None when no cache is configured."""


Reader = Callable[[DatasetConfig, str, BadItems], "tuple[list[Record], Media]"]
DATASET_READERS: Registry[Reader] = Registry("dataset reader")


def load_npy(path: Path, what: str, dim: int | None = None) -> np.ndarray:
    """A (D,) or (1, D) feature file as float32 (D,); any other shape names the file and the fix."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise AnnotationError(f"{what} file not found: {path} (run feature extraction or fix the folder)") from None
    except ValueError as err:
        raise AnnotationError(f"{path}: not a valid .npy file ({err})") from None
    shape = tuple(array.shape)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    expected = f"({dim},) or (1, {dim})" if dim else "(D,) or (1, D)"
    if array.ndim != 1 or (dim is not None and array.shape[0] != dim):
        raise AnnotationError(
            f"{path}: {what} has shape {shape}, expected {expected}"
            " (one mean-pooled utterance vector per clip; re-extract this feature)"
        )
    return array.astype(np.float32, copy=False)


def _load_feature(path: Path, kind: str) -> np.ndarray:
    """A feature file as written by extraction: (D,), (1, D) or (k, D); `FeatureLayout.check` checks the shape."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise AnnotationError(f"{kind} feature file not found: {path} (run feature extraction or fix the folder)") from None
    except ValueError as err:
        raise AnnotationError(f"{path}: not a valid .npy file ({err})") from None


def _as_annotation_error(call, *args):
    """`call(*args)`, a feature of the wrong shape reported like any other bad file of a clip."""
    try:
        return call(*args)
    except FeatureShapeError as err:
        raise AnnotationError(str(err)) from None


def _npy_dim(path: Path) -> int:
    """D of a (D,) / (1, D) .npy from its header only (cheap enough for every clip at start-up)."""
    shape = np.load(path, mmap_mode="r").shape
    if len(shape) == 1 or (len(shape) == 2 and shape[0] == 1):
        return int(shape[-1])
    raise AnnotationError(f"{path}: feature has shape {tuple(shape)}, expected (D,) or (1, D) (re-extract this feature)")


class FolderMedia:
    """The release's folder layout: frames / videos folders and one folder per feature kind."""

    def __init__(self, cfg: DatasetConfig, split: str, annotation_dir: Path):
        self.cfg = cfg
        self.frames_dir = fill_path(cfg.frames, cfg, split)
        self.videos_dir = fill_path(cfg.videos, cfg, split)
        self.eva_dir = fill_path(cfg.eva_cache, cfg, split)
        root = fill_path(cfg.feature_root, cfg, split) or annotation_dir
        unknown = set(cfg.feature_dirs) - set(FEATURE_ORDER)
        if unknown:
            raise ConfigError(f"feature_dirs has unknown key(s) {sorted(unknown)}; valid: {', '.join(FEATURE_ORDER)}")
        self.feature_dirs = {k: root / v for k, v in cfg.feature_dirs.items() if v}
        for kind, folder in self.feature_dirs.items():
            if not folder.is_dir():
                raise AnnotationError(
                    f"{kind} feature folder not found: {folder} (extract the features, set `feature_root`,"
                    f" or set `feature_dirs.{kind}: ''` to go without it)"
                )
        for what, folder in (("frames", self.frames_dir), ("videos", self.videos_dir), ("eva_cache", self.eva_dir)):
            if folder is not None and not folder.is_dir():
                raise AnnotationError(f"{what} folder not found: {folder} (fix `{what}` in the dataset config)")
        # `eva_cache:` is a token-shard cache (python -m minigpt4.features eva-cache) or a folder of <name>.npy
        self.eva_shards = EvaTokenShards(self.eva_dir) if self.eva_dir is not None and is_token_cache(self.eva_dir) else None
        self.image_paths: dict[str, Path] = {}
        self.dim = cfg.feature_dim

    def prepare(self, records: list[Record], bad: BadItems, layout: FeatureLayout | None = None) -> list[Record]:
        kept = []
        for record in records:
            problem = self._missing(record)
            if problem:
                bad.report(f"{record.source}: clip {record.name!r}: {problem}")
            else:
                kept.append(record)
        if layout is None and kept and self.feature_dirs:
            kind, folder = next(iter(self.feature_dirs.items()))
            self.dim = _npy_dim(folder / f"{kept[0].name}.npy")
        self.layout = layout or FeatureLayout.uniform(self.dim)
        for kind, folder in self.feature_dirs.items():  # a layout the files do not have fails here, not mid-epoch
            if kept:
                path = folder / f"{kept[0].name}.npy"
                _as_annotation_error(self.layout.check, kind, np.load(path, mmap_mode="r"), str(path))
        return kept

    def _missing(self, record: Record) -> str | None:
        if self.frames_dir is not None or self.videos_dir is not None:
            folder, extensions = (
                (self.frames_dir, IMAGE_SUFFIXES) if self.frames_dir is not None else (self.videos_dir, VIDEO_SUFFIXES)
            )
            found = next((folder / f"{record.name}{e}" for e in extensions if (folder / f"{record.name}{e}").is_file()), None)
            if found is None:
                return f"no {'|'.join(extensions)} file in {folder} (add it or remove the clip from the list)"
            self.image_paths[record.name] = found
        for kind, folder in self.feature_dirs.items():
            if not (folder / f"{record.name}.npy").is_file():
                return f"{kind} feature {folder / (record.name + '.npy')} is missing (re-run feature extraction)"
        if self.eva_shards is not None:
            return None if record.name in self.eva_shards else self.eva_shards.missing_hint(record.name)
        if self.eva_dir is not None and not (self.eva_dir / f"{record.name}.npy").is_file():
            return f"cached EVA tokens {self.eva_dir / (record.name + '.npy')} are missing (re-run the EVA cache)"
        return None

    def frame_file(self, record: Record) -> Path | None:
        return self.image_paths.get(record.name)

    def frame(self, record: Record) -> np.ndarray | None:
        path = self.image_paths.get(record.name)
        return None if path is None else load_frame(path, self.cfg.frame_choice)

    def features(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        paths = {kind: folder / f"{record.name}.npy" for kind, folder in self.feature_dirs.items()}
        arrays = {kind: _load_feature(path, kind) for kind, path in paths.items()}
        return _as_annotation_error(self.layout.stack, arrays, {kind: str(path) for kind, path in paths.items()})

    def eva(self, record: Record) -> np.ndarray | torch.Tensor | None:
        if self.eva_shards is not None:
            return self.eva_shards.read(record.name)
        if self.eva_dir is None:
            return None
        path = self.eva_dir / f"{record.name}.npy"
        tokens = np.load(path, allow_pickle=False)
        if tokens.ndim != 2:
            raise AnnotationError(f"{path}: cached EVA tokens must be [tokens, width], got {tokens.shape} (rebuild the cache)")
        return tokens.astype(np.float32, copy=False)


def _annotation(cfg: DatasetConfig, split: str) -> Path:
    path = fill_path(cfg.annotation, cfg, split)
    if path is None:
        raise ConfigError(f"dataset reader {cfg.reader!r} needs `annotation` (the annotation file) in its config")
    return path


@DATASET_READERS.register("merr")
def read_merr(cfg: DatasetConfig, split: str, bad: BadItems) -> tuple[list[Record], Media]:
    """MERR coarse / fine list files (and the synthetic corpus, which uses the same format)."""
    path = _annotation(cfg, split)
    return read_list_file(path, cfg.label_set, bad), FolderMedia(cfg, split, path.parent)


@DATASET_READERS.register("mer2023")
def read_mer2023(cfg: DatasetConfig, split: str, bad: BadItems) -> tuple[list[Record], Media]:
    """MER2023 train / test3: the release's list `.txt` or the challenge's label `.csv`."""
    path = _annotation(cfg, split)
    reader = read_mer2023_csv if path.suffix.lower() == ".csv" else read_list_file
    return reader(path, cfg.label_set, bad), FolderMedia(cfg, split, path.parent)


@DATASET_READERS.register("dfew")
def read_dfew(cfg: DatasetConfig, split: str, bad: BadItems) -> tuple[list[Record], Media]:
    """DFEW fold files; point `annotation` at ``.../{split}(single-labeled)/set_{fold}.csv``."""
    path = _annotation(cfg, split)
    return read_dfew_split(path, cfg.label_set, bad), FolderMedia(cfg, split, path.parent)


@DATASET_READERS.register("emer")
def read_emer(cfg: DatasetConfig, split: str, bad: BadItems) -> tuple[list[Record], Media]:
    """EMER: the reference explanation is the target of the reasoning tasks."""
    path = _annotation(cfg, split)
    records = read_emer_references(path, cfg.label_set, bad, cfg.reference_column)
    for record in records:
        record.caption = record.smp_reason = record.reason
    return records, FolderMedia(cfg, split, path.parent)


@DATASET_READERS.register("iemocap")
def read_iemocap_split(cfg: DatasetConfig, split: str, bad: BadItems) -> tuple[list[Record], Media]:
    """IEMOCAP; with `fold: k`, leave-one-session-out (train = other sessions, else session k)."""
    path = _annotation(cfg, split)
    records = read_iemocap(path, cfg.label_set, bad)
    if cfg.fold is not None:
        held_out = str(cfg.fold)
        records = [r for r in records if (r.session == held_out) != (split == "train")]
    return records, FolderMedia(cfg, split, path.parent)


@DATASET_READERS.register("unibench")
def read_unibench(cfg: DatasetConfig, split: str, bad: BadItems) -> tuple[list[Record], Media]:
    """A MER-UniBench test set as its owners release it: `unibench_set` names it, `annotation` is its
    label file (OV-MERD+: ``ovlabel.csv``, test names from `transcripts`, ``subtitle_eng.csv``)."""
    if cfg.unibench_set not in UNIBENCH_SETS:
        raise ConfigError(f"reader 'unibench' needs `unibench_set`, one of {', '.join(UNIBENCH_SETS)} (got {cfg.unibench_set!r})")
    path = _annotation(cfg, split)
    names = fill_path(cfg.transcripts, cfg, split) if cfg.unibench_set == "ovmerdplus" else None
    return read_unibench_labels(cfg.unibench_set, path, bad, names), FolderMedia(cfg, split, path.parent)


@DATASET_READERS.register("mafw")
def read_mafw(cfg: DatasetConfig, split: str, bad: BadItems) -> tuple[list[Record], Media]:
    """MAFW; point `annotation` at ``Train & Test Set/single/no_caption/set_{fold}/{split}.txt``."""
    path = _annotation(cfg, split)
    return read_mafw_split(path, cfg.label_set, bad), FolderMedia(cfg, split, path.parent)


@DATASET_READERS.register("ravdess")
def read_ravdess(cfg: DatasetConfig, split: str, bad: BadItems) -> tuple[list[Record], Media]:
    """RAVDESS; `annotation` is the folder of Actor_XX clips (labels come from the file names)."""
    path = _annotation(cfg, split)
    return read_ravdess_folder(path, cfg.label_set, bad), FolderMedia(cfg, split, path)


@DATASET_READERS.register("merfactory")
def read_merfactory(cfg: DatasetConfig, split: str, bad: BadItems) -> tuple[list[Record], Media]:
    """MER-Factory's `emotion-llama[-fine]` export: `annotation` is its MERR_*_grained.txt (the .json beside it is read too)."""
    path = _annotation(cfg, split)
    return read_merfactory_export(path, cfg.label_set, bad), FolderMedia(cfg, split, path.parent)


@DATASET_READERS.register("shards")
def read_shards(cfg: DatasetConfig, split: str, bad: BadItems) -> tuple[list[Record], Media]:
    """Webdataset tars written by `shards.write_shards` (records and media inside the tars)."""
    path = fill_path(cfg.shards, cfg, split)
    if path is None:
        raise ConfigError("dataset reader 'shards' needs `shards` (a folder of .tar files) in its config")
    index = shard_io.ShardIndex(path, cfg.feature_dim)
    return index.records(), index


class EmotionDataset(torch.utils.data.Dataset):
    """Samples of one dataset split; item ``i`` is clip ``i // len(tasks)`` under task ``i % len(tasks)``.

    Build it with `build_dataset`. At train time the instruction is drawn from the task's pool with
    an rng seeded by (seed, epoch, index), so it is reproducible and the same in every worker;
    call `set_epoch` to vary it per epoch. At eval time the instruction is fixed.
    """

    def __init__(
        self,
        cfg: DatasetConfig,
        records: list[Record],
        media: Media,
        image_transform: Optional[ImageTransform],
        train: bool,
        seed: int = 0,
        bad: BadItems | None = None,
        split: str = "",
    ):
        self.cfg = cfg
        self.records = records
        self.media = media
        self.image_transform = image_transform or _to_tensor
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.split = split
        self.labels = label_set(cfg.label_set)
        bad = bad or BadItems(cfg.on_bad_item)
        self.skip_messages = bad.messages
        unknown_tasks = [t for t in cfg.tasks if t not in TASKS]
        unknown_drops = [m for m in cfg.drop_modalities if m not in MODALITIES]
        if unknown_tasks or not cfg.tasks:
            raise ConfigError(f"tasks {cfg.tasks} must be a non-empty list of {', '.join(TASKS)}")
        if unknown_drops:
            raise ConfigError(f"drop_modalities has unknown {unknown_drops}; valid: {', '.join(MODALITIES)}")
        self.template = PromptTemplate.resolve(cfg.protocol)  # whose instruction pools; no tokens needed here
        bad_dropout = {k: v for k, v in cfg.modality_dropout.items() if k not in MODALITIES or not 0.0 <= v <= 1.0}
        if bad_dropout:
            raise ConfigError(
                f"modality_dropout {bad_dropout}: keys must be among {', '.join(MODALITIES)} and values probabilities in [0, 1]"
            )
        self.drop = set(cfg.drop_modalities)
        self.tasks = list(cfg.tasks)

    @property
    def skipped(self) -> int:
        """How many annotation entries / clips were skipped (``on_bad_item: skip``)."""
        return len(self.skip_messages)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records) * len(self.tasks)

    def item(self, index: int) -> tuple[Record, str]:
        """The (clip, task) pair behind `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        return self.records[index // len(self.tasks)], self.tasks[index % len(self.tasks)]

    def target(self, record: Record, task: str) -> str:
        if task == "emotion":
            text = label_key(record.label)
        elif task == "reason":
            text = record.caption
        elif task == "unibench":  # evaluation only: the gold as released (a word, a list, or none for sentiment)
            text = label_key(record.label) or ""
        elif self.cfg.reason_field == "reason_caption":
            text = record.reason
        else:
            text = record.smp_reason
        assert text is not None, f"{record.source}: no {task} target (build_dataset checks this)"
        return normalise_text(text, self.cfg.max_words)

    def instruction(self, task: str, index: int) -> str:
        """The question of item `index` (`PromptTemplate.instruction`: the same decision as inference)."""
        rng = random.Random(f"{self.seed}:{self.epoch}:{index}") if self.train else None
        return self.template.instruction(task, self.labels, rng)

    def dropped(self, index: int) -> set[str]:
        """Inputs item `index` goes without: `drop_modalities` always, plus (training only) a
        `modality_dropout` draw seeded like the instruction draw, so a model learns to answer from
        any subset of its inputs. The draw never removes every remaining input: one is kept."""
        drop = set(self.drop)
        if not (self.train and self.cfg.modality_dropout):
            return drop
        rng = random.Random(f"{self.seed}:{self.epoch}:{index}:modality_dropout")
        drawn = [m for m in MODALITIES if m not in drop and rng.random() < self.cfg.modality_dropout.get(m, 0.0)]
        if drawn and drop.union(drawn) >= set(MODALITIES):
            drawn.remove(rng.choice(drawn))
        return drop.union(drawn)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record, task = self.item(index)
        drop = self.dropped(index)
        sample: dict[str, Any] = {"name": record.name, "image": None}
        if "image" not in drop:
            tokens = self.media.eva(record)
            if tokens is not None:  # cached frozen EVA tokens: no need to decode the frame at all
                sample["image_embeds"] = torch.as_tensor(tokens)
            else:
                frame = self.media.frame(record)
                sample["image"] = None if frame is None else self.image_transform(frame)
        feats, present = self.media.features(record)
        for kind in FEATURE_ORDER:
            if kind in drop:
                rows = self.media.layout.slice(kind)
                feats[rows] = 0.0
                present[rows] = False
        sample["features"] = torch.from_numpy(feats)
        sample["feature_present"] = torch.from_numpy(present)
        sample.update(self.text_fields(index, record, task, drop))
        return sample

    def text_fields(self, index: int, record: Record, task: str, drop: set[str]) -> dict[str, Any]:
        """The fields of item `index` that decide its prompt and target text."""
        return {"transcript": "" if "text" in drop else (record.transcript or ""), "task": task,
                "instruction": self.instruction(task, index), "target": self.target(record, task),
                "label": record.label, "valence": record.valence}

    def text_sample(self, index: int) -> dict[str, Any]:
        """Item `index` without reading its media: its text fields, and every input counted present
        unless dropped. What the length-grouped batch sampler measures token lengths on."""
        record, task = self.item(index)
        drop = self.dropped(index)
        present = np.ones(self.media.layout.rows, bool)
        for kind in FEATURE_ORDER:
            if kind in drop:
                present[self.media.layout.slice(kind)] = False
        return {"name": record.name, "image": None if "image" in drop else True, "feature_present": present,
                **self.text_fields(index, record, task, drop)}


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """Fallback transform: RGB uint8 HxWx3 -> float [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def _join_side_files(cfg: DatasetConfig, split: str, records: list[Record], bad: BadItems) -> list[Record]:
    """Attach transcripts / captions / reasons; a clip lacking one that is needed is a bad item."""
    transcripts_path = fill_path(cfg.transcripts, cfg, split)
    captions_path = fill_path(cfg.captions, cfg, split)
    reasons_path = fill_path(cfg.reasons, cfg, split)
    transcripts = read_transcripts(transcripts_path, cfg.transcript_column) if transcripts_path else None
    coarse, fine = read_captions(captions_path) if captions_path else ({}, {})
    if reasons_path:
        fine = read_fine_json(reasons_path)
    kept = []
    for record in records:
        if transcripts is not None:
            if record.name not in transcripts:
                bad.report(f"{transcripts_path}: no transcript for clip {record.name!r} (listed at {record.source})")
                continue
            record.transcript = transcripts[record.name]
        if record.name in coarse:
            record.caption = coarse[record.name]
        if record.name in fine:
            record.smp_reason, record.reason = fine[record.name]
        missing = _missing_targets(cfg, record)
        if missing:
            bad.report(f"{record.source}: clip {record.name!r} has no {missing}")
            continue
        kept.append(record)
    return kept


def _missing_targets(cfg: DatasetConfig, record: Record) -> str | None:
    for task in cfg.tasks:
        if task == "emotion" and record.label is None:
            return "emotion label (needed by task 'emotion'; the reference file has no `label` for it)"
        if task == "reason" and record.caption is None:
            return "coarse caption (task 'reason' needs it in the `captions` JSON)"
        if task == "reason_v2":
            text = record.reason if cfg.reason_field == "reason_caption" else record.smp_reason
            if text is None:
                return f"fine reason {cfg.reason_field!r} (task 'reason_v2' needs it in the `reasons` JSON)"
    return None


def build_dataset(
    cfg: DatasetConfig, image_transform: Optional[ImageTransform] = None, train: bool = True, seed: int = 0,
    feature_layout: FeatureLayout | None = None, vision: VisionConfig | None = None,
) -> EmotionDataset:
    """Read, join and check one configured dataset split; errors name the file and the fix.
    `feature_layout`: the model's (`ModelConfig.feature_layout`); None = the release's layout at
    the width the feature files have. `vision`: the model's frame tower, which an EVA token cache
    (`eva_cache:`) must have been made by (None: not checked)."""
    if cfg.reason_field not in ("smp_reason_caption", "reason_caption"):
        raise ConfigError(f"reason_field must be smp_reason_caption or reason_caption, got {cfg.reason_field!r}")
    label_set(cfg.label_set)
    split = cfg.split or ("train" if train else "test")
    bad = BadItems(cfg.on_bad_item)
    records, media = DATASET_READERS.get(cfg.reader)(cfg, split, bad)
    eva_shards = getattr(media, "eva_shards", None)
    if vision is not None and eva_shards is not None:
        eva_shards.check_tower(vision)
    if cfg.limit is not None:
        records = records[: cfg.limit]
    records = _join_side_files(cfg, split, records, bad)
    records = media.prepare(records, bad, feature_layout)
    bad.log_summary(f"dataset {cfg.reader} ({split})")
    if not records:
        raise AnnotationError(f"dataset {cfg.reader} ({split}) has no usable clips (skipped {bad.count})")
    return EmotionDataset(cfg, records, media, image_transform, train, seed, bad, split)


def clip_key(name: str) -> str:
    """A clip's name as the split lists compare it: no folder, no video suffix (``a/x.mp4`` -> ``x``)."""
    stem = Path(str(name).strip()).name
    return Path(stem).stem if Path(stem).suffix.lower() in VIDEO_SUFFIXES else stem


def remove_clips(dataset: EmotionDataset, names: set[str]) -> list[str]:
    """Drop from `dataset` every clip whose `clip_key` is in `names` (the validation split, so that
    no validation clip is trained on); returns the names removed, in the dataset's order."""
    removed = [r.name for r in dataset.records if clip_key(r.name) in names]
    if removed:
        dataset.records = [r for r in dataset.records if clip_key(r.name) not in names]
    return removed


def item_class_keys(dataset) -> list:
    """The class key of every item, in index order; a `ConcatDataset` of several training sets included."""
    parts = getattr(dataset, "datasets", [dataset])
    return [label_key(part.item(i)[0].label) for part in parts for i in range(len(part))]


def class_counts(dataset) -> Counter:
    """Items per class key (``"happy"``, or ``"happy, surprise"`` for a multi-label clip)."""
    return Counter(item_class_keys(dataset))


def class_balanced_weights(dataset) -> list[float]:
    """Per-item weights 1 / count(class), for `torch.utils.data.WeightedRandomSampler`.

    Every class then gets the same total weight; unlabelled items share one class of their own.
    With several training sets the classes are counted over all of them together.
    """
    keys = item_class_keys(dataset)
    counts = Counter(keys)
    return [1.0 / counts[key] for key in keys]


def describe(dataset: EmotionDataset) -> str:
    """A one-line summary for logs."""
    counts = class_counts(dataset)
    return (
        f"{dataset.cfg.reader}/{dataset.split}: {len(dataset.records)} clips x {len(dataset.tasks)} task(s),"
        f" skipped {dataset.skipped}, classes {dict(sorted(counts.items(), key=lambda kv: str(kv[0])))}"
    )


__all__: Sequence[str] = (
    "DATASET_READERS",
    "EmotionDataset",
    "FolderMedia",
    "build_dataset",
    "class_balanced_weights",
    "clip_key",
    "class_counts",
    "describe",
    "fill_path",
    "load_npy",
    "remove_clips",
)
