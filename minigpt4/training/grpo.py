"""The GRPO objective (stage 3): group-normalised advantages, clipped ratio, k3 KL, loss aggregation.

Pure tensor functions, each one decision of docs/training.md ("Stage 3"), tested against hand
computations. For G completions o_1..o_G of one prompt with rewards r_1..r_G:

    A_i       = (r_i - mean(r)) / (std(r) + eps)     scale_by_std (GRPO); r_i - mean(r) without (Dr. GRPO)
    ratio_it  = exp(logp_it - old_logp_it)
    loss_it   = -min(ratio_it * A_i, clip(ratio_it, 1 - eps_low, 1 + eps_high) * A_i) + beta * k3_it
    k3_it     = exp(ref_it - logp_it) - (ref_it - logp_it) - 1           (>= 0, zero when equal)

and the per-token losses are aggregated (`aggregate`) by one of

    sequence  mean over each completion's tokens, then over completions    (GRPO)
    token     sum over all tokens / number of tokens                       (DAPO, BNPO)
    dr_grpo   sum over all tokens / (completions * max_new_tokens)         (Dr. GRPO)

`loss_terms` returns the numerator and the denominator separately: the training step divides
the sum of every micro-batch's numerator by the denominator of the whole optimizer step over all
processes (as stages 1-2 do), so the gradient does not depend on how a step is split.

`std(r)` is the unbiased standard deviation (torch's default, as TRL). A group whose rewards are
all equal has zero advantage for every completion: it carries no signal. Such groups are counted
and, with `skip_all_equal` (DAPO's dynamic sampling, without re-sampling), also left out of the
denominator, so they do not dilute the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from minigpt4.run_config import LOSS_AGGREGATIONS as AGGREGATIONS

def group_advantages(rewards: torch.Tensor, group_size: int, scale_by_std: bool = True, eps: float = 1e-4
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantage per completion [N*G], all-equal flag per group [N]) of rewards [N*G] in prompt-major order."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.float().view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    all_equal = (grouped == grouped[:, :1]).all(dim=1)
    if scale_by_std:
        centred = centred / (grouped.std(dim=1, keepdim=True) + eps)
    return centred.masked_fill(all_equal[:, None], 0.0).reshape(-1), all_equal


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference) from sampled tokens' log-probabilities."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


@dataclass
class TokenLosses:
    """Per-token pieces of the objective, [N, T] each (zero where `mask` is False)."""

    loss: torch.Tensor
    kl: torch.Tensor
    clipped: torch.Tensor  # the clip is active on this token (its gradient is cut)


def token_losses(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                 eps_low: float = 0.2, eps_high: float = 0.2, beta: float = 0.0,
                 ref_logp: torch.Tensor | None = None) -> TokenLosses:
    """The clipped surrogate (and beta * k3) per completion token; `advantages` [N], the rest [N, T]."""
    adv = advantages[:, None].to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    clipped_ratio = ratio.clamp(1 - eps_low, 1 + eps_high)
    loss = -torch.min(ratio * adv, clipped_ratio * adv)
    kl = torch.zeros_like(loss)
    if beta != 0.0:
        if ref_logp is None:
            raise ValueError("beta != 0 needs the reference log-probabilities")
        kl = k3_kl(logp, ref_logp)
        loss = loss + beta * kl
    clipped = ((ratio < 1 - eps_low) & (adv < 0)) | ((ratio > 1 + eps_high) & (adv > 0))
    m = mask.to(loss.dtype)
    return TokenLosses(loss * m, kl * m, clipped & mask.bool())


def loss_terms(per_token: torch.Tensor, mask: torch.Tensor, aggregation: str, max_new_tokens: int,
               keep: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """(numerator, denominator) of the aggregated loss for these completions.

    `keep` [N] (bool) leaves completions out of both (skipped all-equal groups). The loss of a
    batch alone is numerator / denominator; a step sums numerators and denominators over its
    micro-batches and processes first.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
    mask = mask.to(per_token.dtype)
    keep = torch.ones(mask.shape[0], dtype=torch.bool, device=mask.device) if keep is None else keep.bool()
    mask = mask * keep[:, None].to(mask.dtype)
    lengths = mask.sum(dim=1)
    if aggregation == "sequence":
        has_tokens = lengths > 0
        per_sequence = (per_token * mask).sum(dim=1)[has_tokens] / lengths[has_tokens]
        return per_sequence.sum(), float(has_tokens.sum())
    if aggregation == "token":
        return (per_token * mask).sum(), float(lengths.sum())
    return (per_token * mask).sum(), float(keep.sum()) * max_new_tokens


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, aggregation: str, max_new_tokens: int,
              keep: torch.Tensor | None = None) -> torch.Tensor:
    """The loss of one batch on its own (`loss_terms` numerator / denominator; 0 when nothing is kept)."""
    total, count = loss_terms(per_token, mask, aggregation, max_new_tokens, keep)
    return total / max(count, 1.0)

