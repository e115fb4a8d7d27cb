"""Leak-free k-fold cross-validation for DFEW / IEMOCAP-style protocols.

The community IEMOCAP fork chained folds: fold k started from fold k-1's checkpoint, so every
test fold after the first had been trained on, and its numbers were inflated. Here
`cross_validate` hands every fold a fresh deep copy of the *same* initial state, so neither a
returned checkpoint nor an in-place update of the state can reach the next fold.

`fold_splits` builds stratified splits (each fold keeps the label distribution); with
`group_key` (e.g. IEMOCAP ``session``) all clips of a group land in the same test fold, which
with 5 sessions and k=5 is the usual leave-one-session-out protocol.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from minigpt4.eval.metrics import aggregate_folds


@dataclass(frozen=True)
class Fold:
    """One fold: `index` (0-based) and the record indices it trains and tests on."""

    index: int
    train: tuple[int, ...]
    test: tuple[int, ...]


def fold_splits(
    records: Sequence[Mapping[str, Any]],
    k: int,
    seed: int,
    group_key: str | None = None,
    label_key: str = "label",
) -> list[Fold]:
    """`k` stratified folds over `records`, group-aware when `group_key` is given.

    Deterministic for a given `seed`. Every record is in exactly one test fold; train and test
    never share a group.
    """
    n = len(records)
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got k={k}")
    if n < k:
        raise ValueError(f"cannot make {k} folds from {n} records")
    missing = [i for i, r in enumerate(records) if r.get(label_key) is None]
    if missing:
        raise ValueError(f"records {missing[:5]} have no {label_key!r}; stratified folds need a label on every record")
    y = np.asarray([str(r[label_key]) for r in records])
    x = np.zeros((n, 1))
    if group_key is None:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(x, y)
    else:
        groups = [r.get(group_key) for r in records]
        if any(g is None for g in groups):
            raise ValueError(f"some records have no {group_key!r}; every record needs its group for group-aware folds")
        n_groups = len(set(map(str, groups)))
        if n_groups < k:
            raise ValueError(f"only {n_groups} distinct {group_key!r} values for k={k} folds; lower k or regroup")
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(x, y, groups=np.asarray([str(g) for g in groups]))
    return [Fold(i, tuple(int(t) for t in tr), tuple(int(t) for t in te)) for i, (tr, te) in enumerate(splits)]


def cross_validate(
    folds: Sequence[Fold],
    init_state: Any,
    train_fold: Callable[[Fold, Any], Any],
    eval_fold: Callable[[Fold, Any], Mapping[str, float]],
) -> dict[str, Any]:
    """Train and evaluate every fold from a copy of `init_state`; aggregate the metrics.

    `train_fold(fold, state)` gets a deep copy of `init_state` (a state dict, a model, any
    deep-copyable object) and returns a checkpoint; `eval_fold(fold, checkpoint)` returns a
    metrics dict. Result: ``{"folds": [metrics...], "mean": aggregate_folds(...)}`` with
    ``<key>`` = mean and ``<key>_std`` = sample std over folds.
    """
    if not folds:
        raise ValueError("cross_validate needs at least one fold")
    pristine = copy.deepcopy(init_state)  # guards against the caller mutating init_state meanwhile
    per_fold: list[dict[str, float]] = []
    for fold in folds:
        checkpoint = train_fold(fold, copy.deepcopy(pristine))
        per_fold.append({k: float(v) for k, v in eval_fold(fold, checkpoint).items()})
    return {"folds": per_fold, "mean": aggregate_folds(per_fold)}
