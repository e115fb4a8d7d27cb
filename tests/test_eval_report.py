"""Report files: predictions JSONL round trip and errors, metrics JSON, markdown, confusion PNG."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from minigpt4.eval.report import (
    PredictionsFileError,
    confusion_counts,
    prediction_record,
    markdown_summary,
    plot_confusion_matrix,
    read_predictions,
    write_metrics_json,
    write_predictions,
)

RECORDS = [
    {"name": "s1", "task": "emotion", "instruction": "Which emotion?", "answer": "Happy.", "parsed": "happy",
     "label": "happy", "valence": 2.5, "fold": 1},
    {"name": "s2", "task": "emotion", "instruction": "Which emotion?", "answer": "näive ☺", "parsed": None,
     "label": "sad"},
]


def test_prediction_record_builds_schema():
    rec = prediction_record("s1", "Happy.", instruction="Which emotion?", label="happy", parsed="happy", valence=2.5, fold=1)
    assert rec == RECORDS[0] and list(rec) == list(RECORDS[0])
    assert "fold" not in prediction_record("s2", "x", fold=None)
    with pytest.raises(ValueError, match="unknown prediction keys"):
        prediction_record("s", "x", folds=1)


def test_predictions_round_trip(tmp_path):
    path = write_predictions(RECORDS, tmp_path / "sub" / "pred.jsonl")
    assert path.read_text(encoding="utf-8").count("\n") == 2
    assert read_predictions(path) == RECORDS


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"name": "a", "answer": "x"}\n{"name": "b", "answer": \n', r"pred.jsonl:2: not valid JSON"),
        ('{"name": "a", "answer": "x"}\n\n["a"]\n', r"pred.jsonl:3: expected a JSON object"),
        ('{"name": "a"}\n', r"pred.jsonl:1: missing required key\(s\) \['answer'\]"),
        ('{"name": "a", "answer": null}\n', r"pred.jsonl:1: 'answer' must be a string"),
        ('{"name": "a", "answer": "x"}\n{"name": "a", "answer": "y"}\n', r"pred.jsonl:2: clip 'a' repeats line 1"),
        ("\n\n", r"contains no predictions"),
    ],
)
def test_malformed_predictions_name_file_and_line(tmp_path, content, match):
    path = tmp_path / "pred.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PredictionsFileError, match=match):
        read_predictions(path)


def test_missing_file_error(tmp_path):
    with pytest.raises(PredictionsFileError, match="no such predictions file"):
        read_predictions(tmp_path / "nope.jsonl")


def test_confusion_counts_has_invalid_column():
    counts = confusion_counts(["happy", "happy", "sad"], ["happy", None, "happy"], ["happy", "sad"])
    assert counts.tolist() == [[1, 0, 1], [1, 0, 0]]


def test_confusion_png_written(tmp_path):
    import matplotlib.image

    counts = confusion_counts(["a", "a", "b", "c"], ["a", "b", None, "c"], ["a", "b", "c"])
    path = plot_confusion_matrix(counts, ["a", "b", "c"], tmp_path / "cm.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100
    with pytest.raises(ValueError, match="do not fit"):
        plot_confusion_matrix(np.zeros((2, 2)), ["a", "b"], tmp_path / "bad.png")


def test_metrics_json_and_markdown(tmp_path):
    result = {"dataset": "dfew", "labels": ["happy", "sad"], "metrics": {"uar": 0.61234, "war": 0.7, "n": 10.0, "x": math.nan},
              "folds": {"1": {"uar": 0.5, "war": 0.6, "recall_happy": 1.0}, "2": {"uar": 0.72468, "war": 0.8}}}
    loaded = json.loads(write_metrics_json(result, tmp_path / "m.json").read_text())
    assert loaded["metrics"] == {"uar": 0.61234, "war": 0.7, "n": 10.0, "x": None}
    md = markdown_summary(result)
    assert "| uar | 0.6123 |" in md and "| n | 10 |" in md and "| x | n/a |" in md
    assert "| fold | uar | war |" in md and "| 2 | 0.7247 | 0.8000 |" in md
    assert "recall_happy" not in md
