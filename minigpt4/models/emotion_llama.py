"""Emotion-LLaMA: frozen encoders -> linear projections -> tokens merged into a LoRA-tuned Llama.

Visual tokens per clip, in prompt order (docs/model.md):

    [ patch tokens (P) | local, temporal, audio feature tokens (F) | CLS token (1) ]

F is 3 in the release (one vector per kind); an encoder configured for k tokens gives k
(`model.feature_slots`, models/feature_layout.py), each kind through its own projection.

The collator writes one placeholder slot per *present* token (absent modalities have no slot) and
a boolean `visual_mask` marking the slots; `merge_visual_tokens` fills them with one masked
scatter, as Hugging Face LLaVA does, and refuses batches whose counts disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from minigpt4.models.feature_layout import FEATURE_ORDER
from minigpt4.models.config import KV_CACHES, ModelConfig
from minigpt4.models.kv_cache import PreallocatedCache
from minigpt4.models.prompt_format import end_of_answer_id
from minigpt4.models.vision_towers import frame_tokens


Batch = dict[str, Any]


def merge_visual_tokens(
    embeds: torch.Tensor,
    visual_mask: torch.Tensor,
    tokens: torch.Tensor,
    present: torch.Tensor,
    counts: tuple[torch.Tensor, torch.Tensor] | None = None,
    layout: str = "",
) -> torch.Tensor:
    """Place the present `tokens` [B, T, H] into the `visual_mask` [B, L] slots of `embeds` [B, L, H].

    `counts` = (slots per row, tokens per row) on the CPU, when the caller has them (the collator's
    tensors before the copy to the GPU): the check then costs no device sync. `layout` describes
    the feature encoders and their token counts, for the error message.
    """
    slots_per_row, tokens_per_row = counts if counts is not None else (visual_mask.sum(dim=1), present.sum(dim=1))
    if not torch.equal(slots_per_row, tokens_per_row):
        row = int((slots_per_row != tokens_per_row).nonzero()[0, 0])
        raise ValueError(
            f"sample {row} of the batch has {int(slots_per_row[row])} visual placeholder slots in its prompt "
            f"but {int(tokens_per_row[row])} visual tokens; build batches with EmotionCollator for this "
            "model's config (num_patch_tokens, present modalities) so the two agree"
            + (f"; the model's feature encoders give {layout}" if layout else "")
        )
    return embeds.masked_scatter(visual_mask.unsqueeze(-1), tokens[present].to(embeds.dtype))


@dataclass
class TrainOutput:
    """A training forward pass: the loss and the sum and count it is the mean of.

    `loss = loss_sum / loss_count`. The training loop instead divides `loss_sum` by the count of
    the whole optimizer step (all micro-steps, all ranks), so accumulation and data parallelism
    give the same gradient as one big batch. `logits` are the next-token logits at the target
    positions only, [n_targets, vocab], in the order of `labels[:, 1:][labels[:, 1:] != -100]`.
    """

    loss: torch.Tensor
    loss_sum: torch.Tensor
    loss_count: torch.Tensor
    logits: torch.Tensor


def target_count(labels: torch.Tensor, reduction: str) -> torch.Tensor:
    """What a loss of `reduction` averages over: target tokens ("token") or samples with a target ("sample")."""
    per_row = (labels[:, 1:] != -100).sum(dim=1)
    return per_row.sum() if reduction == "token" else (per_row > 0).sum()


def loss_terms(token_loss: torch.Tensor, targets: torch.Tensor, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum, count) of a batch's loss from the per-target-token losses and the [B, L-1] target mask.

    "token": the sum of token losses over the number of target tokens. "sample": the sum of each
    sample's token-mean loss over the number of samples that have a target.
    """
    if reduction == "token":
        return token_loss.sum(), targets.sum()
    per_row = targets.sum(dim=1)
    rows = targets.nonzero()[:, 0]
    row_sums = token_loss.new_zeros(targets.shape[0]).index_add(0, rows, token_loss)
    has_target = per_row > 0
    return (row_sums[has_target] / per_row[has_target]).sum(), has_target.sum()


