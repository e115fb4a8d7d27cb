"""k-fold splits and the leak-free cross-validation driver."""

from __future__ import annotations

from collections import Counter

import pytest

from minigpt4.eval.kfold import Fold, cross_validate, fold_splits


def _records(n=60):
    labels = ["happy", "sad", "angry"]
    return [{"name": f"c{i}", "label": labels[i % 3], "session": f"Ses0{i % 5 + 1}"} for i in range(n)]


def test_folds_partition_records_and_are_stratified_and_deterministic():
    recs = _records()
    folds = fold_splits(recs, k=5, seed=0)
    tests = [i for f in folds for i in f.test]
    assert sorted(tests) == list(range(len(recs)))  # every record tested exactly once
    for f in folds:
        assert not set(f.train) & set(f.test) and len(f.train) + len(f.test) == len(recs)
        assert Counter(recs[i]["label"] for i in f.test) == {"happy": 4, "sad": 4, "angry": 4}
    assert folds == fold_splits(recs, k=5, seed=0)
    assert folds != fold_splits(recs, k=5, seed=1)


def test_group_aware_folds_keep_sessions_together():
    recs = _records()
    folds = fold_splits(recs, k=5, seed=0, group_key="session")
    for f in folds:
        test_sessions = {recs[i]["session"] for i in f.test}
        train_sessions = {recs[i]["session"] for i in f.train}
        assert len(test_sessions) == 1 and not test_sessions & train_sessions  # leave-one-session-out
    with pytest.raises(ValueError, match="only 5 distinct"):
        fold_splits(recs, k=6, seed=0, group_key="session")


def test_split_argument_errors():
    with pytest.raises(ValueError, match="k >= 2"):
        fold_splits(_records(), k=1, seed=0)
    with pytest.raises(ValueError, match="no 'label'"):
        fold_splits([{"name": "a"}] * 4, k=2, seed=0)


def test_every_fold_starts_from_the_same_initial_state():
    """The fork's leak: fold 2 trained on from fold 1's checkpoint. Here it gets the initial state."""
    init = {"w": [0.0], "step": 0}
    seen: list[dict] = []

    def train_fold(fold: Fold, state: dict) -> dict:
        seen.append({"w": list(state["w"]), "step": state["step"]})
        state["w"][0] += 1.0 + fold.index  # in-place mutation must not leak either
        state["step"] += 10
        return state

    def eval_fold(fold: Fold, ckpt: dict) -> dict:
        return {"war": ckpt["w"][0] / 10, "n": float(len(fold.test))}

    folds = [Fold(i, (0,), (1,)) for i in range(3)]
    result = cross_validate(folds, init, train_fold, eval_fold)
    assert seen == [{"w": [0.0], "step": 0}] * 3
    assert init == {"w": [0.0], "step": 0}
    assert [m["war"] for m in result["folds"]] == [pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.3)]
    assert result["mean"]["war"] == pytest.approx(0.2) and result["mean"]["war_std"] == pytest.approx(0.1)
    assert result["mean"]["n"] == 3.0 and result["mean"]["n_folds"] == 3.0
