"""One optimizer step's forward and backward passes, with the loss averaged over the whole step.

The loss of an optimizer step is `sum of losses / count` over every micro-batch of the step on
every rank (as torchtune does): `count` is the number of target tokens ("token" reduction) or of
samples with a target ("sample"), counted on the CPU from the collated labels and all-reduced
once. Each micro-step back-propagates `loss_sum * world_size / count`; DistributedDataParallel
averages gradients over ranks (dividing by world_size), so the gradient is exactly that of one
batch holding all the step's samples, whatever the split into micro-steps and ranks. A mean per
micro-batch divided by the number of micro-steps would instead weigh a one-word micro-batch as
much as a 50-token one.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
import torch.distributed as dist

from minigpt4.models.emotion_llama import target_count
from minigpt4.common.distributed import DistInfo


def step_loss_count(micro_batches: Sequence[dict[str, Any]], reduction: str, info: DistInfo) -> torch.Tensor:
    """The denominator of the step's loss, over all micro-batches and ranks, as a device tensor."""
    local = sum(int(target_count(batch["labels"], reduction)) for batch in micro_batches)  # CPU labels: no sync
    count = torch.tensor(float(local), device=info.device)
    if info.enabled:
        dist.all_reduce(count)
    return count.clamp_min(1.0)  # a step without any target: zero loss and gradient, not 0 / 0


def forward_backward(
    ddp_model,
    micro_batches: Sequence[dict[str, Any]],
    info: DistInfo,
    *,
    reduction: str,
    autocast_dtype: torch.dtype = torch.float32,
    scaler: torch.amp.GradScaler | None = None,
    to_device=lambda batch, device: batch,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accumulate the step's gradients. Returns (this rank's loss sum, the global count), on the device.

    Gradients are synchronised across ranks on the last micro-step only. Nothing here waits for the
    device: the loss stays a tensor so logging can sum it and read it every `log_every` steps.
    """
    count = step_loss_count(micro_batches, reduction, info)
    loss_sum = torch.zeros((), device=info.device)
    for i, cpu_batch in enumerate(micro_batches):
        batch = to_device(cpu_batch, info.device)
        last = i == len(micro_batches) - 1
        with contextlib.nullcontext() if last or not info.enabled else ddp_model.no_sync():
            with torch.autocast(info.device.type, dtype=autocast_dtype, enabled=autocast_dtype != torch.float32):
                out = ddp_model(batch)
            loss = out.loss_sum * info.world_size / count
            (scaler.scale(loss) if scaler is not None else loss).backward()
        loss_sum += out.loss_sum.detach().float()
    return loss_sum, count
