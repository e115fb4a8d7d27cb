"""What a config needs on disk and in the environment, checked all at once, without building a model.

`python -m minigpt4.tools.check_setup --cfg-path X.yaml` and the ``--check`` flag of train /
eval / infer / app print one line per file, folder and package the config names -- present or
missing, with what can be read cheaply (LLM and encoder ``config.json``, safetensors headers, the
shape of one feature ``.npy``) -- and return 2 when anything is missing or of the wrong shape, so a
newcomer sees every missing file in one run instead of one error per attempt. Nothing here
imports torch. Where each file comes from: docs/getting_started.md.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from minigpt4.common.io import file_sha256
from minigpt4.data.config import DatasetConfig, fill_path
from minigpt4.features.config import FeatureConfig
from minigpt4.models.config import ModelConfig, VisionConfig
from minigpt4.models.eva_cache import EvaCacheError, EvaTokenShards, is_token_cache, tower_mismatch
from minigpt4.run_config import EvalRunConfig, TrainRunConfig

GUIDE = "docs/getting_started.md"
FEATURE_ORDER = ("local", "temporal", "audio")


@dataclass
class Need:
    """One thing a config needs: the config key naming it, the path (or package), its kind."""

    key: str
    path: str
    kind: str  # file | dir | hf_dir (a save_pretrained folder) | checkpoint (file or folder) | features | eva_cache | package
    what: str
    expect_dim: Optional[int] = None  # features / encoders: the width the model expects
    optional: bool = False
    expect_vision: Optional[VisionConfig] = None  # eva_cache: the tower that must have made it


@dataclass
class Finding:
    need: Need
    ok: bool
    detail: str


# ---- what each config section needs ----------------------------------------------------------

def model_needs(model: ModelConfig, prefix: str = "model") -> list[Need]:
    needs = [Need(f"{prefix}.llm.path", model.llm.path, "hf_dir", "the LLM (Hugging Face folder)")] if model.llm.path else []
    if model.vision.weights:
        needs.append(Need(f"{prefix}.vision.weights", model.vision.weights, "file", "EVA ViT-g weights"))
    if model.checkpoint:
        needs.append(Need(f"{prefix}.checkpoint", model.checkpoint, "checkpoint",
                          "trainable weights (projections + LoRA)" + (", partial" if model.checkpoint_partial else "")))
    needs += [Need(f"package:{p}", p, "package", "Python package") for p in ("torch", "transformers", "peft", "timm", "safetensors")]
    if model.llm.load_in_4bit:
        needs.append(Need("package:bitsandbytes", "bitsandbytes", "package", "QLoRA (model.llm.load_in_4bit)"))
    return needs


def dataset_needs(key: str, cfg: DatasetConfig, train: bool, feature_dim: int,
                  vision: Optional[VisionConfig] = None) -> list[Need]:
    """The files one `datasets:` entry reads; a ``{fold}`` path is checked for fold 1 when no fold is set.
    `vision`: the model's frame tower, which an EVA token cache must have been made by."""
    split = cfg.split or ("train" if train else "test")
    if cfg.fold is None and any("{fold}" in (p or "") for p in (cfg.annotation, cfg.shards, cfg.feature_root)):
        cfg = dataclasses.replace(cfg, fold=1)
    needs: list[Need] = []

    def add(field_name: str, kind: str, what: str, value: Optional[str] = None) -> None:
        path = fill_path(value if value is not None else getattr(cfg, field_name), cfg, split)
        if path is not None:
            needs.append(Need(f"{key}.{field_name}", str(path), kind, what))

    if cfg.reader == "shards":
        add("shards", "checkpoint", "webdataset shards (.tar or a folder of them)")
        needs.append(Need("package:webdataset", "webdataset", "package", "reader: shards"))
        return needs
    add("annotation", "file", f"annotation list ({cfg.reader}, split {split}{f', fold {cfg.fold}' if cfg.fold else ''})")
    add("captions", "file", "MERR coarse captions JSON")
    add("reasons", "file", "MERR fine reasons JSON")
    add("transcripts", "file", "transcripts CSV")
    add("frames", "dir", "one frame per clip (<name>.jpg/.png)")
    add("videos", "dir", "videos (<name>.mp4/.avi/...)")
    eva_cache = fill_path(cfg.eva_cache, cfg, split)
    if eva_cache is not None:
        source = fill_path(cfg.frames or cfg.videos, cfg, split) or "<frames folder>"
        needs.append(Need(f"{key}.eva_cache", str(eva_cache), "eva_cache",
                          f"cached EVA tokens (build: python -m minigpt4.features eva-cache --frames {source} "
                          f"--out {eva_cache} --cfg-path <this config>)", expect_vision=vision))
    annotation = fill_path(cfg.annotation, cfg, split)
    root = fill_path(cfg.feature_root, cfg, split) or (annotation.parent if annotation is not None else None)
    if root is not None:
        for kind in FEATURE_ORDER:
            folder = cfg.feature_dirs.get(kind, "")
            if folder:
                needs.append(Need(f"{key}.feature_dirs.{kind}", str(root / folder), "features",
                                  f"{kind} features <name>.npy", expect_dim=feature_dim))
    return needs


