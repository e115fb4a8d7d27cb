"""Gold and prediction files of MER-UniBench, ours and the owners', and the score-only command.

    python -m minigpt4.eval.scoring --dataset unibench-ov|unibench-discrete|unibench-sentiment \\
        --gold GOLD --score PRED --wheels DIR

prints one JSON object and writes it beside PRED as ``<PRED stem>.<dataset>.json``.

GOLD: a CSV with ``name,openset`` (OV; an empty cell is ``neutral``, as the owners read
``ovlabel.csv``), ``name,label`` (discrete, a label word) or ``name,valence`` (sentiment); or an
owners' label file: ``label-6way.npz`` (key ``test1_corpus``, label words), ``label.npz``
(``test_corpus``: MELD emotion indices or sentiment ``val``), ``label_4way.npz``
(``whole_corpus``: IEMOCAP indices, Session 5 only).

PRED: a CSV with ``name,openset`` (the stage-1 label string as the LLM wrote it) or, for
sentiment, ``name,sentiment`` (the stage-2 word); or an owners' cache ``*-openset.npz`` /
``*-openset-sentiment.npz`` (arrays ``filenames``, ``fileitems``).

Predictions are scored as written (the owners' `string_to_list`, whatever the LLM wrote). Gold
cells are checked: a bracket anywhere but first and last (``[[happy]]``, ``happy]``) means the
file was written wrongly, and is an error naming the line.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from minigpt4.common.errors import UserError
from minigpt4.common.io import atomic_write
from minigpt4.data.owner_npz import OwnerFileError, load_npz, load_npz_item
from minigpt4.data.unibench import IEMOCAP4_IDX2EMO, MELD_IDX2EMO
from minigpt4.eval.emotion_wheel import load_emotion_wheels
from minigpt4.eval.unibench import hit_rate, ov_gold_string, ov_scores, sentiment_scores

UNIBENCH_DATASETS = ("unibench-ov", "unibench-discrete", "unibench-sentiment")
# label-file key -> how its emotion indices read (None: the file holds words)
LABEL_KEYS = {"test1_corpus": None, "test_corpus": MELD_IDX2EMO, "whole_corpus": IEMOCAP4_IDX2EMO}


class UnibenchFileError(UserError):
    """A gold or prediction file that is missing, has the wrong columns or a malformed cell."""


def _read_csv(path: Path, columns: Sequence[str], role: str) -> pd.DataFrame:
    if not path.is_file():
        raise UnibenchFileError(f"{role} file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str)  # cells as text: a label list is never read as a number
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UnibenchFileError(f"{path}: not a readable CSV ({err})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UnibenchFileError(f"{path}: {role} needs column(s) {', '.join(columns)}; missing {missing} "
                                f"(found {list(frame.columns)})")
    if frame["name"].isna().any():
        raise UnibenchFileError(f"{path}:{int(frame['name'].isna().idxmax()) + 2}: empty name")
    return frame


def check_gold_list(text: Any, where: str) -> Any:
    """`text` unchanged if it is a flat label list (brackets only first and last); else an error."""
    if isinstance(text, str):
        inner = text[1:] if text.startswith("[") else text
        inner = inner[:-1] if inner.endswith("]") else inner
        if "[" in inner or "]" in inner:
            raise UnibenchFileError(f"{where}: malformed label list {text!r}; write a flat list such as [happy, sad] "
                                    "(brackets only around the whole list)")
    return text


def _is_npz(path: Path) -> bool:
    return path.suffix.lower() == ".npz"


def read_owner_labels(path: Path) -> dict[str, Any]:
    """``{name: {"emo": ...} | {"val": ...}}`` of an owners' label file, Session 5 only for IEMOCAP."""
    arrays = load_npz(path)
    key = next((k for k in LABEL_KEYS if k in arrays), None)
    if key is None:
        raise UnibenchFileError(f"{path}: not an owners' label file (expected one of {sorted(LABEL_KEYS)}, found {sorted(arrays)})")
    labels = load_npz_item(path, key)
    if not isinstance(labels, dict):
        raise UnibenchFileError(f"{path}: {key!r} holds {type(labels).__name__}, expected a dict of clip labels")
    if key == "whole_corpus":  # IEMOCAP: the test set is Session 5 (Ses05...)
        labels = {name: value for name, value in labels.items() if len(name) > 4 and name[4] == "5"}
    return {str(name): (value, key) for name, value in labels.items()}


def _emotion_word(value: Any, key: str, where: str) -> str:
    if isinstance(value, str):
        return value
    idx2emo = LABEL_KEYS[key]
    try:
        return idx2emo[int(value)]
    except (TypeError, ValueError, IndexError):
        raise UnibenchFileError(f"{where}: emotion {value!r} is not an index of {list(idx2emo or [])}") from None


