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
    """LR for optimizer step `step` (0-based): linear warm-up, then cosine from init_lr to min_lr.

    The release decays once per epoch; this decays per optimizer step between the same end
    points, which is smoother and independent of how an "epoch" is defined.
    """
    if step < cfg.warmup_steps:
        return cfg.warmup_lr + (cfg.init_lr - cfg.warmup_lr) * step / max(1, cfg.warmup_steps)
    decay_steps = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    return cfg.min_lr + (cfg.init_lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
