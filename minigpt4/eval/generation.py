"""The one answering path: `answer_batch` answers a collated batch; `predict` runs it over a dataset.

`answer_batch` is what evaluation (`predict`), inference (`minigpt4.infer.EmotionPredictor`, hence
the web app and the MERR ``model`` backend) call: generation, label scoring, the argmax over the
label probabilities, their rounding and the per-task token limit are decided here only.
`autocast` is the one autocast rule (model.dtype on a GPU when amp is on).

`predict` gives batched, sharded answers over a dataset -> prediction records (schema:
minigpt4.eval.report). Used by `eval_emotion.py` and by validation inside `train.py`. Each process answers the items
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

import contextlib
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch
from tqdm import tqdm

from minigpt4.common.config import ConfigError
from minigpt4.common.distributed import DistInfo, gather_objects
from minigpt4.data.collator import EmotionCollator
from minigpt4.data.prompts import PromptTemplate
from minigpt4.models.builder import DTYPES, merged_lora

ANSWER_MODES = ("generate", "score_labels", "both")
SINGLE_PROCESS = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
# New tokens of a task the configured limits do not name (the GenerationConfig defaults).
DEFAULT_MAX_NEW_TOKENS = {"emotion": 16, "reason": 200, "reason_v2": 200}
LABEL_PROB_DIGITS = 6  # label probabilities are rounded to this many decimals in records and --json


def autocast_dtype(model_dtype: str, device: torch.device, amp: bool = True) -> torch.dtype:
    """The one autocast rule: `model_dtype` (bf16 / fp16) on a GPU when `amp`; float32 (no autocast) otherwise."""
    return DTYPES[model_dtype] if amp and device.type == "cuda" else torch.float32


def autocast(model_dtype: str, device: torch.device, amp: bool = True):
    """The autocast context of `autocast_dtype` (disabled when that is float32)."""
    dtype = autocast_dtype(model_dtype, device, amp)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def token_limit(max_new_tokens: Mapping[str, int] | int, tasks: Sequence[str]) -> int:
    """New tokens for a batch of `tasks`: an int as it is, else the largest per-task limit."""
    if isinstance(max_new_tokens, int):
        return max_new_tokens
    return max(max_new_tokens.get(task, DEFAULT_MAX_NEW_TOKENS.get(task, 200)) for task in tasks)


@dataclass
class Answer:
    """One row's answer."""

    text: Optional[str]  # the generated text; None when the mode did not generate
    label_probs: Optional[dict[str, float]] = None  # P(label) over the label set; emotion rows of a scoring mode
    scored: Optional[str] = None  # the most likely label (with label_probs)


def answer_batch(model, batch: dict[str, Any], *, answer_mode: str = "generate", labels: Sequence[str] = (),
                 max_new_tokens: Mapping[str, int] | int = 16, generation: Optional[dict[str, Any]] = None) -> list[Answer]:
    """Answers for a left-padded generation batch (`EmotionCollator(train=False)`, on the model's device).

    ``generate``: the generated text. ``score_labels``: emotion rows get the most likely label of
    `labels` (`EmotionLLaMA.score_labels`) and their probabilities; other tasks still generate.
    ``both``: the text, and the probabilities of emotion rows.
    """
    emotion = [task == "emotion" for task in batch["tasks"]]
    texts: list[Optional[str]] = [None] * len(emotion)
    if answer_mode != "score_labels" or not all(emotion):
        texts = model.generate(batch, max_new_tokens=token_limit(max_new_tokens, batch["tasks"]), **(generation or {}))
    probs = model.score_labels(batch, list(labels)).softmax(-1).tolist() if answer_mode != "generate" and any(emotion) else None
    answers = []
    for row, text in enumerate(texts):
        if probs is None or not emotion[row]:
            answers.append(Answer(text))
            continue
        best = labels[max(range(len(labels)), key=probs[row].__getitem__)]
        answers.append(Answer(text, {label: round(p, LABEL_PROB_DIGITS) for label, p in zip(labels, probs[row])}, best))
    return answers


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
    template: Optional[PromptTemplate] = None,
    merge_lora: bool = True,
) -> list[dict[str, Any]]:
    """Answers for every item of `dataset` (its first `limit` items when given); `template` (or
    `protocol`, clean | release, with the model's prompt format) is the collator's prompt layout.
    `merge_lora`: answer with the LoRA update folded into the weights (`merged_lora`; same answers,
    fewer matmuls), the exact weights back afterwards."""
    info = info or SINGLE_PROCESS
    labels = check_answer_mode(answer_mode, dataset.labels)
    template = template or PromptTemplate.resolve(protocol, model.cfg.prompt_format, model.tokenizer)
    if not isinstance(max_new_tokens, int):
        max_new_tokens = template.max_new_tokens(max_new_tokens)  # 500 for every task under release
    collator = EmotionCollator(model.tokenizer, model.cfg.num_patch_tokens, train=False, max_txt_len=model.cfg.max_txt_len,
                               template=template)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    indices = list(range(info.rank, count, info.world_size))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, indices), batch_size=batch_size, collate_fn=collator, num_workers=num_workers
    )
    was_training = model.training
    model.eval()
    mine: list[tuple[int, dict[str, Any]]] = []
    position = 0
    with merged_lora(model) if merge_lora else contextlib.nullcontext():
        for batch in tqdm(loader, desc="generate", disable=not (progress and info.is_main), leave=False):
            answers = answer_batch(model, collator.to_device(batch, info.device), answer_mode=answer_mode,
                                   labels=labels, max_new_tokens=max_new_tokens, generation=generation)
            for row, answer in enumerate(answers):
                record = {
                    "name": batch["names"][row],
                    "task": batch["tasks"][row],
                    "instruction": batch["instructions"][row],
                    "answer": answer.text or "",
                    "label": batch["label_names"][row],
                }
                if answer.label_probs is not None:
                    record["scored_answer" if answer_mode == "both" else "answer"] = answer.scored
                    record["label_probs"] = answer.label_probs
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
