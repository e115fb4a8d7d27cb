"""The frame-token cache: the frozen frame tower's tokens of every clip's frame, in tar shards.

`python -m minigpt4.features eva-cache` writes it (minigpt4/features/eva_cache.py); a dataset's
``eva_cache: <folder>`` reads it (minigpt4/data/datasets.py). This module is the format both
sides share, and imports no torch at load time, so `setup_check` can read a manifest:

    <folder>/eva-000000.tar, ...   webdataset tars (under torchrun one series per rank:
                                   eva-r0of4-000000.tar, ...); one member per clip:
        <name>.eva.npy             the tokens [1 + N, width] (summary token first, before the
                                   model's ln_vision) as a .npy: float32 / float16 as they are,
                                   bf16 as its uint16 bit pattern (numpy has no bf16), so every
                                   storage dtype reads back bit for bit
    <folder>/eva_cache.json        the manifest: the tower (arch, dimensions, weights file, its
                                   size and sha256, the dtype it ran in), the storage dtype, the
                                   token shape, and each shard's size and its clips' byte offsets

A loader reads the manifest once and then seeks straight to a clip's bytes (random access for
the map-style dataset); a streaming reader can iterate the tars with `webdataset.WebDataset`
and `decode_tokens` on the ``eva.npy`` field.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from minigpt4.common.errors import UserError
from minigpt4.models.config import VisionConfig

MANIFEST_NAME = "eva_cache.json"
FORMAT = "minigpt4-eva-cache/1"
MEMBER_SUFFIX = "eva.npy"  # the webdataset field of a clip's tokens
SHARD_GLOB = "eva-*.tar"
STORAGE_DTYPES = ("bf16", "fp16", "fp32")
NPY_HEADER_MAX = 65546  # magic, version, length and the largest header of .npy format 1.0
# what makes two towers give the same tokens (with the weights); a mismatch with the model's
# `model.vision` means the cache belongs to another model
TOWER_KEYS = ("arch", "image_size", "patch_size", "width", "depth", "num_heads", "mlp_dim", "layer", "model_name")
BUILD_COMMAND = "python -m minigpt4.features eva-cache --frames <frames or videos folder> --out {out} --cfg-path <this config>"


class EvaCacheError(UserError):
    """A token cache that is missing, damaged, or made for another tower."""


def shard_name(index: int, rank: int = 0, world_size: int = 1) -> str:
    """``eva-000007.tar``; under torchrun ``eva-r<rank>of<world>-000007.tar`` (one series per rank)."""
    prefix = "eva" if world_size == 1 else f"eva-r{rank}of{world_size}"
    return f"{prefix}-{index:06d}.tar"


def tower_spec(vision: VisionConfig) -> dict[str, Any]:
    """The tower fields the manifest records (`TOWER_KEYS`, the weights path, the seed of a random tower)."""
    spec = {key: getattr(vision, key) for key in TOWER_KEYS}
    spec["weights"] = vision.weights
    if vision.weights is None:
        spec["init_seed"] = vision.init_seed
    return spec


def encode_tokens(tokens, dtype: str) -> bytes:
    """One clip's tokens (a torch tensor [1 + N, width]) as the bytes of its ``.eva.npy`` member."""
    import torch  # lazily: the rest of this module serves setup_check, which never loads torch

    if dtype not in STORAGE_DTYPES:
        raise EvaCacheError(f"EVA cache dtype {dtype!r} is unknown; choose one of {', '.join(STORAGE_DTYPES)}")
    cast = tokens.detach().to("cpu", {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype])
    array = cast.view(torch.int16).numpy().view(np.uint16) if dtype == "bf16" else cast.numpy()
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_tokens(data: bytes | bytearray, where: str):
    """The bytes of an ``.eva.npy`` member -> a torch tensor in its stored dtype (uint16 = bf16 bits)."""
    import torch  # lazily, see encode_tokens

    array = npy_array(data, where)
    if array.ndim != 2:
        raise EvaCacheError(f"{where}: cached tokens must be [tokens, width], got {array.shape}; rebuild the EVA cache")
    if array.dtype == np.uint16:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    if array.dtype not in (np.float16, np.float32):
        raise EvaCacheError(f"{where}: cached tokens of dtype {array.dtype} (expected float32, float16 or bf16 bits)")
    return torch.from_numpy(array)


def npy_array(data: bytes | bytearray, where: str) -> np.ndarray:
    """The array of .npy bytes as a view of them (no copy of a 3 MB member; `np.load` copies it in
    chunks). Bytes are copied once into a bytearray, so the array is writable, as torch wants."""
    stream = io.BytesIO(bytes(memoryview(data)[:NPY_HEADER_MAX]))  # the header only: BytesIO would copy it all
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
        if fortran_order or dtype.hasobject:
            raise ValueError("expected a C-ordered numeric array")
        buffer = data if isinstance(data, bytearray) else bytearray(data)
        return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape)), offset=stream.tell()).reshape(shape)
    except ValueError as err:
        raise EvaCacheError(f"{where}: not a valid .npy ({err}); rebuild the EVA cache") from None