def read_gold(path: str | Path, dataset: str) -> dict[str, Any]:
    """``{name: gold}`` in file order: an OV label string, a label word or a valence."""
    path = Path(path)
    if _is_npz(path):
        gold = {}
        for name, (value, key) in read_owner_labels(path).items():
            where = f"{path} clip {name}"
            if not isinstance(value, dict):
                raise UnibenchFileError(f"{where}: expected a dict like {{'emo': ...}} or {{'val': ...}}, got {value!r}")
            field = "val" if dataset == "unibench-sentiment" else "emo"
            if field not in value:
                raise UnibenchFileError(f"{where}: has no {field!r} ({'sentiment' if field == 'val' else 'emotion'} "
                                        f"label); is this the right label file for {dataset}?")
            gold[name] = float(value["val"]) if field == "val" else _emotion_word(value["emo"], key, where)
        return gold
    column = {"unibench-ov": "openset", "unibench-discrete": "label", "unibench-sentiment": "valence"}[dataset]
    frame = _read_csv(path, ("name", column), "gold")
    gold = {}
    for line, (name, value) in enumerate(zip(frame["name"], frame[column]), 2):
        where = f"{path}:{line}"
        if dataset == "unibench-ov":
            gold[name] = ov_gold_string(check_gold_list(value, where))
        elif dataset == "unibench-discrete":
            gold[name] = check_gold_list("" if pd.isna(value) else str(value), where)
        else:
            try:
                gold[name] = float(value)
            except (TypeError, ValueError):
                raise UnibenchFileError(f"{where}: valence {value!r} is not a number") from None
    return gold


def read_predictions(path: str | Path, dataset: str) -> dict[str, Any]:
    """``{name: label string}`` (or the stage-2 word for sentiment) from a CSV or an owners' cache."""
    path = Path(path)
    if _is_npz(path):
        arrays = load_npz(path)
        if "filenames" not in arrays or "fileitems" not in arrays:
            raise UnibenchFileError(f"{path}: an owners' prediction cache holds arrays 'filenames' and 'fileitems' "
                                    f"(found {sorted(arrays)})")
        names, items = arrays["filenames"].tolist(), arrays["fileitems"].tolist()
        if len(names) != len(items):
            raise UnibenchFileError(f"{path}: {len(names)} filenames but {len(items)} fileitems")
        return {str(n): item for n, item in zip(names, items)}
    column = "sentiment" if dataset == "unibench-sentiment" else "openset"
    frame = _read_csv(path, ("name", column), "predictions")
    return {name: (None if not isinstance(value, str) and pd.isna(value) else value)
            for name, value in zip(frame["name"], frame[column])}


def _json_safe(value: Any) -> Any:
    """NaN (a wheel without kept samples) -> null, so the file is valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def score_files(dataset: str, gold_path: str | Path, pred_path: str | Path, wheels_dir: str | Path | None,
                rule: str = "owners") -> dict[str, Any]:
    """The score-only result for one dataset kind (see the module docstring)."""
    if dataset not in UNIBENCH_DATASETS:
        raise UserError(f"unknown MER-UniBench dataset {dataset!r}; expected one of {', '.join(UNIBENCH_DATASETS)}")
    gold = read_gold(gold_path, dataset)
    if not gold:
        raise UnibenchFileError(f"{gold_path}: no clips to score")
    pred = read_predictions(pred_path, dataset)
    head = {"dataset": dataset, "gold": str(gold_path), "score": str(pred_path)}
    if dataset == "unibench-sentiment":
        return {**head, **sentiment_scores(gold, pred)}
    if not wheels_dir:
        raise UserError(f"{dataset} needs --wheels DIR: a copy of AffectGPT's emotion_wheel/ folder")
    wheels = load_emotion_wheels(wheels_dir)
    scorer = ov_scores if dataset == "unibench-ov" else hit_rate
    result = scorer(gold, pred, wheels, rule=rule)
    return {**head, "wheels": str(wheels_dir), "word_mapping": rule, **result}


def output_path(pred_path: str | Path, dataset: str) -> Path:
    pred_path = Path(pred_path)
    return pred_path.with_name(f"{pred_path.stem}.{dataset}.json")


def unibench_score_main(dataset: str, gold: str | None, score: str, wheels: str | None, rule: str = "owners",
                        print_fn: Callable[[str], None] = print) -> int:
    """Score-only body: print the JSON and write it beside PRED; one ``error:`` line (exit 2) on bad input."""
    try:
        if not gold:
            raise UserError(f"{dataset} needs --gold GOLD (the owners' label file or a name,... CSV)")
        result = _json_safe(score_files(dataset, gold, score, wheels, rule))
        text = json.dumps(result, indent=2, ensure_ascii=False)
        atomic_write(output_path(score, dataset), text + "\n")
    except (UserError, OwnerFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_fn(text)
    return 0
