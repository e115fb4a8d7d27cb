"""Score a predictions file per benchmark, and the score-only CLI.

    python -m minigpt4.eval.scoring --score predictions.jsonl --dataset mer2023 [--out DIR]

recomputes every metric from the raw answers (always re-parsing them, so a parsing fix applies
to old runs) without loading a model, and writes ``metrics.json``, ``summary.md`` and, for
classification benchmarks, ``confusion.png`` into ``--out`` (default: ``<stem>_scores/`` next
to the predictions file). ``eval_emotion.py --score`` calls `score_main`.

Datasets: ``mer2023`` (weighted F1; overall with valence), ``dfew`` (UAR / WAR, per fold and
averaged when records carry ``fold``), ``iemocap`` (accuracy, weighted / macro F1, UAR; folds
as DFEW), ``mer2024_ov`` (set accuracy / recall), ``emer`` (judge scores; needs ``reference``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from minigpt4.data.labels import LABEL_SETS, SET_MERGES
from minigpt4.eval import metrics as M
from minigpt4.eval import openset
from minigpt4.eval.judge import Judge, JudgeConfig, JudgeError, make_judge
from minigpt4.eval.owner_lists import string_to_list
from minigpt4.eval.parsing import (
    EMOTION_SYNONYMS, PARSES, check_parse, parse_label, parse_label_set, parse_release, release_gold,
)
from minigpt4.eval.report import (
    PredictionsFileError,
    confusion_counts,
    markdown_summary,
    plot_confusion_matrix,
    read_predictions,
    write_markdown,
    write_metrics_json,
)
from minigpt4.eval.emotion_wheel import MAPPING_RULES
from minigpt4.eval.unibench_files import UNIBENCH_DATASETS, unibench_score_main

# Default label sets (minigpt4.data.labels). IEMOCAP has 4/6/9-class variants, so its labels
# come from --labels (a set name like ``iemocap4`` or a list) or from the gold labels present.
DEFAULT_LABELS: Mapping[str, tuple[str, ...]] = {"mer2023": LABEL_SETS["mer2023"], "dfew": LABEL_SETS["dfew"]}
DATASETS = ("mer2023", "dfew", "iemocap", "mer2024_ov", "emer")
_FOLDED = {"dfew": M.dfew_metrics, "iemocap": M.iemocap_metrics}
EMER_EMPTY_ANSWER_SCORE = 1.0
RELEASE_SUFFIX = "_release_parse"  # metric names of the release's answer parse


def _require(records: Sequence[Mapping[str, Any]], key: str, dataset: str) -> None:
    missing = [str(r.get("name")) for r in records if r.get(key) is None]
    if missing:
        raise ValueError(f"{dataset}: {len(missing)} record(s) have no {key!r} (first: {missing[:3]}); every record needs one")


def _select_task(records: Sequence[Mapping[str, Any]], task: str | None) -> list[Mapping[str, Any]]:
    """Records of one task; several tasks in one file would score clips twice, so that is an error."""
    tasks = sorted({str(r.get("task", "")) for r in records})
    if task is not None:
        chosen = [r for r in records if str(r.get("task", "")) == task]
        if not chosen:
            raise ValueError(f"no records with task {task!r}; tasks in the file: {tasks}")
        return chosen
    if len(tasks) > 1:
        raise ValueError(f"predictions mix tasks {tasks}; choose one with task=... (CLI: --task)")
    return list(records)


def _labels_for(
    dataset: str, records: Sequence[Mapping[str, Any]], labels: str | Sequence[str] | None
) -> tuple[list[str], dict[str, str]]:
    """Label list and answer synonyms; a set name (``iemocap4``) brings its merges (excited -> happy)."""
    synonyms = dict(EMOTION_SYNONYMS)
    if isinstance(labels, str):
        if labels not in LABEL_SETS:
            raise ValueError(f"unknown label set {labels!r}; known: {', '.join(LABEL_SETS)} (or pass a list of labels)")
        merges = SET_MERGES.get(labels, {})
        synonyms = {word: merges.get(target, target) for word, target in synonyms.items()} | merges
        return list(LABEL_SETS[labels]), synonyms
    if labels:
        return list(labels), synonyms
    if dataset in DEFAULT_LABELS:
        return list(DEFAULT_LABELS[dataset]), synonyms
    _require(records, "label", dataset)
    return sorted({str(r["label"]) for r in records}), synonyms


def _classification(
    dataset: str, records: Sequence[Mapping[str, Any]], labels: list[str], synonyms: Mapping[str, str],
    parse: str = "both",
    grouping: str | Path | None = None,
    group_with_llm: bool = False,
    grouping_out: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics of the strict parse (unsuffixed names) and/or the release parse (``*_release_parse``)."""
    _require(records, "label", dataset)
    y_true = [str(r["label"]) for r in records]
    # suffix -> (gold, predictions): the release also normalised its gold captions
    parsed: dict[str, tuple[list[str], list[str | None]]] = {}
    if parse in ("strict", "both"):
        parsed[""] = (y_true, [parse_label(r["answer"], labels, synonyms) for r in records])
    if parse in ("release", "both"):
        parsed[RELEASE_SUFFIX] = ([release_gold(t) for t in y_true], [parse_release(r["answer"], labels) for r in records])
    result: dict[str, Any] = {"labels": labels, "parse": parse}
    for suffix, (gold, y_pred) in parsed.items():
        part = _classification_metrics(dataset, records, gold, y_pred, labels)
        for key in ("metrics", "pooled"):
            if key in part:
                result.setdefault(key, {}).update({k + suffix: v for k, v in part[key].items() if not (suffix and k == "n")})
        for fold, values in part.get("folds", {}).items():
            result.setdefault("folds", {}).setdefault(fold, {}).update({k + suffix: v for k, v in values.items()})
        if "note" in part:
            result["note"] = part["note"]
        if "confusion" not in result:  # the strict parse's when it is scored
            result["invalid"] = [str(r["name"]) for r, p in zip(records, y_pred) if p is None]
            result["confusion"] = {"labels": labels, "counts": confusion_counts(gold, y_pred, labels).tolist()}
    if parse == "both":
        result["parse_note"] = (
            "unsuffixed metrics: strict parse (an answer naming no single label is invalid); *_release_parse: "
            "the release's parse (cleaned answer's last word, a non-label counts as neutral; gold through the "
            "release's caption normaliser), to compare with published numbers"
        )
    return result


