"""Webdataset tar shards: the same clips as a folder dataset, in a few large files.

A corpus of 28k clips is ~120k small files (frame/video + three .npy + text); shards pack them
into tars of `max_per_shard` clips, which copy, stream and cache far better. Each clip is one
webdataset sample with key = clip name:

    <name>.json          label, valence, frame_count, session, transcript, caption, smp_reason,
                         reason, source, feature_present
    <name>.features.npy  float32 [F, D] rows of the model's feature layout (release: 3 rows, local,
                         temporal, audio; zeros where absent; models/feature_layout.py)
    <name>.frame.jpg|png the chosen frame: the original frame file's bytes, or a lossless PNG of
                         the frame decoded from the video (so reading back gives the same pixels)
    <name>.eva.npy       cached EVA tokens, when the source dataset had them (in their cached
                         dtype; bf16 as its uint16 bits: models/eva_cache.py)

Streaming users can read them with `webdataset.WebDataset`; `ShardIndex` indexes member offsets
once and reads samples by seeking, so the map-style `EmotionDataset` (class-balanced sampling,
deterministic (clip, task) indices) works on shards exactly as on folders (`reader: shards`).
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np
import torch

from ..common.media import decode_image
from ..models.eva_cache import decode_tokens, encode_tokens
from ..models.feature_layout import FeatureLayout
from .annotations import AnnotationError, BadItems, Record

_RECORD_FIELDS = [f.name for f in fields(Record) if f.name != "name"]
CACHE_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}  # cached EVA tokens keep their dtype


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_shards(dataset_or_records: Any, out_dir: str | Path, max_per_shard: int = 1000, media: Any = None) -> list[Path]:
    """Write clips to ``out_dir/shard-000000.tar, ...``; returns the shard paths.

    Pass an `EmotionDataset` (its records and media are written: frame, features, EVA tokens,
    text, label -- independent of its `drop_modalities`, which stay a read-time choice), or an
    iterable of `Record`s with an optional `media` to take frames / features from.
    """
    import webdataset as wds

    if hasattr(dataset_or_records, "records") and hasattr(dataset_or_records, "media"):
        records, media = dataset_or_records.records, dataset_or_records.media
    else:
        records = list(dataset_or_records)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("shard-*.tar"):
        old.unlink()  # a shorter rewrite must not leave stale shards behind
    with wds.ShardWriter(str(out_dir / "shard-%06d.tar"), maxcount=max_per_shard, verbose=0, mtime=0) as sink:
        for record in records:
            sink.write(_sample(record, media))
    return sorted(out_dir.glob("shard-*.tar"))


def _sample(record: Record, media: Any) -> dict[str, Any]:
    if "." in record.name or "/" in record.name:
        raise AnnotationError(f"{record.source}: clip name {record.name!r} contains '.' or '/', which webdataset keys cannot hold")
    meta = {k: v for k, v in asdict(record).items() if k != "name"}
    sample: dict[str, Any] = {"__key__": record.name}
    if media is not None:
        feats, present = media.features(record)
        sample["features.npy"] = _npy_bytes(feats.astype(np.float32))
        meta["feature_present"] = [bool(p) for p in present]
        frame_file = media.frame_file(record) if hasattr(media, "frame_file") else None
        if frame_file is not None and frame_file.suffix.lower() in (".jpg", ".jpeg", ".png"):
            ext = "png" if frame_file.suffix.lower() == ".png" else "jpg"
            sample[f"frame.{ext}"] = frame_file.read_bytes()
        else:
            frame = media.frame(record)
            if frame is not None:
                ok, encoded = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                if not ok:
                    raise AnnotationError(f"{record.source}: could not encode the frame of {record.name!r} as PNG")
                sample["frame.png"] = encoded.tobytes()
        tokens = media.eva(record)
        if tokens is not None:  # in the dtype the cache holds (bf16 as its bits: models/eva_cache.py)
            tokens = torch.as_tensor(tokens)
            sample["eva.npy"] = encode_tokens(tokens, CACHE_DTYPES.get(tokens.dtype, "fp32"))
    sample["json"] = json.dumps(meta, sort_keys=True).encode("utf-8")
    return sample


def shard_paths(path: str | Path) -> list[Path]:
    """The tars of a shard folder (sorted), or a single tar."""
    path = Path(path)
    if path.is_file():
        return [path]
    found = sorted(path.glob("*.tar")) if path.is_dir() else []
    if not found:
        raise AnnotationError(f"no .tar shards at {path} (write them with minigpt4.data.shards.write_shards)")
    return found


class ShardIndex:
    """Random access into shards: one pass over the tar headers at start-up, then seek + read.

    Plays the role of `FolderMedia` for `EmotionDataset` (same `prepare / frame / features / eva`).
    """

    def __init__(self, path: str | Path, feature_dim: int = 1024):
        self.members: dict[str, dict[str, tuple[Path, int, int]]] = {}
        self.order: list[str] = []
        for tar_path in shard_paths(path):
            with tarfile.open(tar_path) as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, _, ext = member.name.rpartition("/")[2].partition(".")
                    if key not in self.members:
                        self.members[key] = {}
                        self.order.append(key)
                    self.members[key][ext] = (tar_path, member.offset_data, member.size)
        self.dim = feature_dim

    def _read(self, key: str, ext: str) -> bytes | None:
        entry = self.members[key].get(ext)
        if entry is None:
            return None
        tar_path, offset, size = entry
        with open(tar_path, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def records(self) -> list[Record]:
        out = []
        for key in self.order:
            data = self._read(key, "json")
            if data is None:
                raise AnnotationError(f"{self.members[key]}: shard sample {key!r} has no .json (not written by write_shards?)")
            meta = json.loads(data)
            label = meta.get("label")
            out.append(Record(key, **{k: (label if k == "label" else meta.get(k)) for k in _RECORD_FIELDS}))
        return out

    def prepare(self, records: list[Record], bad: BadItems, layout: FeatureLayout | None = None) -> list[Record]:
        for record in records:
            if "features.npy" in self.members[record.name]:
                shape = np.load(io.BytesIO(self._read(record.name, "features.npy"))).shape
                self.dim = int(shape[1])
                if layout is not None and tuple(shape) != (layout.rows, layout.width):
                    raise AnnotationError(
                        f"shard sample {record.name}: features have shape {tuple(shape)}, the model's layout is "
                        f"{layout.describe()} ({layout.rows} x {layout.width}); rewrite the shards from features of "
                        f"those encoders or set model.feature_slots to match them")
                break
        self.layout = layout or FeatureLayout.uniform(self.dim)
        return records

    def frame_file(self, record: Record) -> None:
        return None

    def frame(self, record: Record) -> np.ndarray | None:
        for ext in ("frame.jpg", "frame.png"):
            data = self._read(record.name, ext)
            if data is not None:
                return decode_image(data, f"shard sample {record.name}.{ext}")
        return None

    def features(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        data = self._read(record.name, "features.npy")
        rows = self.layout.rows
        if data is None:
            return np.zeros((rows, self.layout.width), np.float32), np.zeros(rows, bool)
        feats = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
        meta = json.loads(self._read(record.name, "json"))
        return feats, np.array(meta.get("feature_present", [True] * rows), bool)

    def eva(self, record: Record) -> torch.Tensor | None:
        data = self._read(record.name, "eva.npy")
        return None if data is None else decode_tokens(data, f"shard sample {record.name}.eva.npy")


def iter_shard_records(path: str | Path) -> Iterable[Record]:
    """Records of a shard folder in write order (labels and text only; cheap)."""
    return ShardIndex(path).records()
