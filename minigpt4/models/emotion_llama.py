"""Emotion-LLaMA: frozen encoders -> linear projections -> tokens merged into a LoRA-tuned Llama.

Visual tokens per clip, in prompt order (docs/model.md):

    [ patch tokens (P) | local, temporal, audio feature tokens (3) | CLS token (1) ]

The collator writes one placeholder slot per *present* token (absent modalities have no slot) and
a boolean `visual_mask` marking the slots; `merge_visual_tokens` fills them with one masked
scatter, as Hugging Face LLaVA does, and refuses batches whose counts disagree.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from minigpt4.data.prompts import end_of_turn_id
from minigpt4.models.config import ModelConfig

Batch = dict[str, Any]


def merge_visual_tokens(
    embeds: torch.Tensor, visual_mask: torch.Tensor, tokens: torch.Tensor, present: torch.Tensor
) -> torch.Tensor:
    """Place the present `tokens` [B, T, H] into the `visual_mask` [B, L] slots of `embeds` [B, L, H]."""
    slots_per_row = visual_mask.sum(dim=1)
    tokens_per_row = present.sum(dim=1)
    if not torch.equal(slots_per_row.cpu(), tokens_per_row.cpu()):
        row = int((slots_per_row != tokens_per_row).nonzero()[0, 0])
        raise ValueError(
            f"sample {row} of the batch has {int(slots_per_row[row])} visual placeholder slots in its prompt "
            f"but {int(tokens_per_row[row])} visual tokens; build batches with EmotionCollator for this "
            "model's config (num_patch_tokens, present modalities) so the two agree"
        )
    return embeds.masked_scatter(visual_mask.unsqueeze(-1), tokens[present].to(embeds.dtype))


def sample_mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy averaged over each sample's target tokens, then over samples."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    token_loss = nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    counts = (labels != -100).sum(dim=1)
    has_target = counts > 0
    return (token_loss.sum(dim=1)[has_target] / counts[has_target]).mean()


class EmotionLLaMA(nn.Module):
    """The model. Module names match the released checkpoint's keys (`llama_proj`, ...)."""

    def __init__(self, cfg: ModelConfig, visual_encoder: nn.Module, llama_model: nn.Module, tokenizer=None):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        width = cfg.vision.width
        hidden = llama_model.get_input_embeddings().weight.shape[1]
        self.visual_encoder = visual_encoder
        self.ln_vision = nn.LayerNorm(width)  # frozen at its initial values, as in MiniGPT-v2
        self.llama_model = llama_model
        self.llama_proj = nn.Linear(width * cfg.patches_per_token, hidden)
        self.cls_tk_llama_proj = nn.Linear(width, hidden)
        for i in range(cfg.num_features):
            self.add_module(f"feats_llama_proj{i + 1}", nn.Linear(cfg.feature_dim, hidden))
        for module in (self.visual_encoder, self.ln_vision):
            module.requires_grad_(False)

    # ----------------------------------------------------------------------------------- parts
    @property
    def feature_projections(self) -> list[nn.Linear]:
        return [getattr(self, f"feats_llama_proj{i + 1}") for i in range(self.cfg.num_features)]

    @property
    def projections(self) -> list[nn.Module]:
        return [self.llama_proj, self.cls_tk_llama_proj, *self.feature_projections]

    def train(self, mode: bool = True) -> "EmotionLLaMA":
        super().train(mode)
        self.visual_encoder.eval()  # frozen: no dropout / drop-path, ever
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what training changes: projections and LoRA, keyed as in the released checkpoint."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in trainable}

    # ----------------------------------------------------------------------------------- inputs
    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen EVA tokens [B, 1 + N, width] (CLS first), before `ln_vision`: what the cache stores."""
        param = next(self.visual_encoder.parameters())
        return self.visual_encoder.forward_features(images.to(param.device, param.dtype))

    def encode_visual(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """All visual tokens [B, P + F + 1, H] of the batch and which of them are present [B, P + F + 1]."""
        features: torch.Tensor = batch["features"]
        batch_size = features.shape[0]
        n_patch = self.cfg.num_patch_tokens
        proj_weight = self.llama_proj.weight
        image_present = batch["image_present"].to(torch.bool)

        # Projections always run (on zero rows when no clip has an image) so every trainable
        # parameter takes part in every step, as DistributedDataParallel requires.
        expected = n_patch * self.cfg.patches_per_token
        if batch.get("image_embeds") is not None:
            vis = batch["image_embeds"][image_present]
        elif batch.get("images") is not None and image_present.any():
            vis = self.encode_image(batch["images"][image_present])
        else:
            vis = proj_weight.new_zeros(0, expected + 1, self.cfg.vision.width)
        if vis.shape[1] - 1 != expected or vis.shape[2] != self.cfg.vision.width:
            raise ValueError(
                f"image tokens have shape {tuple(vis.shape[1:])}, expected ({expected + 1}, "
                f"{self.cfg.vision.width}) for image_size={self.cfg.vision.image_size}; "
                "were cached EVA tokens made with another image size?"
            )
        vis = self.ln_vision(vis.to(proj_weight.device).float()).to(proj_weight.dtype)
        grouped = vis[:, 1:, :].reshape(vis.shape[0], n_patch, self.cfg.patches_per_token * vis.shape[2])  # 4 raster-order patches
        # Zeros in the projections' output dtype: under autocast that is the autocast dtype, not the weights'.
        projected, cls_projected = self.llama_proj(grouped), self.cls_tk_llama_proj(vis[:, 0])
        patch_tokens = projected.new_zeros(batch_size, n_patch, projected.shape[-1])
        patch_tokens = patch_tokens.index_put((image_present,), projected)
        cls_tokens = cls_projected.new_zeros(batch_size, cls_projected.shape[-1])
        cls_tokens = cls_tokens.index_put((image_present,), cls_projected)

        features = features.to(proj_weight.device, proj_weight.dtype)
        feature_tokens = torch.stack([proj(features[:, i]) for i, proj in enumerate(self.feature_projections)], 1)
        tokens = torch.cat([patch_tokens, feature_tokens.to(patch_tokens.dtype), cls_tokens[:, None]], dim=1)
        present = torch.cat(
            [
                image_present[:, None].expand(batch_size, n_patch),
                batch["feature_present"].to(torch.bool),
                image_present[:, None],
            ],
            dim=1,
        )
        return tokens, present.to(tokens.device)

    def embed_inputs(self, batch: Batch) -> torch.Tensor:
        embeds = self.llama_model.get_input_embeddings()(batch["input_ids"])
        tokens, present = self.encode_visual(batch)
        return merge_visual_tokens(embeds, batch["visual_mask"], tokens, present)

    # ----------------------------------------------------------------------------------- use
    def forward(self, batch: Batch):
        """Causal-LM output; `loss` covers target tokens only (labels are -100 elsewhere)."""
        labels = batch.get("labels")
        per_sample = labels is not None and self.cfg.loss_reduction == "sample"
        output = self.llama_model(
            inputs_embeds=self.embed_inputs(batch),
            attention_mask=batch["attention_mask"],
            labels=None if per_sample else labels,
            use_cache=False,
        )
        if per_sample:
            output.loss = sample_mean_loss(output.logits, labels)
        return output

    def stop_ids(self) -> list[int]:
        """Generation stops at the end-of-turn token of the prompt format (and at EOS, if different)."""
        end = end_of_turn_id(self.tokenizer, self.cfg.prompt_format)
        return [end] + [i for i in (self.tokenizer.eos_token_id,) if i is not None and i != end]

    @torch.no_grad()
    def generate(self, batch: Batch, max_new_tokens: int = 32, **generation: Any) -> list[str]:
        """Answers for a left-padded batch. Greedy with one beam unless `generation` says otherwise."""
        if self.tokenizer is None:
            raise RuntimeError("generation needs a tokenizer; build the model from a folder with one (llm.path)")
        if (batch["attention_mask"][:, -1] == 0).any():
            raise ValueError("generation needs a left-padded batch: build it with EmotionCollator(train=False)")
        generation.setdefault("do_sample", False)
        generation.setdefault("num_beams", 1)
        output = self.llama_model.generate(
            inputs_embeds=self.embed_inputs(batch),
            attention_mask=batch["attention_mask"],
            max_new_tokens=max_new_tokens,
            eos_token_id=self.stop_ids(),
            pad_token_id=self.tokenizer.pad_token_id,
            **generation,
        )
        return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]

    @torch.no_grad()
    def score_labels(self, batch: Batch, labels: Sequence[str]) -> torch.Tensor:
        """Log-likelihood [B, L] of answering each of `labels` (the label's tokens, then `</s>`).

        The answer is then always a label of the set, and ``.softmax(-1)`` of the result is a
        probability distribution over the labels. One forward runs the (left-padded) prompt once
        and keeps its KV cache; the cache is repeated per label and one more forward scores
        every label continuation of every sample together.
        """
        if self.tokenizer is None:
            raise RuntimeError("label scoring needs a tokenizer; build the model from a folder with one (llm.path)")
        if not labels:
            raise ValueError("score_labels needs at least one label (an open-vocabulary label set has none)")
        if (batch["attention_mask"][:, -1] == 0).any():
            raise ValueError("label scoring needs a left-padded batch: build it with EmotionCollator(train=False)")
        mask = batch["attention_mask"]
        batch_size, n_labels = mask.shape[0], len(labels)
        prefix_positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # as generate() numbers left-padded rows
        prefix = self.llama_model(
            inputs_embeds=self.embed_inputs(batch), attention_mask=mask, position_ids=prefix_positions,
            use_cache=True, logits_to_keep=1,
        )
        first_logprobs = prefix.logits[:, -1].float().log_softmax(-1)  # [B, V]: the first answer token

        # every label as token ids + </s>, right-padded to the longest: [L, T]
        eos = self.tokenizer.eos_token_id
        token_lists = [self.tokenizer(label, add_special_tokens=False)["input_ids"] + [eos] for label in labels]
        width = max(len(ids) for ids in token_lists)
        ids = mask.new_full((n_labels, width), self.tokenizer.pad_token_id)
        keep = torch.zeros(n_labels, width, dtype=torch.bool, device=mask.device)
        for row, tokens in enumerate(token_lists):
            ids[row, : len(tokens)] = torch.tensor(tokens, device=mask.device)
            keep[row, : len(tokens)] = True

        # the first token is scored by the prompt's last logits; the rest by one cached forward
        loglik = first_logprobs[:, ids[:, 0]]  # [B, L]
        if width > 1:
            cache = prefix.past_key_values
            cache.batch_repeat_interleave(n_labels)  # row b*L + l continues sample b with label l
            cont_ids = ids[:, :-1].repeat(batch_size, 1)  # [B*L, T-1]: inputs predicting tokens 1..T-1
            cont_mask = torch.cat([mask.repeat_interleave(n_labels, 0), keep[:, :-1].long().repeat(batch_size, 1)], 1)
            start = mask.sum(-1).repeat_interleave(n_labels)[:, None]
            positions = start + torch.arange(width - 1, device=mask.device)
            out = self.llama_model(
                inputs_embeds=self.llama_model.get_input_embeddings()(cont_ids), attention_mask=cont_mask,
                position_ids=positions, past_key_values=cache, use_cache=True,
            )
            logprobs = out.logits.float().log_softmax(-1)  # [B*L, T-1, V]
            targets = ids[:, 1:].repeat(batch_size, 1)
            token_ll = logprobs.gather(-1, targets[..., None])[..., 0] * keep[:, 1:].repeat(batch_size, 1)
            loglik = loglik + token_ll.sum(-1).view(batch_size, n_labels)
        return loglik
