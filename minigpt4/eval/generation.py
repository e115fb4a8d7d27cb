"""Batched, sharded answers over a dataset -> prediction records (schema: minigpt4.eval.report).

Used by `eval_emotion.py` and by validation inside `train.py`. Each process answers the items
`rank, rank + world, ...`; records are gathered and returned in dataset order on every process,
so one process and N processes give the same file.

Answer modes (`answer_mode`):

- ``generate``: greedy generation; the label is parsed from the text (it may name none).
- ``score_labels``: emotion items are answered by `EmotionLLaMA.score_labels`: the most likely
  label of the dataset's label set, with ``label_probs`` (a distribution over the labels).
- ``both``: the generated ``answer`` plus ``scored_answer`` / ``label_probs``, so one run
  gives the metrics of both modes side by side.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from tqdm import tqdm

from minigpt4.common.config import ConfigError
from minigpt4.data.collator import EmotionCollator
from minigpt4.common.distributed import DistInfo, gather_objects

ANSWER_MODES = ("generate", "score_labels", "both")
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
    answer_mode: str = "generate",
    limit: Optional[int] = None,
) -> list[dict[str, Any]]:
    """Answers for every item of `dataset` (its first `limit` items when given); `protocol` is the
    collator's prompt layout (clean | release)."""
    info = info or SINGLE_PROCESS
    labels = check_answer_mode(answer_mode, dataset.labels)
    collator = EmotionCollator(model.tokenizer, model.cfg.num_patch_tokens, train=False, max_txt_len=model.cfg.max_txt_len,
                               protocol=protocol, prompt_format=model.cfg.prompt_format)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    indices = list(range(info.rank, count, info.world_size))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, indices), batch_size=batch_size, collate_fn=collator, num_workers=num_workers
    )
    was_training = model.training
    model.eval()
    mine: list[tuple[int, dict[str, Any]]] = []
    position = 0
    for batch in tqdm(loader, desc="generate", disable=not (progress and info.is_main), leave=False):
        on_device = collator.to_device(batch, info.device)
        emotion = [task == "emotion" for task in batch["tasks"]]
        answers: list[str] = [""] * len(emotion)
        if answer_mode != "score_labels" or not all(emotion):
            limit = max_new_tokens if isinstance(max_new_tokens, int) else max(max_new_tokens.get(t, 32) for t in batch["tasks"])
            answers = model.generate(on_device, max_new_tokens=limit, **(generation or {}))
        probs = model.score_labels(on_device, labels).softmax(-1).tolist() if answer_mode != "generate" else None
        for row, answer in enumerate(answers):
            record = {
                "name": batch["names"][row],
                "task": batch["tasks"][row],
                "instruction": batch["instructions"][row],
                "answer": answer,
                "label": batch["label_names"][row],
            }
            if probs is not None and emotion[row]:
                best = labels[max(range(len(labels)), key=probs[row].__getitem__)]
                record["scored_answer" if answer_mode == "both" else "answer"] = best
                record["label_probs"] = {label: round(p, 6) for label, p in zip(labels, probs[row])}
            if batch["tasks"][row] != "emotion":
                record["reference"] = batch["targets"][row]
            if batch["valences"][row] is not None:
                record["valence"] = batch["valences"][row]
            mine.append((indices[position], record))
            position += 1
    model.train(was_training)
    gathered = [pair for part in gather_objects(mine, info) for pair in part]
    return [record for _, record in sorted(gathered, key=lambda pair: pair[0])]


def check_answer_mode(answer_mode: str, labels) -> list[str]:
    """The labels `score_labels` chooses from; a clear error for an unknown mode or an open set."""
    if answer_mode not in ANSWER_MODES:
        raise ConfigError(f"answer_mode {answer_mode!r} is not one of {', '.join(ANSWER_MODES)}")
    if answer_mode != "generate" and not labels:
        raise ConfigError(
            f"answer_mode {answer_mode} scores the labels of a closed label set; an open-vocabulary set has none"
            " (use answer_mode: generate)"
        )
    return list(labels)


def scored_view(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of an ``answer_mode: both`` run with the scored label as the answer (to score that mode)."""
    return [dict(r, answer=r["scored_answer"]) if "scored_answer" in r else r for r in records]
