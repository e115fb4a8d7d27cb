"""Shared fixtures: tiny random-weight models built once per test session through the real loaders."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from minigpt4.common.config import load_config
from minigpt4.data.synthetic import generate_corpus
from minigpt4.features.config import FeatureConfig
from minigpt4.features.encoders import make_tiny_encoders
from minigpt4.features.extract import extract_features
from minigpt4.models.builder import build_model
from minigpt4.models.config import ModelConfig
from minigpt4.tools.make_tiny_models import make_tiny_models

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL_YAML = REPO / "minigpt4/configs/models/emotion_llama_tiny.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}  # for the scripts tests run as subprocesses
LABEL_SET = "dfew"  # the workspace's: outside MERR, training and inference ask the same question (see EmotionPredictor.instruction)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Entry points called in-process choose their thread count (common/threads.py); put the
    session's back so later tests compute with the same threads as the features they compare to."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """Tiny LLM + tokenizer and tiny EVA weights (encoders are built by the tests that need them)."""
    out = tmp_path_factory.mktemp("tiny")
    make_tiny_models(out, seed=0, with_encoders=False)
    return out


@pytest.fixture(scope="session")
def small_encoders(tmp_path_factory) -> dict[str, Path]:
    """Tiny random HuBERT / ViT-MAE / VideoMAE (hidden 16, 32 px), built once for every feature test
    (none of them writes into these folders)."""
    return make_tiny_encoders(tmp_path_factory.mktemp("small_encoders"), seed=0, hidden=16, image_size=32)


@pytest.fixture(scope="session")
def tiny_encoders(tmp_path_factory) -> dict[str, Path]:
    """The same encoders at the tiny model's feature size (hidden 32): for tests that feed their
    features to a tiny EmotionLLaMA."""
    return make_tiny_encoders(tmp_path_factory.mktemp("tiny_encoders"), seed=0)


@pytest.fixture(scope="session")
def tiny_model_cfg(tiny_dir):
    return load_config(
        ModelConfig,
        TINY_MODEL_YAML,
        [f"llm.path={tiny_dir / 'llm'}", f"vision.weights={tiny_dir / 'eva_vit_tiny.pth'}"],
    )


@pytest.fixture()
def tiny_model(tiny_model_cfg):
    torch.manual_seed(0)
    return build_model(tiny_model_cfg)


@pytest.fixture(scope="session")
def workspace(tiny_dir, tiny_encoders, tmp_path_factory):
    """Tiny encoders, three synthetic clips with extracted features, and a checkpoint trained
    on them by train.py. Returns a dict of paths and the clips' labels. Built once per test run
    for test_infer, test_http_api and test_app_browser: tests read it and write elsewhere."""
    root = tmp_path_factory.mktemp("infer")
    encoders = tiny_encoders
    data = generate_corpus(root / "data", clips=3, seed=1)  # labels neutral, angry, happy
    corpus = json.loads((data / "corpus.json").read_text())["clips"]
    labels = {name: clip["label"] for name, clip in sorted(corpus.items())}
    (data / "all.txt").write_text("".join(f"{name} 8 {label}\n" for name, label in labels.items()))
    encoder_options = [f"audio_encoder={encoders['hubert']}", f"local_encoder={encoders['mae']}",
                       f"temporal_encoder={encoders['videomae']}"]
    feature_cfg = load_config(FeatureConfig, REPO / "minigpt4/configs/features/tiny.yaml", encoder_options)
    report = extract_features(sorted((data / "videos").glob("*.mp4")), data, feature_cfg, progress=False)
    assert not report.failed, report.failed

    train_yaml = root / "train.yaml"
    train_yaml.write_text(textwrap.dedent(f"""\
        model:
          includes: [{REPO / 'minigpt4/configs/models/emotion_llama_tiny.yaml'}]
          vision: {{weights: {tiny_dir / 'eva_vit_tiny.pth'}}}
          llm: {{path: {tiny_dir / 'llm'}}}
        datasets:
          clips: {{reader: merr, annotation: {data / 'all.txt'}, frames: {data / 'frames'},
                  label_set: {LABEL_SET}, tasks: [emotion]}}
        run:
          output_dir: {root / 'run'}
          max_epochs: 1
          iters_per_epoch: 20
          batch_size: 3
          num_workers: 0
          log_every: 100
          optim: {{init_lr: 1.0e-2, min_lr: 1.0e-3, warmup_lr: 1.0e-3, warmup_steps: 1}}
        """))
    done = subprocess.run([sys.executable, "train.py", "--cfg-path", str(train_yaml)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
    checkpoint = root / "run/best/trainable.safetensors"
    assert done.returncode == 0 and checkpoint.is_file(), done.stderr[-3000:]
    options = [f"model.llm.path={tiny_dir / 'llm'}", f"model.vision.weights={tiny_dir / 'eva_vit_tiny.pth'}",
               f"model.checkpoint={checkpoint}", f"label_set={LABEL_SET}",
               *(f"features.{option}" for option in encoder_options)]
    return {"root": root, "data": data, "labels": labels, "options": options, "checkpoint": checkpoint,
            "videos": {name: data / "videos" / f"{name}.mp4" for name in labels}}


def make_sample(name="clip", task="emotion", target="happy", transcript="I won the game", image=True,
                feature_present=(True, True, True), feature_dim=32, image_size=56, seed=0):
    """A sample in the dataset contract (see minigpt4/data/datasets.py)."""
    g = torch.Generator().manual_seed(seed)
    present = torch.tensor(feature_present)
    return {
        "name": name,
        "image": torch.randn(3, image_size, image_size, generator=g) if image else None,
        "features": torch.randn(3, feature_dim, generator=g) * present[:, None],
        "feature_present": present,
        "transcript": transcript,
        "task": task,
        "instruction": "Which emotion does the person show?",
        "target": target,
        "label": target if task == "emotion" else None,
        "valence": None,
    }


def free_port() -> int:
    """A TCP port nobody listens on now, for torchrun rendezvous in tests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MER2023 = ("neutral", "angry", "happy", "sad", "worried", "surprise")


