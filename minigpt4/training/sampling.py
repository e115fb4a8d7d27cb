"""A resumable, rank-sharded, epoch-seeded sampler.

The index stream of an epoch depends only on (seed, epoch), so a resumed run can start at any
micro-step of any epoch without reading the data before it, and every rank reads a disjoint
slice of the same stream. Epochs longer than the dataset (the release's fixed 1000 iterations)
chain several permutations.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch


class EpochSampler(torch.utils.data.Sampler[int]):
    def __init__(
        self,
        dataset_size: int,
        samples_per_rank: int,
        *,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        weights: Optional[Sequence[float]] = None,
    ):
        self.dataset_size = dataset_size
        self.samples_per_rank = samples_per_rank
        self.seed, self.epoch = seed, epoch
        self.rank, self.world_size = rank, world_size
        self.start = start
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def global_stream(self) -> torch.Tensor:
        needed = self.samples_per_rank * self.world_size
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is not None:  # class-balanced: draw with replacement by weight
            return torch.multinomial(self.weights, needed, replacement=True, generator=g)
        chunks, total = [], 0
        while total < needed:
            chunks.append(torch.randperm(self.dataset_size, generator=g))
            total += self.dataset_size
        return torch.cat(chunks)[:needed]

    def __iter__(self) -> Iterator[int]:
        mine = self.global_stream()[self.rank :: self.world_size]
        return iter(mine[self.start :].tolist())

    def __len__(self) -> int:
        return self.samples_per_rank - self.start
