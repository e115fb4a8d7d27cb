"""AdamW parameter groups and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch

from minigpt4.run_config import OptimConfig


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on >=2-D trainable weights only (the release's rule)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 and "norm" not in name else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.warmup_lr, betas=(cfg.beta1, cfg.beta2))


def learning_rate(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """LR for optimizer step `step` (0-based): linear warm-up from warmup_lr to init_lr, then cosine to min_lr.

    Like the release, the LR is set at every step (the release's scheduler ran every iteration,
    not once per epoch). ``schedule: cosine_after_warmup`` (ours) runs the cosine over the steps
    after the warm-up, so it starts exactly at init_lr. ``schedule: release`` is MiniGPT-v2's
    formula: the cosine's phase counts from step 0 over all `total_steps` (30 x 1000), so just
    after warm-up the LR is already slightly below init_lr.
    """
    if step < cfg.warmup_steps:
        return min(cfg.init_lr, cfg.warmup_lr + (cfg.init_lr - cfg.warmup_lr) * step / max(1, cfg.warmup_steps))
    if cfg.schedule == "release":
        progress = min(1.0, step / max(1, total_steps))
    else:
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    return cfg.min_lr + (cfg.init_lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