def write_tiny_corpus(root: Path, n: int = 24, dim: int = 32, seed: int = 0) -> Path:
    """A release-format corpus (list files per split, transcripts, captions, .npy features, frames)
    whose features carry the label, so a tiny model can learn it in a few steps."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(MER2023), 3, dim)).astype(np.float32)
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("mae_340_UTT", "maeV_399_UTT", "HL-UTT", "frames"):
        (root / folder).mkdir(exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    captions, transcripts = {}, ["name,sentence"]
    for i in range(n):
        name, k = f"clip_{i:04d}", i % len(MER2023)
        label = MER2023[k]
        feats = centers[k] + 0.1 * rng.normal(size=(3, dim)).astype(np.float32)
        for row, folder in enumerate(("mae_340_UTT", "maeV_399_UTT", "HL-UTT")):
            np.save(root / folder / f"{name}.npy", feats[row])
        frame = np.full((56, 56, 3), 40 * k, np.uint8) + rng.integers(0, 20, (56, 56, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "frames" / f"{name}.jpg"), frame)
        split = "train" if i < n * 2 // 3 else ("val" if i < n * 5 // 6 else "test")
        lines[split].append(f"{name} 16 {label}")
        captions[name] = {"caption": f"The face looks {label}. Therefore, the emotion of the person is {label}."}
        transcripts.append(f"{name},I feel {label} today")
    for split, rows in lines.items():
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n")
    (root / "coarse.json").write_text(json.dumps(captions))
    (root / "transcripts.csv").write_text("\n".join(transcripts) + "\n")
    return root


def tiny_model_section(tiny_dir: Path) -> dict:
    """The `model:` section of a run YAML for the tiny model whose weights are in `tiny_dir`."""
    return {
        "includes": [str(TINY_MODEL_YAML)],
        "vision": {"weights": str(tiny_dir / "eva_vit_tiny.pth")},
        "llm": {"path": str(tiny_dir / "llm")},
    }


def tiny_train_config(path: Path, tiny_dir: Path, corpus: Path, out: Path, tasks=("emotion", "reason"), **run) -> Path:
    """A train YAML for the tiny model on `write_tiny_corpus` data."""
    dataset = {"reader": "merr", "transcripts": str(corpus / "transcripts.csv"), "frames": str(corpus / "frames"),
               "label_set": "mer2023"}
    cfg = {
        "model": {**tiny_model_section(tiny_dir), "max_txt_len": 64},
        "datasets": {"tiny": {**dataset, "annotation": str(corpus / "train.txt"), "captions": str(corpus / "coarse.json"),
                              "tasks": list(tasks)}},
        "val_datasets": {"tiny_val": {**dataset, "annotation": str(corpus / "val.txt"), "tasks": ["emotion"]}},
        "run": {"output_dir": str(out), "seed": 3, "max_epochs": 2, "iters_per_epoch": 4, "batch_size": 2,
                "num_workers": 0, "device": "cpu", "val_batch_size": 8, "val_max_new_tokens": 3,
                "optim": {"init_lr": 5e-3, "min_lr": 5e-4, "warmup_lr": 1e-4, "warmup_steps": 2}, **run},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path
