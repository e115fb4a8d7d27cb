"""One MER-UniBench run: model answers -> extracted labels -> owners' scores -> the AffectGPT table.

`score_unibench_set` takes the prediction records of one set (``name``, ``answer`` and the gold
carried in ``label`` / ``valence``, as `eval_emotion.py` writes them), extracts the labels
(`minigpt4.eval.label_extraction`), writes them in the score-only formats and scores them
(`minigpt4.eval.unibench`). Per set, under ``<out>/``:

    openset.csv      name,openset   -- stage 1, as the LLM wrote it (re-score with `--dataset unibench-*`)
    sentiment.csv    name,sentiment -- stage 2 (sentiment sets)
    gold.csv         the gold in the score-only format
    metrics.json     the scores; with the offline extractor every score is named ``*_offline_lexicon``

`write_unibench_table` writes ``unibench.md`` / ``unibench.json``: the nine sets in the paper's
column order, sets that were not configured listed as skipped.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from minigpt4.common.errors import UserError
from minigpt4.common.io import atomic_write
from minigpt4.data.unibench import UNIBENCH_SETS
from minigpt4.eval.emotion_wheel import EmotionWheels
from minigpt4.eval.label_extraction import LabelExtractor, extract_all
from minigpt4.eval.unibench import hit_rate, ov_gold_string, ov_scores, sentiment_scores, unibench_markdown, unibench_table

OFFLINE_SUFFIX = "_offline_lexicon"
_SCALAR_KEYS = ("main", "fscore", "precision", "recall", "hit_rate", "weighted_f1", "accuracy")


class ExtractionIncomplete(UserError):
    """Some clips have no extracted labels because the LLM kept failing on them."""


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _gold(records: Sequence[Mapping[str, Any]], kind: str, set_name: str) -> dict[str, Any]:
    field = "valence" if kind == "sentiment" else "label"
    missing = [str(r["name"]) for r in records if r.get(field) is None and kind != "ov"]
    if missing:
        raise UserError(f"{set_name}: {len(missing)} prediction record(s) carry no gold {field!r} (first: {missing[:3]})")
    if kind == "sentiment":
        return {str(r["name"]): float(r["valence"]) for r in records}
    if kind == "ov":
        return {str(r["name"]): ov_gold_string(r.get("label") or "") for r in records}
    return {str(r["name"]): str(r["label"]) for r in records}


def _renamed(result: dict[str, Any]) -> dict[str, Any]:
    """Scores of the offline extractor under their own names (never mistaken for the owners')."""
    return {(k + OFFLINE_SUFFIX if k in _SCALAR_KEYS else k): v for k, v in result.items()}


def _json_text(value: Any) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, Mapping):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), indent=2, ensure_ascii=False) + "\n"


def score_unibench_set(set_name: str, records: Sequence[Mapping[str, Any]], extractor: LabelExtractor,
                       wheels: EmotionWheels | None, out_dir: str | Path, concurrency: int = 1) -> dict[str, Any]:
    """Extract, write and score one set's answers (module docstring); returns the metrics dict."""
    if set_name not in UNIBENCH_SETS:
        raise UserError(f"unknown MER-UniBench set {set_name!r}; known: {', '.join(UNIBENCH_SETS)}")
    kind = UNIBENCH_SETS[set_name].kind
    out = Path(out_dir)
    gold = _gold(records, kind, set_name)
    answers = {str(r["name"]): str(r["answer"]) for r in records}
    stage1 = extract_all(answers, extractor.openset, f"{set_name}: labels ({extractor.name})", concurrency)
    atomic_write(out / "openset.csv", _csv_text(("name", "openset"), list(stage1.labels.items())))
    failed = dict(stage1.failed)
    pred: dict[str, str] = stage1.labels
    if kind == "sentiment":
        stage2 = extract_all(stage1.labels, extractor.sentiment, f"{set_name}: sentiment ({extractor.name})", concurrency)
        atomic_write(out / "sentiment.csv", _csv_text(("name", "sentiment"), list(stage2.labels.items())))
        failed.update(stage2.failed)
        pred = stage2.labels
    if failed:
        first = next(iter(failed.items()))
        raise ExtractionIncomplete(
            f"{set_name}: label extraction failed for {len(failed)} clip(s) (first: {first[0]}: {first[1]}); the "
            f"{len(answers) - len(failed)} done are cached -- run again to retry the rest")
    column = {"sentiment": "valence", "ov": "openset", "discrete": "label"}[kind]
    atomic_write(out / "gold.csv", _csv_text(("name", column), list(gold.items())))
    if kind == "sentiment":
        result = sentiment_scores(gold, pred)
    else:
        if wheels is None:
            raise UserError(f"{set_name} is scored through the emotion wheels: configure the emotion_wheel/ folder")
        result = (ov_scores if kind == "ov" else hit_rate)(gold, pred, wheels)
    result = {"set": set_name, "kind": kind, "extractor": extractor.name, "offline_extraction": extractor.offline,
              **(_renamed(result) if extractor.offline else result)}
    atomic_write(out / "metrics.json", _json_text(result))
    return result


def write_unibench_table(results: Mapping[str, Mapping[str, Any] | None], out_dir: str | Path,
                         checkpoint: str | None = None) -> dict[str, Any]:
    """``unibench.md`` + ``unibench.json`` from per-set results (None = not configured -> skipped)."""
    offline = any(r and r.get("offline_extraction") for r in results.values())
    key = "main" + (OFFLINE_SUFFIX if offline else "")
    table = unibench_table({name: (r.get(key) if r else None) for name, r in results.items()})
    table = {"checkpoint": checkpoint, "score": "UniBench" + (OFFLINE_SUFFIX if offline else ""),
             "extractor": sorted({r["extractor"] for r in results.values() if r}), **table}
    title = "# MER-UniBench" + (" -- offline lexicon extraction (NOT comparable with published numbers)" if offline else "")
    lines = [title, "", f"Checkpoint: {checkpoint or '(none)'}; extraction: {', '.join(table['extractor']) or '-'}.", "",
             unibench_markdown(table)]
    out = Path(out_dir)
    atomic_write(out / "unibench.json", _json_text(table))
    atomic_write(out / "unibench.md", "\n".join(lines))
    return table
