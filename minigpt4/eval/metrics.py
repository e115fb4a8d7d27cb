"""Benchmark metrics with the field's exact definitions (docs/metrics.md).

Conventions shared by every function here:

- Predictions are labels or ``None``. ``None`` (an answer naming no label, or an ambiguous
  one) becomes the reserved class `INVALID`, which is never in ``labels=``: it is never
  credited, it lowers the recall of the true class, and it does not create a class of its own
  in any average. The count is reported as ``n_invalid``.
- Results are plain ``dict[str, float]`` including ``n`` (clips) and ``n_invalid``, so they
  serialise to JSON as they are and aggregate across folds with `aggregate_folds`.
- Gold labels outside the label set are an error (a wrong ``--labels`` or dataset name), not
  something to paper over.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

INVALID = "<invalid>"

# Keys that are counts: summed, not averaged, across folds ...
COUNT_KEYS = frozenset({"n", "n_invalid", "n_judge_failed", "n_empty_answers"})
# ... except these, where the worst fold is what matters.
MAX_KEYS = frozenset({"n_absent_classes"})


def _prepare(y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str]) -> tuple[list[str], list[str], int]:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    if not y_true:
        raise ValueError("no clips to score (empty y_true)")
    if INVALID in labels:
        raise ValueError(f"{INVALID!r} is reserved for invalid answers and cannot be a label")
    label_set = set(labels)
    unknown_gold = sorted({t for t in y_true if t not in label_set})
    if unknown_gold:
        raise ValueError(
            f"gold labels {unknown_gold} are not in the label set {list(labels)}; "
            "pass the dataset's full label set (--labels) or fix the dataset name"
        )
    unknown_pred = sorted({p for p in y_pred if p is not None and p not in label_set})
    if unknown_pred:
        raise ValueError(f"predicted labels {unknown_pred} are not in the label set {list(labels)}; parse answers with parse_label first")
    pred = [INVALID if p is None else p for p in y_pred]
    return list(y_true), pred, sum(p is None for p in y_pred)


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy and weighted precision / recall / F1 over `labels` (invalid = always wrong).

    Weighted averages weight each label by its gold support, so labels absent from the gold
    set contribute nothing (sklearn semantics with ``labels=``); ``zero_division=0``.
    """
    true, pred, n_invalid = _prepare(y_true, y_pred, labels)
    kw = dict(labels=list(labels), average="weighted", zero_division=0)
    return {
        "accuracy": float(accuracy_score(true, pred)),
        "weighted_f1": float(f1_score(true, pred, **kw)),
        "weighted_precision": float(precision_score(true, pred, **kw)),
        "weighted_recall": float(recall_score(true, pred, **kw)),
        "n": float(len(true)),
        "n_invalid": float(n_invalid),
    }


def valence_mse(v_true: Sequence[float], v_pred: Sequence[float]) -> float:
    """Mean squared error of valence, in the annotation's own units."""
    if len(v_true) != len(v_pred) or not v_true:
        raise ValueError(f"valence lists must be non-empty and equal in length ({len(v_true)} vs {len(v_pred)})")
    t, p = np.asarray(v_true, dtype=float), np.asarray(v_pred, dtype=float)
    return float(np.mean((t - p) ** 2))


def mer2023_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    labels: Sequence[str],
    valence_true: Sequence[float] | None = None,
    valence_pred: Sequence[float] | None = None,
) -> dict[str, float]:
    """MER2023: weighted F1 (the headline), accuracy, weighted P/R; with valence, the overall.

    ``overall = weighted_f1 - 0.25 * valence_mse`` (MER2023 MULTI / NOISE) is only reported when
    both gold and predicted valence are given for every clip.
    """
    out = classification_metrics(y_true, y_pred, labels)
    if valence_true is not None and valence_pred is not None:
        mse = valence_mse(valence_true, valence_pred)
        out["valence_mse"] = mse
        out["overall"] = out["weighted_f1"] - 0.25 * mse
    return out


def _per_class_recall(true: list[str], pred: list[str], labels: Sequence[str]) -> dict[str, float]:
    present = [lab for lab in labels if lab in set(true)]
    recalls = recall_score(true, pred, labels=present, average=None, zero_division=0)
    return dict(zip(present, (float(r) for r in recalls)))


def dfew_metrics(y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str]) -> dict[str, float]:
    """DFEW: UAR (mean per-class recall) and WAR (overall accuracy), plus per-class recall.

    UAR averages over the classes *present in the gold labels*: a class with no gold clip has
    no defined recall (this equals sklearn's ``balanced_accuracy_score``). Absent classes are
    counted in ``n_absent_classes`` so a fold missing a class is visible; on the standard
    5-fold DFEW splits every fold has all 7 classes and the distinction does not arise.
    """
    true, pred, n_invalid = _prepare(y_true, y_pred, labels)
    per_class = _per_class_recall(true, pred, labels)
    out = {
        "uar": float(np.mean(list(per_class.values()))),
        "war": float(accuracy_score(true, pred)),
        "n": float(len(true)),
        "n_invalid": float(n_invalid),
        "n_absent_classes": float(len(labels) - len(per_class)),
    }
    out.update({f"recall_{lab}": r for lab, r in per_class.items()})
    return out


