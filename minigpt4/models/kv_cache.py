"""A key/value cache allocated once per `generate` call, written in place.

Hugging Face's default `DynamicCache` grows by `torch.cat` at every decoded token, copying the whole
cache each step: with long answers (the release protocol's 500 new tokens) the copies dominate
batched decode time. `PreallocatedCache` reserves prompt + `max_new_tokens` positions up front
and hands attention a view of the filled part, so attention sees exactly the tensors the dynamic
cache would hold (same values, same length: identical answers) without the copies. Unlike HF's
`StaticCache` it does not attend over the unused tail, so no masked positions enter the softmax.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One decoder layer's keys and values [B, heads, capacity, head_dim]; `keys`/`values` are the filled part."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads, _, _ = key_states.shape
        self.key_buffer = key_states.new_empty(batch, heads, self.capacity, key_states.shape[-1])
        self.value_buffer = value_states.new_empty(batch, heads, self.capacity, value_states.shape[-1])
        self.length = 0
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"PreallocatedCache holds {self.capacity} positions; {end} were asked for "
                               "(max_new_tokens larger than the cache was made for)")
        self.key_buffer[:, :, self.length:end] = key_states
        self.value_buffer[:, :, self.length:end] = value_states
        self.length = end
        self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def reset(self) -> None:
        self.length = 0
        super().reset()

    def _rows(self, pick) -> None:
        """Apply a batch-dimension operation to the buffers (beam reordering, row selection)."""
        if self.is_initialized:
            self.key_buffer, self.value_buffer = pick(self.key_buffer), pick(self.value_buffer)
            self.keys, self.values = self.key_buffer[:, :, :self.length], self.value_buffer[:, :, :self.length]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._rows(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._rows(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._rows(lambda t: t[indices])

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        self.length = max(0, self.length + tokens_to_remove)
        self._rows(lambda t: t)


class PreallocatedCache(Cache):
    """`num_layers` PreallocatedLayers of `capacity` positions (prompt + new tokens)."""

    def __init__(self, num_layers: int, capacity: int):
        super().__init__(layers=[PreallocatedLayer(capacity) for _ in range(num_layers)])
