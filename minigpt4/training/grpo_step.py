"""One stage 3 (GRPO) step: rollouts, verifiable rewards, group advantages, `num_iterations` updates.

The step's prompts are the micro-batches the training loop reads (left-padded generation batches
of `EmotionCollator(train=False)`); each process samples G completions per prompt
(`rollout.sample_completions`, seeded by the prompt's place in the epoch's global sample stream,
so the rollouts are the same on one process or N), scores them with the configured rewards,
normalises the rewards within each prompt's group, and stores the old (and reference)
log-probabilities. Then, `num_iterations` times: every micro-batch's loss numerator
(`grpo.loss_terms`) is divided by the denominator of the whole step over all processes and
back-propagated (gradients synchronised on the last micro-batch only, as stages 1-2 do), and the
caller's `update` (clip, AdamW) is applied; the caller applies the last update itself.

The model runs without dropout throughout (evaluation mode, as TRL's `disable_dropout`): the
sampling policy and the policy being updated are then the same function, so the first
iteration's ratio is exactly 1.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist

from minigpt4.common.config import ConfigError
from minigpt4.common.distributed import DistInfo
from minigpt4.common.io import atomic_write
from minigpt4.run_config import GRPOConfig
from minigpt4.training.grpo import group_advantages, loss_terms, token_losses
from minigpt4.training.rewards import AnswerTemplate, Completion, check_rewards, score
from minigpt4.training.rollout import CompletionScorer, Reference, Rollout, rollout_seed, sample_completions


@dataclass
class Scored:
    """One micro-batch's rollouts, ready for the updates."""

    rollout: Rollout
    advantages: torch.Tensor  # [N*G]
    keep: torch.Tensor  # [N*G] bool: in the loss (false for skipped all-equal groups)
    old_logp: Optional[torch.Tensor]  # [N*G, T]; None with one iteration (old = current, detached)
    ref_logp: Optional[torch.Tensor]


# Sums kept per log window (all-reduced when a line is written); `metric_means` turns them into the log line.
SUM_KEYS = ("loss_sum", "loss_count", "completions", "reward", "reward_sq", "length", "tokens", "kl", "clipped",
            "groups", "all_equal", "truncated")


def check_grpo_config(cfg: GRPOConfig) -> None:
    """Reward names (after importing `reward_modules`) and the template: ConfigErrors naming the key
    and the choices, raised when training starts, before any data or model is loaded."""
    for module in cfg.reward_modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"grpo.reward_modules: cannot import {module!r} ({err}); list importable module names") from None
    if not cfg.rewards:
        raise ConfigError("grpo.rewards is empty; list the rewards and their weights, e.g. "
                          "grpo.rewards: {accuracy: 1.0, format: 0.2}")
    check_rewards(cfg.rewards)
    AnswerTemplate.from_config(cfg.template)


def check_grpo_data(cfg: GRPOConfig, train_set) -> tuple[str, ...]:
    """The training data's one label set (what `accuracy` parses against); ConfigErrors before the model loads."""
    label_sets = {tuple(part.labels) for part in getattr(train_set, "datasets", [train_set])}
    if len(label_sets) != 1:
        raise ConfigError(f"run.task grpo needs one label set across its training datasets, found {sorted(label_sets)}; "
                          "train datasets of one label_set together")
    labels = label_sets.pop()
    if "accuracy" in cfg.rewards and not labels:
        raise ConfigError("grpo.rewards.accuracy needs a closed label set but the training data is open-vocabulary "
                          "(label_set: open); reward it with ov_f1")
    return labels


