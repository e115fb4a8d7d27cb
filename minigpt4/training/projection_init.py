"""Data-dependent initialisation of the projections (`run.init_projections: standardized`).

A projection starts as `nn.Linear`'s random init, which assumes inputs of zero mean and unit
spread. Encoder outputs rarely are: mean-pooled utterance features share a large common part
and differ from clip to clip by a fraction of it (the tiny demo encoders: the clip-to-clip spread
is a quarter of the common part for HuBERT and VideoMAE). Every clip then reaches the LLM as
nearly the same token, and training spends its first epochs amplifying the differences before
the answer can depend on them.

`standardize_projections` folds the training data's per-dimension mean and standard deviation
into each projection (W' = W / std, b' = b - W' mean), so that at step 0 it projects standardised
inputs: the same function class and parameter count, only a better starting point (the
data-dependent init of Salimans & Kingma 2016, "Weight Normalization", section 3). Statistics
come from the training split only. It is applied only when training starts from scratch
(not with `run.init_from`, and a resumed run loads its saved weights over it).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from minigpt4.data.datasets import EmotionDataset
from minigpt4.models.emotion_llama import EmotionLLaMA

log = logging.getLogger(__name__)

MIN_STD = 1e-3  # a dimension that never varies is left unscaled rather than blown up


@torch.no_grad()
def fold_standardization(linear: torch.nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Make `linear(x)` compute the old `linear((x - mean) / std)`."""
    scale = 1.0 / std.clamp(min=MIN_STD).to(linear.weight)
    linear.weight.mul_(scale)
    linear.bias.sub_(linear.weight @ mean.to(linear.weight))


def _moments(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = rows.double()
    return rows.mean(0), rows.std(0, unbiased=False)


@torch.no_grad()
def standardize_projections(model: EmotionLLaMA, datasets: Sequence[EmotionDataset], max_clips: int = 512,
                            batch_size: int = 32) -> dict[str, int]:
    """Fold the statistics of up to `max_clips` training clips into the projections; returns how
    many inputs each projection's statistics came from."""
    records = [(d, r) for d in datasets for r in d.records][:max_clips]
    used: dict[str, int] = {}
    # utterance features: one row per clip and kind, present ones only
    feats = [d.media.features(r) for d, r in records]
    for i, proj in enumerate(model.feature_projections):
        rows = [f[i] for f, present in feats if present[i]]
        if len(rows) >= 2:
            fold_standardization(proj, *_moments(torch.from_numpy(np.stack(rows))))
            used[f"feats_llama_proj{i + 1}"] = len(rows)
    # the frame: frozen EVA tokens (cached, or encoded here), normed and grouped as encode_visual does
    grouped, cls = [], []
    for start in range(0, len(records), batch_size):
        tokens = []
        for d, r in records[start: start + batch_size]:
            cached = d.media.eva(r)
            if cached is not None:
                tokens.append(torch.from_numpy(cached)[None])
            else:
                frame = d.media.frame(r)
                if frame is not None:
                    tokens.append(model.encode_image(d.image_transform(frame)[None]))
        if tokens:
            g, c = model.image_projection_inputs(torch.cat(tokens))
            grouped.append(g.reshape(-1, g.shape[-1]).cpu())
            cls.append(c.cpu())
    if grouped:
        fold_standardization(model.llama_proj, *_moments(torch.cat(grouped)))
        fold_standardization(model.cls_tk_llama_proj, *_moments(torch.cat(cls)))
        used["llama_proj"], used["cls_tk_llama_proj"] = sum(len(g) for g in grouped), sum(len(c) for c in cls)
    log.info("projections initialised from training-data statistics: %s", used)
    return used
