"""Stage 3 rollouts: G sampled completions per prompt and their log-probabilities under the policy,
the policy that sampled them ("old") and the reference, all through the one model.

Sampling uses the model's KV-cache generation (`generate` of its LLM, as evaluation does) on the
prompt's embeddings: each prompt's visual and audio tokens are projected and merged once
(`EmotionLLaMA.embed_inputs`) and its G completions are one batch of G rows sharing them. Each
prompt is sampled on its own, without the left padding of its batch, under its own seed
(`rollout_seed`: run seed, step, the prompt's global index in the step), so a completion does not
depend on which process drew the prompt or what else was in its batch: one process and N give the
same rollouts.

Log-probabilities are those of the sampling distribution, logits / temperature (as TRL), at the
completion tokens: one forward over [prompt embeddings, completion embeddings] with the position
ids generation used (left-padded prompt rows count from their first real token), and the LM head
applied to the completion positions only.

The reference (`Reference`) is the model stage 3 starts from. Its LoRA is a frozen copy of the
adapter, added to the same peft model as a second adapter named ``reference`` and switched in for
the reference pass, so no second LLM sits in memory; the projections (which train in stage 3)
are kept as a frozen copy of their tensors and swapped in for that pass. ``base`` uses the LLM
with the adapter disabled instead (and the starting projections).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import peft
import torch
from torch import nn

from minigpt4.run_config import REFERENCES

REFERENCE_ADAPTER = "reference"


@dataclass
class Rollout:
    """G completions for each prompt of a collated (left-padded) prompt batch, prompt-major."""

    prompts: dict[str, Any]  # the collator's generation batch (on the device)
    ids: torch.Tensor  # [N*G, T] completion token ids, padded after the end
    mask: torch.Tensor  # [N*G, T] bool: the completion's tokens, its end-of-turn token included
    texts: list[str]  # decoded completions (special tokens removed, stripped)
    truncated: torch.Tensor  # [N*G] bool: cut at max_new_tokens without an end-of-turn token
    group_size: int

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(dim=1)


def rollout_seed(seed: int, step: int, prompt_index: int) -> int:
    """The sampling seed of one prompt in one step (independent of ranks and batch composition)."""
    return (seed * 1_000_003 + step) * 1_000_033 + prompt_index


def causal_lm(model) -> nn.Module:
    """The Hugging Face causal LM under the peft wrapper (its LoRA layers stay in place)."""
    llm = model.llama_model
    return llm.get_base_model() if hasattr(llm, "get_base_model") else llm


@torch.no_grad()
def sample_completions(model, prompts: dict[str, Any], group_size: int, *, max_new_tokens: int, temperature: float,
                       top_p: float, seeds: Sequence[int]) -> Rollout:
    """`group_size` sampled completions for every prompt of `prompts` (a left-padded generation batch)."""
    tokenizer = model.tokenizer
    stop_ids = model.stop_ids()
    pad = tokenizer.pad_token_id
    embeds = model.embed_inputs(prompts)  # visual tokens projected and merged once per prompt
    device = embeds.device
    rows: list[torch.Tensor] = []
    for b, seed in enumerate(seeds):
        keep = prompts["attention_mask"][b].bool()
        prompt = embeds[b, keep][None]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            out = model.llama_model.generate(
                inputs_embeds=prompt, attention_mask=torch.ones(prompt.shape[:2], dtype=torch.long, device=device),
                do_sample=True, temperature=temperature, top_p=top_p, top_k=0, num_return_sequences=group_size,
                max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=pad,
            )
        rows.extend(out)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    is_stop = torch.isin(ids, torch.tensor(stop_ids, device=device))
    has_stop = is_stop.any(dim=1)
    end = torch.where(has_stop, is_stop.float().argmax(dim=1), torch.full_like(has_stop, width - 1, dtype=torch.long))
    mask = torch.arange(width, device=device)[None] <= end[:, None]
    texts = [tokenizer.decode(r[m], skip_special_tokens=True).strip() for r, m in zip(ids, mask)]
    return Rollout(prompts, ids, mask, texts, ~has_stop, group_size)


def completion_logprobs(model, prompts: dict[str, Any], ids: torch.Tensor, mask: torch.Tensor, group_size: int,
                        temperature: float = 1.0) -> torch.Tensor:
    """log p(completion token | prompt, earlier tokens) [N*G, T] under `model` as it is now (0 off `mask`)."""
    prompt = model.embed_inputs(prompts).repeat_interleave(group_size, dim=0)
    prompt_mask = prompts["attention_mask"].repeat_interleave(group_size, dim=0)
    lm = causal_lm(model)
    completion = lm.get_input_embeddings()(ids).to(prompt.dtype)
    attention = torch.cat([prompt_mask, mask.long()], dim=1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)  # as generate() numbers left-padded rows
    hidden = lm.get_decoder()(inputs_embeds=torch.cat([prompt, completion], dim=1), attention_mask=attention,
                              position_ids=positions, use_cache=False).last_hidden_state
    start = prompt.shape[1] - 1  # the prompt's last position predicts the first completion token
    logits = lm.get_output_embeddings()(hidden[:, start : start + ids.shape[1]]).float() / temperature
    logp = logits.log_softmax(-1).gather(-1, ids[..., None])[..., 0]
    return logp * mask


class CompletionScorer(nn.Module):
    """`completion_logprobs` as a module's forward, so DistributedDataParallel can wrap the policy pass."""

    def __init__(self, model: nn.Module, temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.temperature = temperature

    def forward(self, prompts: dict[str, Any], ids: torch.Tensor, mask: torch.Tensor, group_size: int) -> torch.Tensor:
        return completion_logprobs(self.model, prompts, ids, mask, group_size, self.temperature)


class Reference:
    """The frozen starting model for the KL term (module docstring): a peft adapter copy or the base LLM."""

    def __init__(self, model, kind: str = "adapter"):
        if kind not in REFERENCES:
            raise ValueError(f"unknown reference {kind!r}; choose one of {', '.join(REFERENCES)}")
        self.kind = kind
        self.projections = {name: p.detach().clone() for name, p in self._projection_params(model)}
        llm = model.llama_model
        self.peft = isinstance(llm, peft.PeftModel)
        if kind == "adapter" and self.peft:
            llm.add_adapter(REFERENCE_ADAPTER, llm.peft_config["default"])
            state = peft.get_peft_model_state_dict(llm, adapter_name="default")
            peft.set_peft_model_state_dict(llm, state, adapter_name=REFERENCE_ADAPTER)
            llm.set_adapter("default")  # the policy stays the active, trainable adapter
            for name, p in llm.named_parameters():
                if f".{REFERENCE_ADAPTER}." in name:
                    p.requires_grad_(False)

    @staticmethod
    def _projection_params(model) -> list[tuple[str, nn.Parameter]]:
        return [(f"{i}.{name}", p) for i, proj in enumerate(model.projections) for name, p in proj.named_parameters()]

    @contextlib.contextmanager
    def active(self, model) -> Iterator[None]:
        """Inside, `model` computes as the reference (no gradients); outside it is the policy again."""
        params = self._projection_params(model)
        saved = [p.detach().clone() for _, p in params]
        llm = model.llama_model
        with torch.no_grad():
            for name, p in params:
                p.copy_(self.projections[name])
            try:
                if not self.peft:
                    yield
                elif self.kind == "base":
                    with llm.disable_adapter():
                        yield
                else:
                    llm.set_adapter(REFERENCE_ADAPTER, inference_mode=True)
                    try:
                        yield
                    finally:
                        llm.set_adapter("default")
                        for name, p in llm.named_parameters():
                            if f".{REFERENCE_ADAPTER}." in name:
                                p.requires_grad_(False)
            finally:
                for (_, p), value in zip(params, saved):
                    p.copy_(value)

    def logprobs(self, model, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
        with self.active(model):
            return completion_logprobs(model, rollout.prompts, rollout.ids, rollout.mask, rollout.group_size, temperature)
