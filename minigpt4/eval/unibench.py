"""MER-UniBench metrics as AffectGPT's owners compute them (docs/metrics.md, "MER-UniBench").

Inputs are label strings as the extraction LLM writes them (``[anxious, tense]``), read with the
owners' `string_to_list`; words are lower-stripped and mapped to level-1 clusters on each of the
five emotion wheels (`minigpt4.eval.emotion_wheel`). All results are plain dicts of floats.

- `ov_scores` (OV-MERD+, MER2025/2026 fine-grained tracks): per wheel, skip samples whose gold
  maps to nothing; an empty mapped prediction scores precision = recall = 0; P_w, R_w are means
  over the kept samples and F_w = 2 P_w R_w / (P_w + R_w). ``fscore`` (the main score) is the
  mean of the five F_w; ``precision`` / ``recall`` are the means of P_w / R_w. A wheel without a
  kept sample gives NaN, as theirs does. ``fscore_of_mean_pr`` is an ALTERNATIVE (F of the mean
  P and R), reported beside, never the main score.
- `hit_rate` (MER2023/24, MELD, IEMOCAP): per wheel, skip samples whose gold maps to nothing;
  hit = |P ∩ G|; the main score is the mean over wheels of the mean hit. Listing many words
  is not penalised.
- `sentiment_scores` (CMU-MOSI/MOSEI, SIMS, SIMSv2): the stage-2 word counts 1 / -1 / 0 by exact,
  case-sensitive match (anything else 0); samples with gold valence 0 are dropped; weighted F1
  and accuracy of gold > 0 vs prediction > 0. ``*_casefold`` is an ALTERNATIVE that first
  lower-strips the word.
- `unibench_table`: the nine main scores x100 in the AffectGPT table order and their plain mean.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from minigpt4.common.errors import UserError
from minigpt4.eval.emotion_wheel import WHEEL_NAMES, EmotionWheels
from minigpt4.eval.owner_lists import string_to_list

SENTIMENT_VALUES = {"positive": 1, "negative": -1, "neutral": 0}

# The AffectGPT table (MER-UniBench), in its column order: key, header, kind.
UNIBENCH_SETS: tuple[tuple[str, str, str], ...] = (
    ("mer2023", "MER2023", "discrete"),
    ("mer2024", "MER2024", "discrete"),
    ("meld", "MELD", "discrete"),
    ("iemocap4", "IEMOCAPFour", "discrete"),
    ("cmumosi", "CMUMOSI", "sentiment"),
    ("cmumosei", "CMUMOSEI", "sentiment"),
    ("sims", "SIMS", "sentiment"),
    ("simsv2", "SIMSv2", "sentiment"),
    ("ovmerdplus", "OVMERDPlus", "ov"),
)


class UnibenchInputError(UserError):
    """Gold and predictions that cannot be scored together (missing clips, bad values)."""


def _mean(values: Sequence[float]) -> float:
    """numpy's mean: NaN for no values, as the owners' ``np.mean([])``."""
    return float(np.mean(values)) if len(values) else math.nan


def _fscore(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if (p + r) and not (math.isnan(p) or math.isnan(r)) else math.nan


def _words(label_string: Any) -> list[str]:
    return [w.lower().strip() for w in string_to_list(label_string)]


def _check_names(gold: Mapping[str, Any], pred: Mapping[str, Any], what: str) -> None:
    missing = [name for name in gold if name not in pred]
    if missing:
        raise UnibenchInputError(
            f"{what}: no prediction for {len(missing)} of {len(gold)} gold clip(s) (first: {missing[:3]}); "
            "predict every clip of the gold file (or score a gold file of the clips you predicted)")


def ov_gold_string(openset: Any) -> str:
    """An OV gold cell as the owners read it: its words joined by ", ", or ``neutral`` if empty."""
    words = string_to_list(openset)
    return ", ".join(words or ["neutral"])


def ov_scores(gold: Mapping[str, Any], pred: Mapping[str, Any], wheels: EmotionWheels,
              rule: str = "owners") -> dict[str, Any]:
    """Open-vocabulary precision / recall / F over the five wheels (module docstring)."""
    _check_names(gold, pred, "open-vocabulary scoring")
    per_wheel: dict[str, dict[str, float]] = {}
    for wheel in WHEEL_NAMES:
        precision, recall = [], []
        for name, gold_labels in gold.items():
            g = wheels.map_words(_words(gold_labels), wheel, rule)
            p = wheels.map_words(_words(pred[name]), wheel, rule)
            if not g:
                continue
            hit = len(g & p)
            precision.append(hit / len(p) if p else 0.0)
            recall.append(hit / len(g) if p else 0.0)
        p_w, r_w = _mean(precision), _mean(recall)
        per_wheel[wheel] = {"precision": p_w, "recall": r_w, "fscore": _fscore(p_w, r_w), "n_kept": float(len(precision))}
    p_mean = _mean([v["precision"] for v in per_wheel.values()])
    r_mean = _mean([v["recall"] for v in per_wheel.values()])
    fscore = _mean([v["fscore"] for v in per_wheel.values()])
    return {
        "main": fscore, "fscore": fscore, "precision": p_mean, "recall": r_mean,
        "per_wheel": per_wheel, "n_samples": float(len(gold)),
        "alternatives": {"fscore_of_mean_pr": _fscore(p_mean, r_mean)},
    }


def hit_rate(gold: Mapping[str, Any], pred: Mapping[str, Any], wheels: EmotionWheels,
             rule: str = "owners") -> dict[str, Any]:
    """Discrete-set hit rate over the five wheels (module docstring); `gold` holds label words."""
    _check_names(gold, pred, "hit-rate scoring")
    per_wheel: dict[str, dict[str, float]] = {}
    for wheel in WHEEL_NAMES:
        hits = []
        for name, gold_label in gold.items():
            g = wheels.map_words(_words(gold_label), wheel, rule)
            if not g:
                continue
            hits.append(float(len(wheels.map_words(_words(pred[name]), wheel, rule) & g)))
        per_wheel[wheel] = {"hit_rate": _mean(hits), "n_kept": float(len(hits))}
    main = _mean([v["hit_rate"] for v in per_wheel.values()])
    return {"main": main, "hit_rate": main, "per_wheel": per_wheel, "n_samples": float(len(gold))}


def sentiment_value(word: Any, casefold: bool = False) -> int:
    """The owners' stage-2 word -> 1 / -1 / 0 (exact match; `casefold` is the alternative)."""
    if not isinstance(word, str):
        return 0
    return SENTIMENT_VALUES.get(word.lower().strip() if casefold else word, 0)


