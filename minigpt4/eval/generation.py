"""Batched, sharded generation over a dataset -> prediction records (schema: minigpt4.eval.report).

Used by `eval_emotion.py` and by validation inside `train.py`. Each process generates for the
items `rank, rank + world, ...`; records are gathered and returned in dataset order on every
process, so one process and N processes give the same file.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from tqdm import tqdm

from minigpt4.data.collator import EmotionCollator
from minigpt4.training.distributed import DistInfo, gather_objects

SINGLE_PROCESS = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def predict(
    model,
    dataset,
    *,
    batch_size: int = 8,
    max_new_tokens: Mapping[str, int] | int = 16,
    info: Optional[DistInfo] = None,
    num_workers: int = 0,
    progress: bool = True,
    generation: Optional[dict[str, Any]] = None,
    protocol: str = "clean",
) -> list[dict[str, Any]]:
    """Answers for every item of `dataset`; `protocol` is the collator's prompt layout (clean | release)."""
    info = info or SINGLE_PROCESS
    collator = EmotionCollator(model.tokenizer, model.cfg.num_patch_tokens, train=False, max_txt_len=model.cfg.max_txt_len,
                               protocol=protocol, prompt_format=model.cfg.prompt_format)
    indices = list(range(info.rank, len(dataset), info.world_size))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, indices), batch_size=batch_size, collate_fn=collator, num_workers=num_workers
    )
    was_training = model.training
    model.eval()
    mine: list[tuple[int, dict[str, Any]]] = []
    position = 0
    for batch in tqdm(loader, desc="generate", disable=not (progress and info.is_main), leave=False):
        limit = max_new_tokens if isinstance(max_new_tokens, int) else max(max_new_tokens.get(t, 32) for t in batch["tasks"])
        answers = model.generate(collator.to_device(batch, info.device), max_new_tokens=limit, **(generation or {}))
        for row, answer in enumerate(answers):
            record = {
                "name": batch["names"][row],
                "task": batch["tasks"][row],
                "instruction": batch["instructions"][row],
                "answer": answer,
                "label": batch["label_names"][row],
            }
            if batch["tasks"][row] != "emotion":
                record["reference"] = batch["targets"][row]
            if batch["valences"][row] is not None:
                record["valence"] = batch["valences"][row]
            mine.append((indices[position], record))
            position += 1
    model.train(was_training)
    gathered = [pair for part in gather_objects(mine, info) for pair in part]
    return [record for _, record in sorted(gathered, key=lambda pair: pair[0])]