def _classification_metrics(
    dataset: str, records: Sequence[Mapping[str, Any]], y_true: list[str], y_pred: list[str | None], labels: list[str]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if dataset == "mer2023":
        has_true = [r.get("valence") is not None for r in records]
        has_pred = [r.get("valence_pred") is not None for r in records]
        if all(has_true) and all(has_pred):
            result["metrics"] = M.mer2023_metrics(
                y_true, y_pred, labels, [float(r["valence"]) for r in records], [float(r["valence_pred"]) for r in records]
            )
        else:
            if any(has_pred):
                raise ValueError(
                    f"mer2023: valence_pred on {sum(has_pred)} of {len(records)} records; the overall score "
                    "needs gold and predicted valence on every record"
                )
            result["metrics"] = M.mer2023_metrics(y_true, y_pred, labels)
            if any(has_true):
                result["note"] = "overall (F1 - 0.25 x valence MSE) not computed: no valence_pred in the predictions"
    else:
        metric_fn = _FOLDED[dataset]
        has_fold = [r.get("fold") is not None for r in records]
        if any(has_fold) and not all(has_fold):
            raise ValueError(f"{dataset}: {has_fold.count(False)} record(s) lack 'fold' while others have it")
        if all(has_fold):
            folds: dict[str, dict[str, float]] = {}
            for fold in sorted({r["fold"] for r in records}, key=str):
                idx = [i for i, r in enumerate(records) if r["fold"] == fold]
                folds[str(fold)] = metric_fn([y_true[i] for i in idx], [y_pred[i] for i in idx], labels)
            result["folds"] = folds
            result["metrics"] = M.aggregate_folds(list(folds.values()))
            result["pooled"] = metric_fn(y_true, y_pred, labels)
            result["note"] = "metrics = mean over folds (the standard protocol); 'pooled' = all clips at once"
        else:
            result["metrics"] = metric_fn(y_true, y_pred, labels)
    return result


def _is_list_string(value: Any) -> bool:
    """``[happy, surprised]``: a label list written as text, read with the owners' list rule."""
    return isinstance(value, str) and value.strip().startswith("[") and value.strip().endswith("]")


def _open_items(value: Any) -> Any:
    """A list-shaped string -> its items by the owners' `string_to_list`; anything else unchanged."""
    return string_to_list(value.strip()) if _is_list_string(value) else value


def _open_words(value: Any) -> list[str]:
    """The raw open-set words of an answer or gold label: a word list or a list-shaped string by the
    owners' rule (lower-cased, nothing removed), other free text split into items by `parse_label_set`."""
    if isinstance(value, str) and not _is_list_string(value):
        return sorted(parse_label_set(value, {}))
    return string_to_list([str(w).strip() for w in _open_items(value) if str(w).strip()])


def _mer2024_ov(
    records: Sequence[Mapping[str, Any]], vocabulary: Mapping[str, str] | None,
    grouping: str | Path | None = None, grouping_judge: Any = None, grouping_out: str | Path | None = None,
) -> dict[str, Any]:
    """``*_offline``: our fixed synonym table, always. ``set_accuracy / set_recall / score``: the
    owners' rule (`minigpt4.eval.openset`), only with a per-clip grouping -- a folder, or an LLM."""
    _require(records, "label", "mer2024_ov")
    gold = [parse_label_set(_open_items(r["label"]), vocabulary) for r in records]
    pred = [parse_label_set(_open_items(r["answer"]), vocabulary) for r in records]
    offline = M.mer2024_ov_metrics(gold, pred)
    metrics = {k if k.startswith("n") else f"{k}_offline": v for k, v in offline.items()}
    result: dict[str, Any] = {"invalid": [str(r["name"]) for r, p in zip(records, pred) if not p]}
    if grouping is None and grouping_judge is None:
        result["note"] = ("score_offline groups synonyms with a fixed table and is NOT the official MER2024-OV score; "
                          "for `score` give the per-clip grouping folder (--grouping DIR) or an LLM (--group-with-llm)")
    else:
        gold_words = {str(r["name"]): _open_words(r["label"]) for r in records}
        pred_words = {str(r["name"]): _open_words(r["answer"]) for r in records}
        if grouping is not None:
            groupings = openset.read_grouping_folder(grouping, gold_words)
            result["grouping"] = str(grouping)
        else:
            groupings = openset.group_with_llm(gold_words, pred_words, grouping_judge, grouping_out or "grouping")
            result["grouping"] = f"{grouping_out or 'grouping'} (LLM: {grouping_judge.name})"
        metrics.update(openset.openset_metrics(gold_words, pred_words, groupings))
    result["metrics"] = metrics
    return result


def _emer(records: Sequence[Mapping[str, Any]], judge: Judge) -> dict[str, Any]:
    _require(records, "reference", "emer")
    from tqdm import tqdm

    clue: list[float | None] = []
    label: list[float | None] = []
    n_empty = 0
    for r in tqdm(records, desc=f"EMER judge ({judge.name})", disable=None):
        answer, reference = r["answer"], str(r["reference"])
        if not answer.strip():  # nothing to judge: the minimum score, no judge call
            n_empty += 1
            clue.append(EMER_EMPTY_ANSWER_SCORE)
            label.append(EMER_EMPTY_ANSWER_SCORE)
            continue
        clue.append(judge.score("clue_overlap", answer, reference))
        label.append(judge.score("label_overlap", answer, reference))
    metrics = M.emer_metrics(clue, label, offline=judge.offline)
    metrics["n_empty_answers"] = float(n_empty)
    kind = "offline lexical judge: NOT comparable with published LLM-judge EMER numbers" if judge.offline else "LLM judge"
    return {
        "judge": f"{judge.name} ({kind})",
        "metrics": metrics,
        "invalid": [str(r["name"]) for r, c, lab in zip(records, clue, label) if c is None or lab is None],
        "per_clip": [{"name": str(r["name"]), "clue_overlap": c, "label_overlap": lab} for r, c, lab in zip(records, clue, label)],
    }


def score_predictions(
    records: Sequence[Mapping[str, Any]],
    dataset: str,
    labels: str | Sequence[str] | None = None,
    judge_cfg: JudgeConfig | Mapping | None = None,
    *,
    task: str | None = None,
    judge: Judge | None = None,
    vocabulary: Mapping[str, str] | None = None,
    parse: str = "both",
    grouping: str | Path | None = None,
    group_with_llm: bool = False,
    grouping_out: str | Path | None = None,
) -> dict[str, Any]:
    """All metrics of `dataset` for prediction records (schema: `minigpt4.eval.report`).

    Returns ``{"dataset", "n_records", "metrics": {name: float}, "invalid": [clip names], ...}``
    plus ``labels`` / ``confusion`` (classification), ``folds`` / ``pooled`` (folded DFEW /
    IEMOCAP), ``judge`` / ``per_clip`` (EMER). `judge` overrides `judge_cfg` (tests, reuse);
    `labels` is a list or a set name of `minigpt4.data.labels.LABEL_SETS` (``iemocap4`` also
    folds ``excited`` answers into ``happy``). `vocabulary` overrides the MER2024-OV groups.
    """
    dataset = dataset.lower().replace("-", "_")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    check_parse(parse)
    records = _select_task(records, task)
    if not records:
        raise ValueError("no prediction records to score")
    if dataset in ("mer2023", "dfew", "iemocap"):
        result = _classification(dataset, records, *_labels_for(dataset, records, labels), parse=parse)
    elif dataset == "mer2024_ov":
        llm = (judge if judge is not None else make_judge(judge_cfg)) if group_with_llm else None
        if llm is not None and llm.offline:
            raise ValueError("--group-with-llm needs an LLM (--judge llm with --judge-url / --judge-model)")
        result = _mer2024_ov(records, vocabulary, grouping, llm, grouping_out)
    else:
        result = _emer(records, judge if judge is not None else make_judge(judge_cfg))
    return {"dataset": dataset, "n_records": len(records), **result}


def write_score_outputs(result: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """``metrics.json``, ``summary.md`` and (classification) ``confusion.png`` in `out_dir`."""
    out_dir = Path(out_dir)
    paths = {
        "metrics": write_metrics_json(result, out_dir / "metrics.json"),
        "summary": write_markdown(result, out_dir / "summary.md"),
    }
    if "confusion" in result:
        conf = result["confusion"]
        paths["confusion"] = plot_confusion_matrix(conf["counts"], conf["labels"], out_dir / "confusion.png", title=result["dataset"])
    return paths


class _OneLineErrorParser(argparse.ArgumentParser):
    """A bad argument (an unknown --dataset, say) is one ``error:`` line and exit 2, like every user error."""

    def error(self, message: str):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineErrorParser(
        prog="python -m minigpt4.eval.scoring",
        description="Recompute benchmark metrics from a predictions JSONL, without a model.",
    )
    p.add_argument("--score", required=True, metavar="PREDICTIONS.jsonl", help="predictions file to score")
    p.add_argument("--dataset", required=True, choices=DATASETS + UNIBENCH_DATASETS,
                   help="unibench-*: MER-UniBench as AffectGPT scores it, from extracted labels (--gold, --wheels)")
    p.add_argument("--out", help="output folder (default: <stem>_scores next to the predictions file)")
    p.add_argument("--labels", help="label set name (mer2023, dfew, iemocap4, ...) or comma-separated labels (default: the dataset's; IEMOCAP: gold labels present)")
    p.add_argument("--task", help="score only records of this task (needed when a file mixes tasks)")
    p.add_argument("--parse", default="both", help=f"classification answer parse: {', '.join(PARSES)} (default both; "
                   "release = the released script's last-word rule, metrics named *_release_parse)")
    p.add_argument("--gold", help="mer2024_ov with a predictions CSV: the ground-truth `name, openset` CSV; "
                   "unibench-*: the gold CSV (name,openset | name,label | name,valence) or the owners' label*.npz")
    p.add_argument("--wheels", help="unibench-ov / unibench-discrete: AffectGPT's emotion_wheel/ folder "
                   "(format.csv, synonym.xlsx, wheel1..5.xlsx)")
    p.add_argument("--word-mapping", default="owners", choices=MAPPING_RULES,
                   help="unibench-*: word -> wheel cluster rule; owners (default, comparable with published numbers) "
                   "or any_synonym (an alternative: the most common cluster of all synonyms)")
    p.add_argument("--grouping", help="mer2024_ov: folder of per-clip synonym groupings <name>.npy (MERTools format) -> official `score`")
    p.add_argument("--group-with-llm", action="store_true",
                   help="mer2024_ov: group each clip's words with the LLM at --judge-url/--judge-model (cached; written to <out>/grouping)")
    p.add_argument("--judge", choices=("llm", "offline"), default="llm", help="EMER judge (offline = a different, lexical metric)")
    p.add_argument("--judge-url", default="", help="OpenAI-compatible base URL (default: $EMER_JUDGE_URL)")
    p.add_argument("--judge-model", default="", help="judge model name (default: $EMER_JUDGE_MODEL)")
    p.add_argument("--judge-cache", default="", help="judge reply cache JSONL (default: <out>/emer_judge_cache.jsonl)")
    return p


def _openset_csv_records(pred_path: Path, gold_path: str | None) -> list[dict[str, Any]]:
    """Records from MERTools `name, openset` CSVs (predictions and --gold): one per gold clip."""
    if not gold_path:
        raise ValueError(f"{pred_path} is a CSV: give the ground-truth `name, openset` CSV with --gold")
    gold, pred = openset.read_openset_csv(gold_path), openset.read_openset_csv(pred_path)
    missing = [name for name in gold if name not in pred]
    if missing:
        raise ValueError(f"{pred_path}: no prediction for {len(missing)} clip(s) of {gold_path} (first: {missing[:3]})")
    return [{"name": name, "task": "emotion", "answer": pred[name], "label": words} for name, words in gold.items()]


def score_main(argv: Sequence[str] | None = None, print_fn: Callable[[str], None] = print) -> int:
    """CLI body: returns 0 on success, 2 with a one-line ``error:`` message on bad input."""
    args = build_parser().parse_args(argv)
    if args.dataset in UNIBENCH_DATASETS:
        return unibench_score_main(args.dataset, args.gold, args.score, args.wheels, args.word_mapping, print_fn=print_fn)
    pred_path = Path(args.score)
    out_dir = Path(args.out) if args.out else pred_path.with_name(pred_path.stem + "_scores")
    labels: str | list[str] | None = None
    if args.labels:
        labels = [x.strip() for x in args.labels.split(",") if x.strip()]
        labels = labels[0] if len(labels) == 1 and labels[0] in LABEL_SETS else labels
    judge_cfg = JudgeConfig(
        kind=args.judge,
        url=args.judge_url,
        model=args.judge_model,
        cache_path=args.judge_cache or str(out_dir / "emer_judge_cache.jsonl"),
    )
    try:
        records = _openset_csv_records(pred_path, args.gold) if pred_path.suffix.lower() == ".csv" else read_predictions(pred_path)
        check_parse(args.parse)
        result = score_predictions(records, args.dataset, labels, judge_cfg, task=args.task, parse=args.parse,
                                   grouping=args.grouping, group_with_llm=args.group_with_llm,
                                   grouping_out=out_dir / "grouping")
        result = {"source": str(pred_path), **result}
        paths = write_score_outputs(result, out_dir)
    except (PredictionsFileError, ValueError, JudgeError) as err:  # OpensetFormatError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_fn(markdown_summary(result))
    print_fn("wrote " + ", ".join(str(p) for p in paths.values()))
    n_invalid = result["metrics"].get("n_invalid", 0.0)
    if n_invalid and not math.isnan(n_invalid):
        print_fn(f"{int(n_invalid)} invalid answer(s) counted as wrong; their names are under 'invalid' in metrics.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command (console script `emotion-llama-score`, `python -m minigpt4.eval.scoring`)."""
    return score_main(argv)


if __name__ == "__main__":
    sys.exit(main())