def sample_mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy averaged over each sample's target tokens, then over samples (full logits)."""
    targets = labels[:, 1:] != -100
    token_loss = nn.functional.cross_entropy(logits[:, :-1][targets].float(), labels[:, 1:][targets])
    total, count = loss_terms(token_loss, targets, "sample")
    return total / count


class EmotionLLaMA(nn.Module):
    """The model. Module names match the released checkpoint's keys (`llama_proj`, ...)."""

    def __init__(self, cfg: ModelConfig, visual_encoder: nn.Module, llama_model: nn.Module, tokenizer=None):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        # The token ending an answer in cfg.prompt_format: generation stops at it, label scoring
        # scores it. Looked up once here (a chat template is rendered to find it), not per call.
        self.end_of_answer_id = end_of_answer_id(tokenizer, cfg.prompt_format) if tokenizer is not None else None
        width = cfg.vision.width
        hidden = llama_model.get_input_embeddings().weight.shape[1]
        self.visual_encoder = visual_encoder
        self.ln_vision = nn.LayerNorm(width)  # frozen at its initial values, as in MiniGPT-v2
        self.llama_model = llama_model
        self.llama_proj = nn.Linear(width * cfg.patches_per_token, hidden)
        self.cls_tk_llama_proj = nn.Linear(width, hidden)
        # one projection per feature kind (local, temporal, audio), as wide as its encoder; its k tokens share it
        for i, width in enumerate(cfg.feature_layout.widths):
            self.add_module(f"feats_llama_proj{i + 1}", nn.Linear(width, hidden))
        for module in (self.visual_encoder, self.ln_vision):
            module.requires_grad_(False)

    # ----------------------------------------------------------------------------------- parts
    @property
    def feature_projections(self) -> list[nn.Linear]:
        return [getattr(self, f"feats_llama_proj{i + 1}") for i in range(len(FEATURE_ORDER))]

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
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen EVA tokens [B, 1 + N, width] (CLS first), before `ln_vision`: what the cache stores."""
        return frame_tokens(self.visual_encoder, images)

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
        if batch.get("image_embeds") is not None:  # cached tokens (fp32 / fp16 / bf16): cast below, as live ones
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

        layout = self.cfg.feature_layout
        if tuple(features.shape[1:]) != (layout.rows, layout.width):
            raise ValueError(
                f"features have shape {tuple(features.shape[1:])} per clip, but the model's feature encoders give "
                f"{layout.describe()} ({layout.rows} x {layout.width}); build samples with this model's "
                "feature_layout (model.feature_slots) from features of those encoders")
        features = features.to(proj_weight.device, proj_weight.dtype)
        feature_tokens = torch.cat([  # each kind's rows, its own columns, its own projection
            proj(features[:, layout.slice(kind), :width])
            for kind, width, proj in zip(FEATURE_ORDER, layout.widths, self.feature_projections)], dim=1)
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

    def visual_counts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(placeholder slots, present visual tokens) per row, from the collator's CPU tensors
        (`batch["host"]`, kept by `EmotionCollator.to_device`) so checking them never waits for the GPU."""
        host = batch.get("host", batch)
        image = host["image_present"].to(torch.bool).long()
        tokens = image * (self.cfg.num_patch_tokens + 1) + host["feature_present"].to(torch.bool).sum(dim=1)
        return host["visual_mask"].sum(dim=1), tokens.to(host["visual_mask"].device)

    def embed_inputs(self, batch: Batch) -> torch.Tensor:
        embeds = self.llama_model.get_input_embeddings()(batch["input_ids"])
        tokens, present = self.encode_visual(batch)
        return merge_visual_tokens(embeds, batch["visual_mask"], tokens, present, self.visual_counts(batch),
                                   self.cfg.feature_layout.describe())

    # ----------------------------------------------------------------------------------- use
    def forward(self, batch: Batch):
        """With `labels`: a `TrainOutput` whose loss covers target tokens only (labels are -100
        elsewhere), reduced by `cfg.loss_reduction`. Without: the causal LM's output, full logits.

        Training applies the LM head to the target positions only: the decoder's hidden states
        [B, L, H] go through the [H, vocab] head just where a label is, instead of building
        [B, L, vocab] logits (at 7B size, 32000 x ~1000 positions x 4 bytes per sample).
        """
        labels = batch.get("labels")
        inputs = self.embed_inputs(batch)
        if labels is None:
            return self.llama_model(inputs_embeds=inputs, attention_mask=batch["attention_mask"], use_cache=False)
        causal_lm = self.llama_model.get_base_model() if hasattr(self.llama_model, "get_base_model") else self.llama_model
        hidden = causal_lm.get_decoder()(inputs_embeds=inputs, attention_mask=batch["attention_mask"], use_cache=False)
        labels = labels.to(inputs.device)
        targets = labels[:, 1:] != -100
        logits = causal_lm.get_output_embeddings()(hidden.last_hidden_state[:, :-1][targets]).float()
        token_loss = nn.functional.cross_entropy(logits, labels[:, 1:][targets], reduction="none")
        loss_sum, loss_count = loss_terms(token_loss, targets, self.cfg.loss_reduction)
        return TrainOutput(loss_sum / loss_count, loss_sum, loss_count, logits)

    def stop_ids(self) -> list[int]:
        """Generation stops at the end-of-turn token of the prompt format (and at EOS, if different)."""
        end = self.end_of_answer_id
        return [end] + [i for i in (self.tokenizer.eos_token_id,) if i is not None and i != end]

    @torch.no_grad()
    def generate(self, batch: Batch, max_new_tokens: int = 32, kv_cache: str = "preallocated",
                 **generation: Any) -> list[str]:
        """Answers for a left-padded batch. Greedy with one beam unless `generation` says otherwise.

        `kv_cache`: ``preallocated`` (default: `PreallocatedCache`, written in place, the same answers as
        ``dynamic`` without its per-token copies), ``dynamic`` (Hugging Face's default, grows by
        concatenation) or ``static`` (HF's StaticCache: fixed shapes, which `torch.compile` needs;
        it attends over masked unused positions, so low-precision answers may differ slightly).
        """
        if self.tokenizer is None:
            raise RuntimeError("generation needs a tokenizer; build the model from a folder with one (llm.path)")
        if (batch["attention_mask"][:, -1] == 0).any():
            raise ValueError("generation needs a left-padded batch: build it with EmotionCollator(train=False)")
        if kv_cache not in KV_CACHES:
            raise ValueError(f"kv_cache {kv_cache!r} is unknown; choose one of {', '.join(KV_CACHES)}")
        generation.setdefault("do_sample", False)
        generation.setdefault("num_beams", 1)
        inputs = self.embed_inputs(batch)
        if kv_cache == "preallocated":
            layers = self.llama_model.config.num_hidden_layers
            generation["past_key_values"] = PreallocatedCache(layers, inputs.shape[1] + max_new_tokens)
        elif kv_cache == "static":
            generation["cache_implementation"] = "static"
        output = self.llama_model.generate(
            inputs_embeds=inputs,
            attention_mask=batch["attention_mask"],
            max_new_tokens=max_new_tokens,
            eos_token_id=self.stop_ids(),
            pad_token_id=self.tokenizer.pad_token_id,
            **generation,
        )
        return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]

    @torch.no_grad()
    def score_labels(self, batch: Batch, labels: Sequence[str]) -> torch.Tensor:
        """Log-likelihood [B, L] of answering each of `labels` (the label's tokens, then the end of the answer).

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

        # every label as token ids + the end-of-answer token training puts after a target
        # (</s> for llama2_inst, the template's end-of-turn token otherwise), right-padded: [L, T]
        eos = self.end_of_answer_id
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