class GRPOTask:
    """The `grpo` task of the training recipe: owns the rewards, the reference and the policy scorer."""

    def __init__(self, cfg: GRPOConfig, model, labels: Sequence[str], info: DistInfo, *, seed: int,
                 autocast_dtype: torch.dtype = torch.float32, scaler: Optional[torch.amp.GradScaler] = None,
                 to_device: Callable = lambda batch, device: batch):
        self.cfg, self.model, self.labels, self.info, self.seed = cfg, model, tuple(labels), info, seed
        self.weights = check_rewards(cfg.rewards)
        self.template = AnswerTemplate.from_config(cfg.template)
        self.autocast_dtype, self.scaler, self.to_device = autocast_dtype, scaler, to_device
        self.reference = Reference(model, cfg.reference) if cfg.beta != 0 else None
        self.policy = CompletionScorer(model, cfg.temperature)  # the module the recipe wraps in DDP
        self.sum_keys = SUM_KEYS + tuple(f"reward/{n}" for n in self.weights) + tuple(f"reward/{n}_sq" for n in self.weights)

    def autocast(self):
        dtype = self.autocast_dtype
        return torch.autocast(self.info.device.type, dtype=dtype, enabled=dtype != torch.float32)

    # ------------------------------------------------------------------------------ rollouts
    def completions(self, rollout: Rollout, gold: Sequence[Any]) -> list[Completion]:
        cfg, G = self.cfg, rollout.group_size
        lengths, cut = rollout.lengths.tolist(), rollout.truncated.tolist()
        return [
            Completion(text=text, answer=self.template.parse(text), label=gold[i // G], labels=self.labels,
                       n_tokens=lengths[i], max_new_tokens=cfg.max_new_tokens, truncated=cut[i],
                       soft_length=cfg.soft_length)
            for i, text in enumerate(rollout.texts)
        ]

    @torch.no_grad()
    def rollout(self, cpu_batch: dict[str, Any], positions: Sequence[int], epoch: int, sums: dict[str, torch.Tensor]
                ) -> Scored:
        """Sample, score and store the log-probabilities of one micro-batch of prompts.

        `positions`: each prompt's index in the epoch's global sample stream (its seed)."""
        cfg, device = self.cfg, self.info.device
        prompts = self.to_device(cpu_batch, device)
        with self.autocast():
            rollout = sample_completions(self.model, prompts, cfg.group_size, max_new_tokens=cfg.max_new_tokens,
                                         temperature=cfg.temperature, top_p=cfg.top_p,
                                         seeds=[rollout_seed(self.seed, epoch, p) for p in positions])
        totals, per_function = score(self.completions(rollout, cpu_batch["label_names"]), self.weights)
        rewards = torch.tensor(totals, dtype=torch.float32, device=device)
        advantages, all_equal = group_advantages(rewards, cfg.group_size, cfg.scale_by_std, cfg.advantage_eps)
        keep = ~all_equal.repeat_interleave(cfg.group_size) if cfg.skip_all_equal else torch.ones_like(rewards, dtype=torch.bool)
        old = ref = None
        with self.autocast():
            if cfg.num_iterations > 1:
                old = self.policy(rollout.prompts, rollout.ids, rollout.mask, cfg.group_size)
            if self.reference is not None:
                ref = self.reference.logprobs(self.model, rollout, cfg.temperature)

        sums["completions"] += rewards.numel()
        sums["reward"] += rewards.sum()
        sums["reward_sq"] += (rewards ** 2).sum()
        for name, values in per_function.items():
            v = torch.tensor(values, dtype=torch.float32, device=device)
            sums[f"reward/{name}"] += v.sum()
            sums[f"reward/{name}_sq"] += (v ** 2).sum()
        sums["length"] += rollout.lengths.sum()
        sums["truncated"] += rollout.truncated.sum()
        sums["groups"] += all_equal.numel()
        sums["all_equal"] += all_equal.sum()
        return Scored(rollout, advantages, keep, old, ref)

    # ------------------------------------------------------------------------------ the step
    def step(self, ddp_policy, micro_batches: Sequence[dict[str, Any]], positions: Sequence[Sequence[int]],
             epoch: int, update: Callable[[], torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rollouts of every micro-batch, then `num_iterations` gradient passes; `update()` is called
        after every pass but the last (the caller applies the last one). Returns this step's sums."""
        cfg, info = self.cfg, self.info
        self.model.eval()  # no dropout: the ratio of the first iteration is exactly 1
        sums = {key: torch.zeros((), device=info.device) for key in self.sum_keys}
        scored = [self.rollout(batch, pos, epoch, sums) for batch, pos in zip(micro_batches, positions)]
        denominator = torch.tensor(sum(loss_terms(s.rollout.mask.float(), s.rollout.mask, cfg.loss_aggregation,
                                                  cfg.max_new_tokens, s.keep)[1] for s in scored), device=info.device)
        if info.enabled:
            dist.all_reduce(denominator)
        denominator = denominator.clamp_min(1.0)
        for iteration in range(cfg.num_iterations):
            for i, s in enumerate(scored):
                last = i == len(scored) - 1
                with contextlib.nullcontext() if last or not info.enabled else ddp_policy.no_sync():
                    with self.autocast():
                        logp = ddp_policy(s.rollout.prompts, s.rollout.ids, s.rollout.mask, cfg.group_size)
                    old = s.old_logp if s.old_logp is not None else logp.detach()
                    pieces = token_losses(logp, old, s.advantages, s.rollout.mask, eps_low=cfg.eps_low,
                                          eps_high=cfg.eps_high, beta=cfg.beta, ref_logp=s.ref_logp)
                    numerator, _ = loss_terms(pieces.loss, s.rollout.mask, cfg.loss_aggregation, cfg.max_new_tokens, s.keep)
                    loss = numerator * info.world_size / denominator
                    (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
                sums["loss_sum"] += numerator.detach().float()
                sums["tokens"] += s.rollout.mask.sum()
                sums["kl"] += pieces.kl.detach().sum()
                sums["clipped"] += pieces.clipped.sum()
            if iteration < cfg.num_iterations - 1:
                update()
        sums["loss_count"] += denominator * cfg.num_iterations / info.world_size  # global after the all-reduce
        return sums


def metric_means(sums: dict[str, torch.Tensor], reward_names: Sequence[str]) -> dict[str, float]:
    """The log line of a window from its (globally reduced) sums: means and standard deviations."""
    s = {k: float(v) for k, v in sums.items()}
    n = max(s["completions"], 1.0)

    def std(key: str) -> float:
        mean = s[key] / n
        return math.sqrt(max(s[f"{key}_sq"] / n - mean * mean, 0.0))

    line = {
        "loss": s["loss_sum"] / s["loss_count"] if s["loss_count"] else math.nan,
        "reward": s["reward"] / n, "reward_std": std("reward"),
        "kl": s["kl"] / max(s["tokens"], 1.0),
        "clip_fraction": s["clipped"] / max(s["tokens"], 1.0),
        "completion_length": s["length"] / n,
        "truncated_fraction": s["truncated"] / n,
        "all_equal_fraction": s["all_equal"] / max(s["groups"], 1.0),
    }
    for name in reward_names:
        line[f"reward/{name}"] = s[f"reward/{name}"] / n
        line[f"reward/{name}_std"] = std(f"reward/{name}")
    return line


def stream_positions(step_in_epoch: int, micro_batch_sizes: Sequence[int], batch_size: int, info: DistInfo
                     ) -> list[list[int]]:
    """Each prompt's index in the epoch's global sample stream (`EpochSampler`: rank r reads items
    r, r + world, ... of one stream), for the micro-batches of the step `step_in_epoch`."""
    first = step_in_epoch * len(micro_batch_sizes) * batch_size
    return [[(first + k * batch_size + b) * info.world_size + info.rank for b in range(n)]
            for k, n in enumerate(micro_batch_sizes)]


def reduce_sums(sums: dict[str, torch.Tensor], info: DistInfo) -> dict[str, torch.Tensor]:
    """The window's sums over all processes (one all-reduce)."""
    keys = sorted(sums)
    stacked = torch.stack([sums[k].float() for k in keys])
    if info.enabled:
        dist.all_reduce(stacked)
    return dict(zip(keys, stacked))


def write_reward_curve(metrics_log: Path, out: Path, reward_names: Sequence[str]) -> Optional[Path]:
    """`reward_curve.png`: the mean reward (± its std over completions) and each reward function per
    logged step, from metrics.jsonl. None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [json.loads(line) for line in metrics_log.read_text().splitlines()] if metrics_log.exists() else []
    lines = [line for line in lines if "reward" in line]
    if not lines:
        return None
    steps = [line["step"] for line in lines]
    mean = [line["reward"] for line in lines]
    std = [line["reward_std"] for line in lines]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, mean, label="total reward", color="black", linewidth=2)
    ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], color="grey", alpha=0.25)
    for name in reward_names:
        ax.plot(steps, [line[f"reward/{name}"] for line in lines], label=name, linestyle="--")
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward per completion")
    ax.set_title("GRPO reward (band: ± std over completions)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(out, lambda fh: fig.savefig(fh, format="png", dpi=120))
    plt.close(fig)
    return out