def _binary_scores(y_true: list[bool], y_pred: list[bool]) -> tuple[float, float]:
    if not y_true:
        return math.nan, math.nan
    return float(f1_score(y_true, y_pred, average="weighted")), float(accuracy_score(y_true, y_pred))


def sentiment_scores(gold: Mapping[str, float], pred: Mapping[str, Any]) -> dict[str, Any]:
    """Weighted F1 / accuracy of positive vs not positive; gold valence 0 dropped (module docstring)."""
    _check_names(gold, pred, "sentiment scoring")
    kept = [name for name, valence in gold.items() if float(valence) != 0]
    y_true = [float(gold[name]) > 0 for name in kept]
    f1, acc = _binary_scores(y_true, [sentiment_value(pred[name]) > 0 for name in kept])
    f1_cf, acc_cf = _binary_scores(y_true, [sentiment_value(pred[name], casefold=True) > 0 for name in kept])
    n_invalid = sum(sentiment_value(pred[name]) == 0 and pred[name] != "neutral" for name in kept)
    return {
        "main": f1, "weighted_f1": f1, "accuracy": acc,
        "n_samples": float(len(gold)), "n_kept": float(len(kept)), "n_not_a_sentiment_word": float(n_invalid),
        "alternatives": {"weighted_f1_casefold": f1_cf, "accuracy_casefold": acc_cf},
    }


def unibench_table(main_scores: Mapping[str, float | None]) -> dict[str, Any]:
    """The AffectGPT table row: each set's main score x100 (None = not run) and the mean.

    ``mean`` is the owners' plain mean of the nine and exists only when all nine were scored;
    otherwise ``mean_of_scored`` (a different number, named so) averages the sets that were.
    """
    unknown = sorted(set(main_scores) - {key for key, _, _ in UNIBENCH_SETS})
    if unknown:
        raise UserError(f"unknown MER-UniBench set(s) {unknown}; known: {', '.join(k for k, _, _ in UNIBENCH_SETS)}")
    row = {header: (None if main_scores.get(key) is None else round(100 * float(main_scores[key]), 2))
           for key, header, _ in UNIBENCH_SETS}
    scored = [100 * float(main_scores[key]) for key, _, _ in UNIBENCH_SETS if main_scores.get(key) is not None]
    table: dict[str, Any] = {"scores": row, "skipped": [h for h, v in row.items() if v is None]}
    if len(scored) == len(UNIBENCH_SETS):
        table["mean"] = round(float(np.mean(scored)), 2)
    else:
        table["mean"] = None
        table["mean_of_scored"] = round(float(np.mean(scored)), 2) if scored else None
    return table


def unibench_markdown(table: Mapping[str, Any]) -> str:
    """The table in the AffectGPT paper's layout: one column per set, then Mean."""
    headers = [header for _, header, _ in UNIBENCH_SETS] + ["Mean"]
    cells = ["-" if table["scores"][h] is None else f"{table['scores'][h]:.2f}" for h in headers[:-1]]
    cells.append(f"{table['mean']:.2f}" if table.get("mean") is not None else "-")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers), "| " + " | ".join(cells) + " |"]
    if table.get("skipped"):
        lines.append("")
        lines.append(f"Skipped (not configured): {', '.join(table['skipped'])}. "
                     + (f"Mean of the scored sets (not the UniBench mean): {table['mean_of_scored']:.2f}."
                        if table.get("mean_of_scored") is not None else ""))
    return "\n".join(lines) + "\n"
