"""Samples -> model batch: prompt layout, placeholder expansion, padding and label masking.

Like a Hugging Face processor for LLaVA, the collator expands `<VideoHere>` into one slot per
image patch token and `<FeatureHere>` into one slot per present feature plus the CLS token. It
returns `visual_mask` marking those slots; the model fills them with one masked scatter. Slots
hold the pad id (any valid id works: the scatter overwrites their embeddings).

Training batches are right-padded with loss on the target and `</s>` only; generation batches
are left-padded and carry no target.

`protocol="release"` (generation only) builds the released evaluation's batch instead: its
prompt string (`PromptTemplate.prompt`), a BOS in front of the literal ``<s>`` (the release
tokenized the first segment with special tokens, so ids start ``bos, bos``), and every slot at
`<VideoHere>` in the model's token order [patches, local, temporal, audio, CLS]; `<FeatureHere>`
is tokenized as text. Only the slot positions differ: the model and the merge are the same.

`prompt_format` (the model's `prompt_format`) wraps the user turn: ``llama2_inst`` puts a BOS in
front of ``[INST] ... [/INST]`` and ends targets with ``</s>``; ``chat_template`` uses the
tokenizer's chat template (which writes its own BOS, if the model has one) and ends targets with
the template's end-of-turn token (`PromptTemplate.end_id`).

Every one of those decisions is the collator's `template` (`prompts.PromptTemplate`): pass the
one evaluation or inference resolved, or `protocol` / `prompt_format` to resolve one here.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from minigpt4.common.config import ConfigError
from minigpt4.data.prompts import PromptTemplate

IGNORE_INDEX = -100


class EmotionCollator:
    def __init__(
        self,
        tokenizer,
        num_patch_tokens: int,
        *,
        train: bool,
        max_txt_len: int = 1024,
        max_transcript_words: int = 200,
        protocol: str = "clean",
        prompt_format: str = "llama2_inst",
        template: PromptTemplate | None = None,
    ):
        self.tokenizer = tokenizer
        self.num_patch_tokens = num_patch_tokens
        self.train = train
        self.max_txt_len = max_txt_len
        self.max_transcript_words = max_transcript_words
        if template is not None and template.tokenizer is not tokenizer:
            raise ValueError("the collator's template was resolved for another tokenizer")
        self.template = template or PromptTemplate.resolve(protocol, prompt_format, tokenizer)
        self.protocol = self.template.protocol
        self.prompt_format = self.template.prompt_format
        self.end_id = self.template.end_id
        self.slot_id = tokenizer.pad_token_id
        if self.slot_id is None:
            raise ValueError("the tokenizer needs a pad token (build it with minigpt4.models.builder.load_tokenizer)")
        if self.template.is_release and train:
            raise ConfigError("protocol 'release' is the release's evaluation prompt; training uses the "
                             "clean layout (so did the release): build the training collator with protocol='clean'")

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def encode(self, sample: dict[str, Any]) -> tuple[list[int], list[bool], list[int]]:
        """(input ids, slot mask, labels) of one sample."""
        transcript = " ".join((sample.get("transcript") or "").split()[: self.max_transcript_words])
        text = self.template.prompt(transcript, sample["task"], sample["instruction"])
        has_image = sample.get("image") is not None or sample.get("image_embeds") is not None
        n_video = self.num_patch_tokens if has_image else 0
        n_feature = int(torch.as_tensor(sample["feature_present"]).sum()) + int(has_image)
        segments = self.template.slot_segments(text, n_video, n_feature)

        ids = [self.tokenizer.bos_token_id] if self.template.leading_bos else []  # a chat template writes its own
        slots = [False] * len(ids)
        for segment, n_slots in segments:
            seg = self._ids(segment)
            ids += seg + [self.slot_id] * n_slots
            slots += [False] * len(seg) + [True] * n_slots
        labels = [IGNORE_INDEX] * len(ids)
        if self.train:
            target = self._ids(self.template.user_text(sample["target"]))[: self.max_txt_len] + [self.end_id]
            ids += target
            slots += [False] * len(target)
            labels += target
        return ids, slots, labels

    def length(self, sample: dict[str, Any]) -> int:
        """Positions `sample` takes in a batch (BOS, prompt, visual slots, and the target when training):
        its row's length before padding."""
        return len(self.encode(sample)[0])

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        encoded = [self.encode(s) for s in samples]
        length = max(len(ids) for ids, _, _ in encoded)
        batch_size = len(samples)
        input_ids = torch.full((batch_size, length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(batch_size, length, dtype=torch.long)
        visual_mask = torch.zeros(batch_size, length, dtype=torch.bool)
        labels = torch.full((batch_size, length), IGNORE_INDEX, dtype=torch.long)
        for row, (ids, slots, target) in enumerate(encoded):
            span = slice(0, len(ids)) if self.train else slice(length - len(ids), length)
            input_ids[row, span] = torch.tensor(ids)
            attention_mask[row, span] = 1
            visual_mask[row, span] = torch.tensor(slots)
            labels[row, span] = torch.tensor(target)

        batch: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "visual_mask": visual_mask,
            "features": torch.stack([torch.as_tensor(s["features"], dtype=torch.float32) for s in samples]),
            "feature_present": torch.stack([torch.as_tensor(s["feature_present"], dtype=torch.bool) for s in samples]),
            "names": [s["name"] for s in samples],
            "tasks": [s["task"] for s in samples],
            "instructions": [s["instruction"] for s in samples],
            "targets": [s.get("target") for s in samples],
            "label_names": [s.get("label") for s in samples],
            "valences": [s.get("valence") for s in samples],
        }
        if self.train:
            batch["labels"] = labels
        batch["image_present"] = torch.tensor(
            [s.get("image") is not None or s.get("image_embeds") is not None for s in samples]
        )
        for key, out in (("image", "images"), ("image_embeds", "image_embeds")):
            present = [s.get(key) for s in samples if s.get(key) is not None]
            if present:
                template = torch.zeros_like(torch.as_tensor(present[0]))
                batch[out] = torch.stack([torch.as_tensor(s[key]) if s.get(key) is not None else template for s in samples])
        return batch

    HOST_KEYS = ("visual_mask", "image_present", "feature_present")

    @staticmethod
    def to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
        """The batch on `device`; `host` keeps the CPU slot and presence masks for checks that must not sync."""
        moved = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        moved["host"] = batch.get("host") or {k: batch[k] for k in EmotionCollator.HOST_KEYS if isinstance(batch.get(k), torch.Tensor)}
        return moved
