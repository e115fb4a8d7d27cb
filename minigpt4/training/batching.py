"""What length-grouped batching needs from the data: each item's token length, and how much of a
batch is padding.

An item's length is measured by the collator itself (`EmotionCollator.length`) on the item's text
fields (`EmotionDataset.text_sample`: no frame, feature or EVA file is read), with every input
counted present unless the item drops it, so it is exact for complete clips and at most a few
slots long for a clip missing a feature. The instruction drawn from the pool and the modality
dropout change with the epoch, so lengths are taken per epoch, for the items of that epoch's
stream only; a text seen before (same transcript, task, instruction, target, inputs) is not
tokenised again.
"""

from __future__ import annotations

import bisect
from typing import Any, Sequence

import torch

from minigpt4.data.collator import EmotionCollator


class LengthTable:
    """Token lengths of a training set's items (an `EmotionDataset` or a `ConcatDataset` of them)."""

    def __init__(self, dataset: torch.utils.data.Dataset, collator: EmotionCollator):
        self.parts = list(getattr(dataset, "datasets", [dataset]))
        self.ends = list(getattr(dataset, "cumulative_sizes", [len(dataset)]))
        self.collator = collator
        self.cache: dict[tuple, int] = {}

    def text_sample(self, index: int) -> dict[str, Any]:
        part = bisect.bisect_right(self.ends, index)
        return self.parts[part].text_sample(index - (self.ends[part - 1] if part else 0))

    def length(self, index: int) -> int:
        sample = self.text_sample(index)
        key = (sample["transcript"], sample["task"], sample["instruction"], sample["target"],
               sample["image"] is not None, int(sample["feature_present"].sum()))
        if key not in self.cache:
            self.cache[key] = self.collator.length(sample)
        return self.cache[key]

    def __call__(self, indices: Sequence[int]) -> list[int]:
        """Lengths of `indices` under the datasets' current epoch (`set_epoch`)."""
        known = {i: self.length(i) for i in set(indices)}
        return [known[i] for i in indices]


def padding_counts(micro_batches: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(real tokens, all positions) of a step's collated micro-batches, from the CPU attention masks."""
    real = sum(int(batch["attention_mask"].sum()) for batch in micro_batches)
    total = sum(batch["attention_mask"].numel() for batch in micro_batches)
    return real, total