def iemocap_metrics(y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str]) -> dict[str, float]:
    """IEMOCAP: accuracy (= WA), weighted F1, macro F1 and UAR (= UA).

    Macro F1 and UAR average over the labels present in the gold set, for the same reason as
    DFEW's UAR (an absent class has no defined recall, and F1 = 0 for it would be arbitrary).
    """
    true, pred, n_invalid = _prepare(y_true, y_pred, labels)
    present = [lab for lab in labels if lab in set(true)]
    per_class = _per_class_recall(true, pred, labels)
    return {
        "accuracy": float(accuracy_score(true, pred)),
        "weighted_f1": float(f1_score(true, pred, labels=list(labels), average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(true, pred, labels=present, average="macro", zero_division=0)),
        "uar": float(np.mean(list(per_class.values()))),
        "n": float(len(true)),
        "n_invalid": float(n_invalid),
        "n_absent_classes": float(len(labels) - len(present)),
    }


def mer2024_ov_metrics(gold: Sequence[Iterable[str]], pred: Sequence[Iterable[str]]) -> dict[str, float]:
    """MER2024-OV: per-clip set accuracy |G∩P|/|P| and recall |G∩P|/|G|, averaged over clips.

    Sets must already be synonym-grouped (`parsing.parse_label_set`). An empty prediction has
    accuracy 0 and recall 0 and is counted in ``n_invalid``. ``score = (accuracy + recall) / 2``.
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} clips but pred has {len(pred)}")
    if not gold:
        raise ValueError("no clips to score (empty gold)")
    accs, recs, n_empty = [], [], 0
    for i, (g, p) in enumerate(zip(gold, pred)):
        g, p = set(g), set(p)
        if not g:
            raise ValueError(f"clip {i} has an empty gold label set; fix the annotation")
        hit = len(g & p)
        if not p:
            n_empty += 1
        accs.append(hit / len(p) if p else 0.0)
        recs.append(hit / len(g))
    acc, rec = float(np.mean(accs)), float(np.mean(recs))
    return {
        "set_accuracy": acc,
        "set_recall": rec,
        "score": (acc + rec) / 2,
        "n": float(len(gold)),
        "n_invalid": float(n_empty),
    }


def emer_metrics(clue_scores: Sequence[float | None], label_scores: Sequence[float | None], offline: bool) -> dict[str, float]:
    """EMER: mean Clue Overlap and Label Overlap (1-10) over clips the judge could score.

    ``None`` means the judge's reply had no usable score; such clips are excluded from the
    mean (the judge failed, not the model) and counted in ``n_judge_failed``. Offline-judge
    results get names ending in ``_offline``: they are a different metric and must never be
    compared with the published LLM-judge numbers.
    """
    if len(clue_scores) != len(label_scores):
        raise ValueError(f"{len(clue_scores)} clue scores but {len(label_scores)} label scores")
    if not clue_scores:
        raise ValueError("no clips to score (empty EMER scores)")
    suffix = "_offline" if offline else ""
    out: dict[str, float] = {"n": float(len(clue_scores))}
    failed = 0
    clip_failed = [c is None or lab is None for c, lab in zip(clue_scores, label_scores)]
    for name, scores in (("clue_overlap", clue_scores), ("label_overlap", label_scores)):
        valid = [float(s) for s in scores if s is not None]
        for s in valid:
            if not 1.0 <= s <= 10.0:
                raise ValueError(f"{name} score {s} outside 1-10")
        failed += len(scores) - len(valid)
        out[name + suffix] = float(np.mean(valid)) if valid else math.nan
        out[f"n_scored_{name}"] = float(len(valid))
    out["n_judge_failed"] = float(failed)  # failed scores, clue and label together
    out["n_invalid"] = float(sum(clip_failed))  # clips with at least one failed score
    return out


def aggregate_folds(fold_metrics: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean over folds (the reported number) and ``<key>_std`` (sample std, ddof=1).

    Counts (``n``, ``n_invalid`` ...) are summed instead, and ``n_absent_classes`` is the
    largest over folds. Only keys present in every fold are
    aggregated, so a per-class recall missing from one fold cannot be averaged over fewer folds
    by accident.
    """
    if not fold_metrics:
        raise ValueError("aggregate_folds needs at least one fold")
    keys = [k for k in fold_metrics[0] if all(k in m for m in fold_metrics)]
    out: dict[str, float] = {"n_folds": float(len(fold_metrics))}
    for key in keys:
        values = np.asarray([float(m[key]) for m in fold_metrics])
        if key in MAX_KEYS:
            out[key] = float(values.max())
        elif key in COUNT_KEYS or key.startswith("n_scored"):
            out[key] = float(values.sum())
        else:
            out[key] = float(values.mean())
            out[key + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out
