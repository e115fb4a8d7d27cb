"""Metric definitions: hand-computed cases and agreement with scikit-learn."""

from __future__ import annotations

import math
import random

import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from minigpt4.data.labels import DFEW_LABELS, IEMOCAP4_LABELS, MER2023_LABELS
from minigpt4.eval.metrics import (
    INVALID,
    aggregate_folds,
    classification_metrics,
    dfew_metrics,
    emer_metrics,
    iemocap_metrics,
    mer2023_metrics,
    mer2024_ov_metrics,
)


def test_mer2023_hand_case_with_invalid_answer():
    # happy: TP 1, FP 1 (a sad clip), FN 1 (the invalid one) -> F1 0.5; sad: P 1, R 0.5 -> F1 2/3.
    m = mer2023_metrics(["happy", "happy", "sad", "sad"], ["happy", None, "sad", "happy"], MER2023_LABELS)
    assert m["weighted_f1"] == pytest.approx((0.5 * 2 + (2 / 3) * 2) / 4)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["weighted_recall"] == pytest.approx(0.5)
    assert m["weighted_precision"] == pytest.approx((0.5 * 2 + 1.0 * 2) / 4)
    assert (m["n"], m["n_invalid"]) == (4.0, 1.0)
    assert "overall" not in m


def test_invalid_is_never_credited():
    # Mapping the invalid answer to the true class would give F1 1.0; it must stay lower.
    valid = mer2023_metrics(["happy", "sad"], ["happy", "sad"], MER2023_LABELS)
    invalid = mer2023_metrics(["happy", "sad"], ["happy", None], MER2023_LABELS)
    assert valid["weighted_f1"] == 1.0
    assert invalid["weighted_f1"] == pytest.approx(0.5)  # happy F1 1, sad F1 0
    all_invalid = mer2023_metrics(["happy", "sad"], [None, None], MER2023_LABELS)
    assert all_invalid["weighted_f1"] == 0.0 and all_invalid["accuracy"] == 0.0 and all_invalid["n_invalid"] == 2.0


def test_weighted_f1_matches_sklearn_on_random_data():
    rng = random.Random(0)
    y_true = [rng.choice(MER2023_LABELS) for _ in range(300)]
    y_pred = [rng.choice(list(MER2023_LABELS) + [None]) for _ in range(300)]
    mapped = [INVALID if p is None else p for p in y_pred]
    m = classification_metrics(y_true, y_pred, MER2023_LABELS)
    assert m["weighted_f1"] == pytest.approx(f1_score(y_true, mapped, labels=list(MER2023_LABELS), average="weighted"))
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, mapped))
    assert m["n_invalid"] == float(sum(p is None for p in y_pred))


def test_mer2023_overall_uses_valence_mse():
    m = mer2023_metrics(["happy", "sad"], ["happy", "sad"], MER2023_LABELS, [1.0, -2.0], [2.0, -2.0])
    assert m["valence_mse"] == pytest.approx(0.5)
    assert m["overall"] == pytest.approx(1.0 - 0.25 * 0.5)


def test_gold_outside_label_set_and_empty_input_are_errors():
    with pytest.raises(ValueError, match="not in the label set"):
        mer2023_metrics(["fear"], ["happy"], MER2023_LABELS)
    with pytest.raises(ValueError, match="empty"):
        mer2023_metrics([], [], MER2023_LABELS)
    with pytest.raises(ValueError, match="parse_label"):
        mer2023_metrics(["happy"], ["joy"], MER2023_LABELS)


def test_dfew_uar_war_hand_case_and_absent_classes():
    y_true = ["happy", "happy", "happy", "sad"]
    y_pred = ["happy", "happy", "sad", None]
    m = dfew_metrics(y_true, y_pred, DFEW_LABELS)
    assert m["uar"] == pytest.approx((2 / 3 + 0.0) / 2)  # mean over the 2 present classes only
    assert m["war"] == pytest.approx(0.5)
    assert m["n_absent_classes"] == 5.0
    assert m["recall_happy"] == pytest.approx(2 / 3) and m["recall_sad"] == 0.0
    assert "recall_fear" not in m
    with pytest.warns(UserWarning):  # sklearn warns about the predicted-only <invalid> class
        expected = balanced_accuracy_score(y_true, [INVALID if p is None else p for p in y_pred])
    assert m["uar"] == pytest.approx(expected)


