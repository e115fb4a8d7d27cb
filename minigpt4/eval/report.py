"""Files an evaluation leaves behind: predictions JSONL, metrics JSON, markdown, confusion PNG.

Predictions JSONL schema, one object per clip (keys beyond these are kept and ignored):

=============  ===========================  ==============================================
key            type                         meaning
=============  ===========================  ==============================================
name           str (required)               clip name, e.g. ``sample_00000001``
answer         str (required)               the model's raw generated text
task           str                          ``emotion`` / ``reason`` / ...
instruction    str                          the instruction (or full prompt) used
parsed         str | list[str] | null       parse at generation time (informational:
                                            scoring always re-parses ``answer``)
label          str | list[str] | null       gold label; a list for MER2024-OV
reference      str                          EMER: the reference explanation
valence        float                        gold valence (MER2023 MULTI / NOISE)
valence_pred   float                        predicted valence
fold           int                          cross-validation fold (DFEW, IEMOCAP)
=============  ===========================  ==============================================

The PNG is drawn on a bare matplotlib ``Figure`` with the Agg canvas, so importing this module
never changes the caller's pyplot backend.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from minigpt4.common.errors import UserError
from minigpt4.common.io import atomic_write
from minigpt4.eval.metrics import INVALID

REQUIRED_KEYS = ("name", "answer")
INVALID_COLUMN = "invalid"


class PredictionsFileError(UserError):
    """A predictions file that cannot be scored; the message names the file and line."""


def prediction_record(
    name: str,
    answer: str,
    *,
    task: str = "emotion",
    instruction: str = "",
    label: str | list[str] | None = None,
    parsed: str | list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One predictions-JSONL object in the documented key order; `extra` adds ``valence``,
    ``valence_pred``, ``fold``, ``reference`` (``None`` values are left out)."""
    unknown = set(extra) - {"valence", "valence_pred", "fold", "reference"}
    if unknown:
        raise ValueError(f"unknown prediction keys {sorted(unknown)}; allowed extras: valence, valence_pred, fold, reference")
    rec: dict[str, Any] = {"name": str(name), "task": task, "instruction": instruction, "answer": answer,
                           "parsed": parsed, "label": label}
    rec.update({k: v for k, v in extra.items() if v is not None})
    return rec


def write_predictions(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """One JSON object per line, UTF-8, keys in the order given."""
    def write(fh) -> None:
        for rec in records:
            fh.write((json.dumps(dict(rec), ensure_ascii=False) + "\n").encode("utf-8"))

    return atomic_write(path, write)


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Records of a predictions JSONL; blank lines are skipped, anything malformed is an error."""
    path = Path(path)
    if not path.is_file():
        raise PredictionsFileError(f"{path}: no such predictions file (write one with eval_emotion.py or report.write_predictions)")
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise PredictionsFileError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno}); fix or delete the line") from None
            if not isinstance(rec, dict):
                raise PredictionsFileError(f"{path}:{lineno}: expected a JSON object per line, got {type(rec).__name__}")
            missing = [k for k in REQUIRED_KEYS if k not in rec]
            if missing:
                raise PredictionsFileError(f"{path}:{lineno}: missing required key(s) {missing}; every line needs {list(REQUIRED_KEYS)}")
            if not isinstance(rec["answer"], str):
                raise PredictionsFileError(f"{path}:{lineno}: 'answer' must be a string, got {type(rec['answer']).__name__}")
            name = str(rec["name"])
            key = f"{name}\0{rec.get('task', '')}\0{rec.get('fold', '')}"
            if key in seen:
                raise PredictionsFileError(f"{path}:{lineno}: clip {name!r} repeats line {seen[key]} (same task and fold); remove the duplicate")
            seen[key] = lineno
            records.append(rec)
    if not records:
        raise PredictionsFileError(f"{path}: contains no predictions")
    return records


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; null means "not computable"
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_metrics_json(result: Mapping[str, Any], path: str | Path) -> Path:
    return atomic_write(path, json.dumps(_json_safe(result), indent=2, ensure_ascii=False) + "\n")


def _fmt(key: str, value: Any) -> str:
    """Counts (``n``, ``n_*``) as integers, scores with 4 decimals, NaN as ``n/a``."""
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return "n/a"
        return str(int(value)) if key == "n" or key.startswith("n_") else f"{value:.4f}"
    return str(value)


def markdown_summary(result: Mapping[str, Any]) -> str:
    """A markdown table of `result["metrics"]` (and per-fold rows when there are folds)."""
    metrics: Mapping[str, float] = result["metrics"]
    lines = [f"## {result.get('dataset', 'evaluation')}", ""]
    for key in ("source", "judge", "labels", "grouping"):
        if result.get(key):
            value = result[key]
            lines.append(f"- {key}: {', '.join(value) if isinstance(value, list) else value}")
    if result.get("note"):
        lines.append(f"- note: {result['note']}")
    if result.get("parse_note"):
        lines.append(f"- parses: {result['parse_note']}")
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(k, v)} |" for k, v in metrics.items()]
    folds: Mapping[str, Mapping[str, float]] = result.get("folds") or {}
    if folds:
        cols = [k for k in next(iter(folds.values())) if not k.startswith("recall_")]
        lines += ["", "| fold | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for fold, m in folds.items():
            lines.append(f"| {fold} | " + " | ".join(_fmt(c, m.get(c, math.nan)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(result: Mapping[str, Any], path: str | Path) -> Path:
    return atomic_write(path, markdown_summary(result))


def confusion_counts(y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str]) -> np.ndarray:
    """Counts, rows = true label, columns = `labels` then one ``invalid`` column."""
    col = {lab: i for i, lab in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels) + 1), dtype=int)
    for t, p in zip(y_true, y_pred, strict=True):
        counts[col[t], len(labels) if p is None or p == INVALID else col[p]] += 1
    return counts


def plot_confusion_matrix(counts: Sequence[Sequence[int]] | np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix PNG with counts annotated; an ``invalid`` column at the right.

    `counts` is `confusion_counts` output: len(labels) rows, len(labels) + 1 columns.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(counts, dtype=int)
    if counts.shape != (len(labels), len(labels) + 1):
        raise ValueError(f"confusion counts of shape {counts.shape} do not fit {len(labels)} labels (+1 invalid column)")
    support = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, support, out=np.zeros(counts.shape, dtype=float), where=support > 0)
    cols = list(labels) + [INVALID_COLUMN]
    size = 1.0 + 0.75 * len(cols)
    fig = Figure(figsize=(size + 1.5, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), [f"{lab} (n={int(n)})" for lab, n in zip(labels, support[:, 0])])
    ax.axvline(len(labels) - 0.5, color="grey", linestyle="--", linewidth=1)  # invalid column apart
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, f"{counts[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=7, color=colour)
    fig.tight_layout()
    return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120))
