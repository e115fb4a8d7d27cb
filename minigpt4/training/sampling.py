"""Resumable, rank-sharded, epoch-seeded sampling: single indices (`EpochSampler`, fixed micro-batches)
or micro-batches of similar length (`LengthGroupedBatchSampler`).

The index stream of an epoch depends only on (seed, epoch), so a resumed run can start at any
micro-step of any epoch without reading the data before it, and every rank reads a disjoint
slice of the same stream. Epochs longer than the dataset (the release's fixed 1000 iterations)
chain several permutations.

Length grouping takes that same stream, cuts it into chunks of `group_size` micro-batches per rank,
sorts each chunk by token length, cuts it into micro-batches of neighbours and shuffles their order
(a generator seeded by (seed, epoch)): every sample of the stream is still trained on once, in the
same epoch, but a micro-batch holds samples of similar length, so little of it is padding. The
batches of an epoch are a pure function of (seed, epoch, lengths), which is what makes resuming
mid-epoch exact.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence

import torch


def epoch_stream(dataset_size: int, needed: int, seed: int, epoch: int,
                 weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The epoch's `needed` dataset indices, all ranks together; a function of (seed, epoch) only."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if weights is not None:  # class-balanced: draw with replacement by weight
        return torch.multinomial(weights, needed, replacement=True, generator=g)
    chunks, total = [], 0
    while total < needed:
        chunks.append(torch.randperm(dataset_size, generator=g))
        total += dataset_size
    return torch.cat(chunks)[:needed]


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
        return epoch_stream(self.dataset_size, self.samples_per_rank * self.world_size, self.seed, self.epoch,
                            self.weights)

    def __iter__(self) -> Iterator[int]:
        mine = self.global_stream()[self.rank :: self.world_size]
        return iter(mine[self.start :].tolist())

    def __len__(self) -> int:
        return self.samples_per_rank - self.start


def group_by_length(stream: Sequence[int], lengths: Sequence[int], batch_size: int, chunk: int,
                    generator: torch.Generator, token_budget: Optional[int] = None) -> list[list[int]]:
    """Micro-batches from `stream`: each `chunk` consecutive items sorted by length (longest first,
    ties in stream order), cut into batches of at most `batch_size` items and, with `token_budget`,
    at most that many positions (items x the batch's longest; a longer item goes alone), then the
    chunk's batches shuffled."""
    batches: list[list[int]] = []
    for begin in range(0, len(stream), chunk):
        items = list(stream[begin:begin + chunk])
        order = sorted(range(len(items)), key=lambda i: -lengths[begin + i])  # sorted() is stable
        cut: list[list[int]] = []
        for i in order:
            batch = cut[-1] if cut else None
            if batch is None or len(batch) == batch_size or (
                    token_budget is not None and (len(batch) + 1) * batch[0][1] > token_budget):
                cut.append([])
                batch = cut[-1]
            batch.append((items[i], lengths[begin + i]))
        batches += [[item for item, _ in cut[i]] for i in torch.randperm(len(cut), generator=generator).tolist()]
    return batches


class LengthGroupedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """This rank's micro-batches of the epoch, of similar token length, from micro-batch `start` on.

    `lengths(indices)` gives the token length of each dataset index (`training.batching.LengthTable`);
    all ranks compute the same global list of micro-batches, rank r takes every world_size-th one.
    Without `token_budget` every micro-batch holds `batch_size` samples and the epoch uses exactly
    the samples of the fixed sampler's stream; with it, micro-batches of long samples hold fewer,
    and the stream is read until the epoch's micro-batches are formed.
    """

    def __init__(
        self,
        dataset_size: int,
        batches_per_rank: int,
        batch_size: int,
        lengths: Callable[[Sequence[int]], Sequence[int]],
        *,
        seed: int,
        epoch: int,
        group_size: int = 64,
        token_budget: Optional[int] = None,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        weights: Optional[Sequence[float]] = None,
    ):
        self.dataset_size, self.batches_per_rank, self.batch_size = dataset_size, batches_per_rank, batch_size
        self.lengths, self.group_size, self.token_budget = lengths, group_size, token_budget
        self.seed, self.epoch = seed, epoch
        self.rank, self.world_size, self.start = rank, world_size, start
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def global_batches(self) -> list[list[int]]:
        """Every rank's micro-batches of the epoch, in order (rank r's are items r, r + world_size, ...)."""
        needed = self.batches_per_rank * self.world_size
        chunk = self.group_size * self.batch_size * self.world_size
        # micro-batches hold at most batch_size samples, so the fixed sampler's stream always suffices;
        # with a token budget the epoch ends when `needed` micro-batches are formed
        stream = epoch_stream(self.dataset_size, needed * self.batch_size, self.seed, self.epoch, self.weights).tolist()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 500_009)
        batches: list[list[int]] = []
        for begin in range(0, len(stream), chunk):
            if len(batches) >= needed:
                break
            part = stream[begin:begin + chunk]  # lengths of the chunks that are used only
            batches += group_by_length(part, list(self.lengths(part)), self.batch_size, chunk, generator,
                                       self.token_budget)
        return batches[:needed]

    def __iter__(self) -> Iterator[list[int]]:
        mine = self.global_batches()[self.rank :: self.world_size]
        return iter(mine[self.start :])

    def __len__(self) -> int:
        return self.batches_per_rank - self.start