def test_dfew_uar_differs_from_war_on_imbalance():
    y_true = ["happy"] * 8 + ["fear"] * 2
    y_pred = ["happy"] * 10
    m = dfew_metrics(y_true, y_pred, DFEW_LABELS)
    assert m["war"] == pytest.approx(0.8)
    assert m["uar"] == pytest.approx(0.5)


def test_iemocap_metrics_match_sklearn():
    rng = random.Random(1)
    y_true = [rng.choice(IEMOCAP4_LABELS) for _ in range(200)]
    y_pred = [rng.choice(list(IEMOCAP4_LABELS) + [None]) for _ in range(200)]
    mapped = [INVALID if p is None else p for p in y_pred]
    m = iemocap_metrics(y_true, y_pred, IEMOCAP4_LABELS)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, mapped))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, mapped, labels=list(IEMOCAP4_LABELS), average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y_true, mapped, labels=list(IEMOCAP4_LABELS), average="weighted"))
    with pytest.warns(UserWarning):
        assert m["uar"] == pytest.approx(balanced_accuracy_score(y_true, mapped))


def test_mer2024_ov_hand_case():
    gold = [{"happy", "worried"}, {"angry"}, {"sad"}]
    pred = [{"happy", "surprise", "sad"}, set(), {"sad"}]
    m = mer2024_ov_metrics(gold, pred)
    # clip 1: acc 1/3, rec 1/2; clip 2: empty prediction -> 0, 0; clip 3: 1, 1
    assert m["set_accuracy"] == pytest.approx((1 / 3 + 0 + 1) / 3)
    assert m["set_recall"] == pytest.approx((1 / 2 + 0 + 1) / 3)
    assert m["score"] == pytest.approx((m["set_accuracy"] + m["set_recall"]) / 2)
    assert m["n_invalid"] == 1.0
    with pytest.raises(ValueError, match="empty gold"):
        mer2024_ov_metrics([set()], [{"happy"}])


def test_emer_metrics_names_and_failures():
    llm = emer_metrics([8.0, 6.0, None], [5.0, 7.0, 9.0], offline=False)
    assert llm["clue_overlap"] == pytest.approx(7.0)
    assert llm["label_overlap"] == pytest.approx(7.0)
    assert (llm["n_judge_failed"], llm["n_invalid"], llm["n_scored_clue_overlap"]) == (1.0, 1.0, 2.0)
    off = emer_metrics([2.0], [3.0], offline=True)
    assert set(off) >= {"clue_overlap_offline", "label_overlap_offline"}
    assert "clue_overlap" not in off and "label_overlap" not in off
    assert math.isnan(emer_metrics([None], [None], offline=False)["clue_overlap"])
    with pytest.raises(ValueError, match="outside"):
        emer_metrics([11.0], [5.0], offline=False)


def test_aggregate_folds_mean_std_and_counts():
    folds = [
        {"uar": 0.5, "war": 0.6, "n": 10.0, "n_invalid": 1.0, "recall_fear": 0.2},
        {"uar": 0.7, "war": 0.8, "n": 12.0, "n_invalid": 0.0},
    ]
    agg = aggregate_folds(folds)
    assert agg["uar"] == pytest.approx(0.6)
    assert agg["uar_std"] == pytest.approx(math.sqrt(0.02))  # sample std of 0.5, 0.7
    assert agg["war"] == pytest.approx(0.7)
    assert (agg["n"], agg["n_invalid"], agg["n_folds"]) == (22.0, 1.0, 2.0)
    assert aggregate_folds([{"n_absent_classes": 1.0}, {"n_absent_classes": 3.0}])["n_absent_classes"] == 3.0
    assert "recall_fear" not in agg  # missing from one fold: not averaged over fewer folds
    with pytest.raises(ValueError):
        aggregate_folds([])