def shard_members(tar_path: Path) -> list[tuple[str, int, int]]:
    """(clip name, byte offset, size) of every token member of one shard, from its headers only."""
    found = []
    with tarfile.open(tar_path) as tar:
        for member in tar:
            key, _, ext = member.name.rpartition("/")[2].partition(".")
            if member.isfile() and ext == MEMBER_SUFFIX:
                found.append((key, member.offset_data, member.size))
    return found


def shard_files(folder: Path) -> list[Path]:
    """The finished shards in `folder` (a shard being written has a hidden temporary name)."""
    return sorted(folder.glob(SHARD_GLOB))


def is_token_cache(folder: Path) -> bool:
    """Whether `folder` holds a shard cache (rather than the per-clip ``<name>.npy`` layout)."""
    return (folder / MANIFEST_NAME).is_file() or bool(shard_files(folder))


def read_manifest(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise EvaCacheError(f"EVA cache {folder} has no {MANIFEST_NAME} (the build did not finish); re-run "
                            f"{BUILD_COMMAND.format(out=folder)} -- it keeps the finished shards")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise EvaCacheError(f"{path}: not valid JSON ({err}); re-run the eva-cache command to rewrite it") from None
    if manifest.get("format") != FORMAT:
        raise EvaCacheError(f"{path}: format {manifest.get('format')!r}, this code reads {FORMAT!r}; rebuild the cache")
    return manifest


def tower_mismatch(manifest: dict[str, Any], vision: VisionConfig) -> list[str]:
    """How the tower that made the cache differs from `vision` (empty: the same tower)."""
    made = manifest["tower"]
    wanted = tower_spec(vision)
    problems = [f"{key} {made.get(key)!r} (model.vision.{key}: {wanted[key]!r})"
                for key in TOWER_KEYS if made.get(key) != wanted[key]]
    if (made.get("weights") is None) != (vision.weights is None):
        problems.append(f"weights {made.get('weights')!r} (model.vision.weights: {vision.weights!r})")
    elif vision.weights is None and made.get("init_seed") != vision.init_seed:
        problems.append(f"a random tower of init_seed {made.get('init_seed')} (model.vision.init_seed: {vision.init_seed})")
    elif vision.weights is not None and Path(vision.weights).is_file() and made.get("weights_bytes") is not None \
            and Path(vision.weights).stat().st_size != made["weights_bytes"]:
        problems.append(f"weights of {made['weights_bytes']} bytes ({vision.weights} has {Path(vision.weights).stat().st_size})")
    return problems


class EvaTokenShards:
    """Random access into a token cache: the manifest's index (clip -> shard, offset, size), then
    seek + read. Opened once per dataset; each read opens the shard (safe in DataLoader workers)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.index: dict[str, tuple[Path, int, int]] = {}
        for shard in self.manifest["shards"]:
            path = self.folder / shard["file"]
            size = path.stat().st_size if path.is_file() else None
            if size != shard["bytes"]:
                found = "is missing" if size is None else f"has {size} bytes, the manifest says {shard['bytes']}"
                raise EvaCacheError(f"EVA cache shard {path} {found}; re-run {BUILD_COMMAND.format(out=self.folder)} "
                                    "(it rewrites the manifest from the shards on disk)")
            for name, offset, length in shard["clips"]:
                self.index.setdefault(name, (path, offset, length))

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    def __contains__(self, name: str) -> bool:
        return name in self.index

    def __len__(self) -> int:
        return len(self.index)

    def check_tower(self, vision: VisionConfig) -> None:
        """A cache made by another tower than the model's is an error naming each difference."""
        problems = tower_mismatch(self.manifest, vision)
        if problems:
            raise EvaCacheError(f"EVA cache {self.folder} was made by another frame tower than the model's: "
                                f"{'; '.join(problems)}. Rebuild it for this model: "
                                f"{BUILD_COMMAND.format(out=self.folder)}")

    def missing_hint(self, name: str) -> str:
        state = "" if self.complete else " (its last build did not finish)"
        return (f"clip {name!r} is not in the EVA cache {self.folder}{state}; add it with "
                f"{BUILD_COMMAND.format(out=self.folder)} (only missing clips are encoded)")

    def read(self, name: str):
        """The clip's tokens as a torch tensor in the stored dtype."""
        if name not in self.index:
            raise EvaCacheError(self.missing_hint(name))
        path, offset, length = self.index[name]
        data = bytearray(length)
        with open(path, "rb") as handle:
            handle.seek(offset)
            if handle.readinto(data) != length:
                raise EvaCacheError(f"{path} ends before the tokens of {name!r}; re-run the eva-cache command")
        return decode_tokens(data, f"{path}:{name}.{MEMBER_SUFFIX}")