def feature_needs(features: FeatureConfig, feature_dim: int, prefix: str = "features") -> list[Need]:
    """The encoders feature extraction (and inference from raw video) loads."""
    encoders = {"audio": features.audio_encoder, "local": features.local_encoder, "temporal": features.temporal_encoder}
    names = {"audio": "HuBERT (audio)", "local": "MAE (local face)", "temporal": "VideoMAE (temporal face)"}
    needs = [Need(f"{prefix}.{kind}_encoder", encoders[kind], "hf_dir", f"{names[kind]} encoder", expect_dim=feature_dim)
             for kind in features.features]
    if features.au_peaks:
        needs.append(Need(f"{prefix}.au_peaks", features.au_peaks, "file", "AU peak frames JSON"))
    needs += [Need("package:av", "av", "package", "video decoding (PyAV)"), Need("package:cv2", "cv2", "package", "images")]
    extra = {"mtcnn": "facenet_pytorch", "dlib": "dlib"}.get(features.face_detector)
    if extra:
        needs.append(Need(f"package:{extra}", extra, "package", f"face_detector: {features.face_detector}"))
    return needs


def infer_needs(model: ModelConfig, features: FeatureConfig, examples: Optional[str] = None, app: bool = False) -> list[Need]:
    """Inference from a raw video: the model, the feature encoders, and (web demo) gradio and the example clips."""
    needs = model_needs(model) + feature_needs(features, model.feature_dim)
    if examples:
        needs.append(Need("app.examples", examples, "dir", "example clips offered in the web demo", optional=True))
    needs.append(Need("package:gradio", "gradio", "package", "the web demo (app.py)", optional=not app))
    return needs


def train_needs(cfg: TrainRunConfig) -> list[Need]:
    needs = model_needs(cfg.model)
    for key, dcfg in cfg.datasets.items():
        needs += dataset_needs(f"datasets.{key}", dcfg, True, cfg.model.feature_dim, cfg.model.vision)
    for key, dcfg in cfg.val_datasets.items():
        needs += dataset_needs(f"val_datasets.{key}", dcfg, False, cfg.model.feature_dim, cfg.model.vision)
    if cfg.run.init_from:
        needs.append(Need("run.init_from", cfg.run.init_from, "checkpoint", "weights of the previous stage (its best/)"))
    return needs


def eval_needs(cfg: EvalRunConfig, datasets: Optional[Sequence[str]] = None) -> list[Need]:
    """`datasets`: only these `datasets:` entries (eval's --dataset); default all of them."""
    needs = model_needs(cfg.model)
    for key, dcfg in cfg.datasets.items():
        if datasets is None or key in datasets:
            needs += dataset_needs(f"datasets.{key}", dcfg, False, cfg.model.feature_dim, cfg.model.vision)
    return needs


# ---- checking ----------------------------------------------------------------------------------

def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def safetensors_header(path: Path) -> dict:
    """The tensor table of a .safetensors file (name -> dtype, shape), read without loading a tensor."""
    with path.open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    header.pop("__metadata__", None)
    return header


def check_need(need: Need, with_sha256: bool = False) -> Finding:
    """Is `need` there, and does what can be read cheaply fit? (`ok`, a short detail)."""
    if need.kind == "package":
        found = importlib.util.find_spec(need.path) is not None
        return Finding(need, found, "installed" if found else f"not installed (pip install -r requirements.txt)")
    path = Path(need.path)
    if not path.exists():
        return Finding(need, False, "missing")
    if need.kind == "file" and not path.is_file():
        return Finding(need, False, "is a folder, expected a file")
    if need.kind in ("dir", "hf_dir", "features", "eva_cache") and not path.is_dir():
        return Finding(need, False, "is a file, expected a folder")
    if need.kind == "hf_dir":
        return _check_hf_dir(need, path)
    if need.kind == "features":
        return _check_features(need, path)
    if need.kind == "eva_cache":
        return _check_eva_cache(need, path)
    if need.kind == "dir":
        return Finding(need, True, f"{sum(1 for _ in path.iterdir())} entries")
    detail = human_size(_size(path))
    if path.is_file() and path.suffix == ".safetensors":
        try:
            detail += f", {len(safetensors_header(path))} tensors"
        except (OSError, ValueError, struct.error) as err:
            return Finding(need, False, f"not a readable safetensors file ({err})")
    if with_sha256 and path.is_file():
        detail += f", sha256 {file_sha256(path)}"
    return Finding(need, True, detail)


