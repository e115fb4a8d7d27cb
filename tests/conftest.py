"""Shared fixtures: tiny random-weight models built once per test session through the real loaders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL_YAML = REPO / "minigpt4/configs/models/emotion_llama_tiny.yaml"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """Tiny LLM + tokenizer and tiny EVA weights (encoders are built by the tests that need them)."""
    from minigpt4.tools.make_tiny_models import make_tiny_models

    out = tmp_path_factory.mktemp("tiny")
    make_tiny_models(out, seed=0, with_encoders=False)
    return out


@pytest.fixture(scope="session")
def tiny_model_cfg(tiny_dir):
    from minigpt4.common.config import load_config
    from minigpt4.models.config import ModelConfig

    return load_config(
        ModelConfig,
        TINY_MODEL_YAML,
        [f"llm.path={tiny_dir / 'llm'}", f"vision.weights={tiny_dir / 'eva_vit_tiny.pth'}"],
    )


@pytest.fixture()
def tiny_model(tiny_model_cfg):
    from minigpt4.models.builder import build_model

    torch.manual_seed(0)
    return build_model(tiny_model_cfg)


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
