"""score_predictions per dataset and the score-only CLI on small predictions files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.metrics import f1_score

from minigpt4.eval.report import write_predictions
from minigpt4.eval.scoring import score_main, score_predictions

REPO = Path(__file__).resolve().parents[1]

MER = [
    {"name": "m1", "task": "emotion", "answer": "The emotion is: Happy.", "label": "happy"},
    {"name": "m2", "task": "emotion", "answer": "sadness", "label": "sad"},
    {"name": "m3", "task": "emotion", "answer": "I cannot tell.", "label": "sad"},
    {"name": "m4", "task": "emotion", "answer": "worried", "label": "angry"},
    {"name": "m5", "task": "emotion", "answer": "happy or sad", "label": "happy"},
]


def test_mer2023_scoring_reparses_answers():
    result = score_predictions(MER, "mer2023")
    m = result["metrics"]
    y_true = ["happy", "sad", "sad", "angry", "happy"]
    y_pred = ["happy", "sad", "<invalid>", "worried", "<invalid>"]
    labels = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
    assert m["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0))
    assert m["accuracy"] == pytest.approx(0.4)
    assert m["n_invalid"] == 2.0 and result["invalid"] == ["m3", "m5"]
    assert result["confusion"]["counts"][2] == [0, 0, 1, 0, 0, 0, 1]  # happy row: 1 happy, 1 invalid


def test_mer2023_overall_and_partial_valence():
    recs = [dict(r, valence=1.0, valence_pred=0.0) for r in MER[:2]]
    m = score_predictions(recs, "mer2023")["metrics"]
    assert m["overall"] == pytest.approx(1.0 - 0.25 * 1.0)
    with pytest.raises(ValueError, match="valence_pred on 1 of 2"):
        score_predictions([recs[0], MER[1]], "mer2023")
    note = score_predictions([dict(MER[0], valence=1.0)], "mer2023")["note"]
    assert "not computed" in note


def test_dfew_folds_are_averaged():
    recs = [
        {"name": "a", "answer": "happy", "label": "happy", "fold": 1},
        {"name": "b", "answer": "sad", "label": "happy", "fold": 1},
        {"name": "c", "answer": "sad", "label": "sad", "fold": 1},
        {"name": "d", "answer": "fearful", "label": "fear", "fold": 2},
        {"name": "e", "answer": "neutral", "label": "fear", "fold": 2},
    ]
    result = score_predictions(recs, "dfew")
    f1, f2 = result["folds"]["1"], result["folds"]["2"]
    assert (f1["uar"], f1["war"]) == (pytest.approx(0.75), pytest.approx(2 / 3))
    assert (f2["uar"], f2["war"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert result["metrics"]["uar"] == pytest.approx(0.625)
    assert result["metrics"]["war"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert result["pooled"]["war"] == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="lack 'fold'"):
        score_predictions(recs + [{"name": "f", "answer": "sad", "label": "sad"}], "dfew")


def test_iemocap_label_set_name_merges_excited():
    recs = [{"name": "a", "answer": "excited", "label": "happy"}, {"name": "b", "answer": "Frustrated.", "label": "angry"}]
    m4 = score_predictions(recs, "iemocap", labels="iemocap4")
    assert m4["metrics"]["accuracy"] == 0.5 and m4["invalid"] == ["b"]
    inferred = score_predictions(recs, "iemocap")  # labels from gold: angry, happy; "excited" is not one
    assert inferred["labels"] == ["angry", "happy"] and inferred["metrics"]["n_invalid"] == 2.0


def test_mer2024_ov_scoring():
    recs = [
        {"name": "o1", "answer": "Happy, surprised and a bit nervous", "label": ["happiness", "worry"]},
        {"name": "o2", "answer": "", "label": "angry"},
    ]
    result = score_predictions(recs, "mer2024-ov")
    m = result["metrics"]
    assert m["set_accuracy_offline"] == pytest.approx((2 / 3 + 0) / 2)  # synonym table: never called `score`
    assert m["set_recall_offline"] == pytest.approx((1 + 0) / 2)
    assert "score" not in m and "NOT the official" in result["note"]
    assert result["invalid"] == ["o2"]


def test_task_mixing_is_an_error_and_task_filter_works():
    mixed = MER[:2] + [{"name": "m1", "task": "reason", "answer": "... so she is happy.", "label": "happy"}]
    with pytest.raises(ValueError, match="mix tasks"):
        score_predictions(mixed, "mer2023")
    assert score_predictions(mixed, "mer2023", task="reason")["n_records"] == 1
    with pytest.raises(ValueError, match="unknown dataset"):
        score_predictions(MER, "fer2013")


def test_cli_writes_metrics_markdown_and_png(tmp_path, capsys):
    pred = write_predictions(MER, tmp_path / "pred.jsonl")
    assert score_main(["--score", str(pred), "--dataset", "mer2023", "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["metrics"]["accuracy"] == pytest.approx(0.4) and metrics["source"] == str(pred)
    assert (tmp_path / "out/confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "| weighted_f1 |" in (tmp_path / "out/summary.md").read_text()
    out = capsys.readouterr().out
    assert "2 invalid answer(s)" in out


def test_cli_default_out_dir_and_errors(tmp_path, capsys):
    pred = write_predictions(MER, tmp_path / "run1.jsonl")
    assert score_main(["--score", str(pred), "--dataset", "dfew"]) == 0
    assert (tmp_path / "run1_scores/metrics.json").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"name": "x"}\n')
    assert score_main(["--score", str(bad), "--dataset", "mer2023"]) == 2
    assert "bad.jsonl:1: missing required key" in capsys.readouterr().err


def test_cli_as_module_with_offline_emer(tmp_path):
    pred = write_predictions(
        [{"name": "e1", "answer": "She smiles, so she is happy.", "reference": "She smiles; she is happy."}],
        tmp_path / "emer.jsonl",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "minigpt4.eval.scoring", "--score", str(pred), "--dataset", "emer",
         "--judge", "offline", "--out", str(tmp_path / "o")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "o/metrics.json").read_text())["metrics"]
    assert metrics["label_overlap_offline"] == 10.0 and 1.0 < metrics["clue_overlap_offline"] <= 10.0
    assert not (tmp_path / "o/confusion.png").exists()


def test_release_parse_beside_strict_hand_case(tmp_path, capsys):
    """The release's rule: last space-separated word as is; a non-label word becomes neutral."""
    from minigpt4.eval.parsing import parse_release

    labels = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
    assert parse_release("The emotion is happy", labels) == "happy"
    assert parse_release("happy.", labels) == "neutral"  # punctuation kept: not a label
    assert parse_release("Happy", labels) == "neutral"  # case kept
    assert parse_release("sad or happy", labels) == "happy"
    assert parse_release("", labels) == "neutral"
    assert parse_release("fear", ["happy", "sad"]) is None  # no neutral to fall back on
    # MER: m1 "...: Happy." -> neutral (gold happy); m2 "sadness" -> neutral (sad); m3 "...tell." -> neutral (sad);
    # m4 "worried" -> worried (angry); m5 "happy or sad" -> sad (happy): release predictions
    y_true = ["happy", "sad", "sad", "angry", "happy"]
    y_rel = ["neutral", "neutral", "neutral", "worried", "sad"]
    result = score_predictions(MER, "mer2023")
    m = result["metrics"]
    assert m["accuracy"] == pytest.approx(0.4)  # strict, unchanged
    assert m["accuracy_release_parse"] == 0.0
    assert m["weighted_f1_release_parse"] == pytest.approx(
        f1_score(y_true, y_rel, labels=labels, average="weighted", zero_division=0))
    assert m["n_invalid_release_parse"] == 0.0
    right = [dict(r, answer=f"I think the person is {r['label']}") for r in MER]
    assert score_predictions(right, "mer2023")["metrics"]["accuracy_release_parse"] == 1.0
    only = score_predictions(MER, "mer2023", parse="release")["metrics"]
    assert "accuracy" not in only and only["accuracy_release_parse"] == 0.0
    # folded datasets carry both parses per fold
    dfew = score_predictions([dict(r, fold=1) for r in right[:2]] + [dict(r, fold=2) for r in MER[3:]], "dfew",
                             labels=["neutral", "angry", "happy", "sad", "worried"])
    assert dfew["folds"]["1"]["war_release_parse"] == 1.0 and dfew["folds"]["2"]["war_release_parse"] == 0.0
    # CLI: --parse release; a bad parse name is one error line naming the choices
    pred = write_predictions(MER, tmp_path / "pred.jsonl")
    assert score_main(["--score", str(pred), "--dataset", "mer2023", "--parse", "release", "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o/metrics.json").read_text())["metrics"]["accuracy_release_parse"] == 0.0
    assert score_main(["--score", str(pred), "--dataset", "mer2023", "--parse", "lenient"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unknown parse 'lenient'; choose one of strict, release, both"]