def _check_hf_dir(need: Need, path: Path) -> Finding:
    config = path / "config.json"
    if not config.is_file():
        return Finding(need, False, "no config.json (expected a save_pretrained / Hugging Face folder)")
    try:
        values = json.loads(config.read_text())
    except ValueError as err:
        return Finding(need, False, f"config.json is not valid JSON ({err})")
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin")]
    if not weights:
        return Finding(need, False, "config.json but no weights (*.safetensors / *.bin)")
    hidden = values.get("hidden_size")
    detail = (f"{values.get('model_type', '?')}, hidden {hidden}, {values.get('num_hidden_layers', '?')} layers, "
              f"{human_size(sum(p.stat().st_size for p in weights))} of weights")
    if need.expect_dim is not None and hidden is not None and hidden != need.expect_dim:
        return Finding(need, False, f"{detail}: hidden size {hidden}, but model.feature_dim is {need.expect_dim}")
    return Finding(need, True, detail)


def _check_features(need: Need, path: Path) -> Finding:
    files = sorted(path.glob("*.npy"))
    if not files:
        return Finding(need, False, "no <name>.npy files")
    try:
        shape = np.load(files[0], mmap_mode="r").shape
    except (OSError, ValueError) as err:
        return Finding(need, False, f"{files[0].name} is not a readable .npy ({err})")
    detail = f"{len(files)} files, {files[0].name} {tuple(shape)}"
    if need.expect_dim is not None and shape not in ((need.expect_dim,), (1, need.expect_dim)):
        return Finding(need, False, f"{detail}: expected ({need.expect_dim},) or (1, {need.expect_dim}) (model.feature_dim)")
    return Finding(need, True, detail)


def _check_eva_cache(need: Need, path: Path) -> Finding:
    if not is_token_cache(path):
        count = sum(1 for _ in path.glob("*.npy"))
        return Finding(need, count > 0, f"{count} per-clip <name>.npy files" if count else "no shards and no <name>.npy files")
    try:
        cache = EvaTokenShards(path)
    except EvaCacheError as err:
        return Finding(need, False, str(err))
    manifest = cache.manifest
    detail = (f"{len(cache)} clips in {len(manifest['shards'])} shards, {manifest['dtype']}, tokens "
              f"{tuple(manifest.get('token_shape') or ())}, {manifest['tower']['arch']} at {manifest['tower']['image_size']} px"
              + ("" if cache.complete else ", build not finished"))
    problems = tower_mismatch(manifest, need.expect_vision) if need.expect_vision is not None else []
    if problems:
        return Finding(need, False, f"{detail}: made by another tower than model.vision ({'; '.join(problems)})")
    return Finding(need, True, detail)


def check_all(needs: Iterable[Need], with_sha256: bool = False) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    findings = []
    for need in needs:
        if (need.key, need.path) not in seen:
            seen.add((need.key, need.path))
            findings.append(check_need(need, with_sha256))
    return findings


def report(findings: Sequence[Finding], source: str, print_fn=print) -> int:
    """Print one line per finding and a verdict; 0 when everything is there, 2 otherwise."""
    width = max((len(f.need.key) for f in findings), default=10)
    print_fn(f"setup check of {source} (no model is built):")
    for f in findings:
        status = "ok" if f.ok else ("optional" if f.need.optional else "MISSING" if f.detail == "missing" else "PROBLEM")
        shown = "" if f.need.kind == "package" else f"  {f.need.path}"
        print_fn(f"  {status:<8} {f.need.key:<{width}}{shown}  -- {f.need.what}: {f.detail}")
    bad = [f for f in findings if not f.ok and not f.need.optional]
    if bad:
        print_fn(f"{len(bad)} of {len(findings)} needed item(s) missing or unusable; where each comes from: {GUIDE}")
        return 2
    print_fn(f"all {len(findings)} needed items are present")
    return 0


def check_config(needs: Sequence[Need], source: str, with_sha256: bool = False, print_fn=print) -> int:
    """The `--check` of every entry point: check `needs`, print the list, return the exit status."""
    return report(check_all(needs, with_sha256), source, print_fn)
