"""The MER-UniBench score-only command on our CSVs and on the owners' npz files; bad input."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

from minigpt4.data.owner_npz import OwnerFileError, load_npz_item
from minigpt4.eval.scoring import score_main
from unibench_fixtures import write_wheel_folder


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory):
    return write_wheel_folder(tmp_path_factory.mktemp("wheels"))


def run(argv):
    printed = []
    code = score_main(argv, print_fn=printed.append)
    return code, (json.loads(printed[0]) if printed else None)


def csv(path, **columns):
    pd.DataFrame(columns).to_csv(path, index=False)
    return str(path)


def test_ov_csvs(tmp_path, wheel_dir):
    gold = csv(tmp_path / "ovlabel.csv", name=["s1", "s2", "s3", "s4"],
               openset=["['happy', 'worried']", "[sad]", "", "[tense]"])
    pred = csv(tmp_path / "pred.csv", name=["s4", "s3", "s2", "s1"], openset=["[worried, happy, sad]", "[happy]", "[]", "[fear]"])
    code, result = run(["--dataset", "unibench-ov", "--gold", gold, "--score", pred, "--wheels", str(wheel_dir)])
    assert code == 0
    assert result["main"] == pytest.approx(181 / 340)  # the hand-computed case of test_eval_unibench
    assert result["per_wheel"]["wheel5"]["n_kept"] == 2 and result["recall"] == pytest.approx(11 / 20)
    assert json.loads((tmp_path / "pred.unibench-ov.json").read_text()) == result


def test_discrete_with_owner_files(tmp_path, wheel_dir):
    # IEMOCAP label_4way.npz: indices into [happy, sad, neutral, anger]; only Session 5 is the test set
    labels = {"Ses05F_a": {"emo": 0}, "Ses01F_b": {"emo": 1}, "Ses05M_c": {"emo": 1}, "Ses05M_d": {"emo": 2}}
    np.savez(tmp_path / "label_4way.npz", whole_corpus=labels)
    names = np.array(["Ses05F_a", "Ses05M_c", "Ses05M_d"])
    np.savez(tmp_path / "ckpt-openset.npz", filenames=names, fileitems=np.array(["[happy]", "[worried]", "[]"]))
    code, result = run(["--dataset", "unibench-discrete", "--gold", str(tmp_path / "label_4way.npz"),
                        "--score", str(tmp_path / "ckpt-openset.npz"), "--wheels", str(wheel_dir)])
    assert code == 0 and result["n_samples"] == 3  # Ses01 dropped
    # a: happy hits everywhere; c: sad vs worried hits on wheel3 only (and sad is on no wheel5 cluster); d: neutral skipped
    assert [v["hit_rate"] for v in result["per_wheel"].values()] == [0.5, 0.5, 1.0, 0.5, 1.0]
    assert result["main"] == pytest.approx(0.7)
    # the same gold as a name,label CSV
    gold = csv(tmp_path / "gold.csv", name=["Ses05F_a", "Ses05M_c", "Ses05M_d"], label=["happy", "sad", "neutral"])
    assert run(["--dataset", "unibench-discrete", "--gold", gold, "--score", str(tmp_path / "ckpt-openset.npz"),
                "--wheels", str(wheel_dir)])[1]["main"] == pytest.approx(0.7)


def test_sentiment_with_owner_files(tmp_path):
    np.savez(tmp_path / "label.npz", test_corpus={"a": {"val": 1.2}, "b": {"val": np.float64(-0.6)}, "c": {"val": 0.0},
                                                  "d": {"val": 0.4}, "e": {"val": -2.0}, "f": {"val": 0.8}})
    np.savez(tmp_path / "ckpt-openset-sentiment.npz", filenames=np.array(list("abcdef")),
             fileitems=np.array(["positive", "negative", "positive", "Positive", "neutral", "happy"]))
    code, result = run(["--dataset", "unibench-sentiment", "--gold", str(tmp_path / "label.npz"),
                        "--score", str(tmp_path / "ckpt-openset-sentiment.npz")])
    assert code == 0 and result["n_kept"] == 5
    assert result["main"] == pytest.approx(17 / 30) and result["accuracy"] == pytest.approx(3 / 5)
    gold = csv(tmp_path / "gold.csv", name=list("abcdef"), valence=[1.2, -0.6, 0, 0.4, -2, 0.8])
    pred = csv(tmp_path / "p.csv", name=list("fedcba"), sentiment=["happy", "neutral", "Positive", "positive", "negative", "positive"])
    assert run(["--dataset", "unibench-sentiment", "--gold", gold, "--score", pred])[1]["main"] == pytest.approx(17 / 30)


def test_npz_pickles_are_restricted(tmp_path):
    np.savez(tmp_path / "evil.npz", test_corpus={"a": pathlib.PurePosixPath("/etc")})
    with pytest.raises(OwnerFileError, match="refusing to load pathlib"):
        load_npz_item(tmp_path / "evil.npz", "test_corpus")


@pytest.mark.parametrize("case, expected", [
    ("missing_wheel", "wheel2.xlsx; point --wheels"),
    ("malformed_gold", "gold.csv:3: malformed label list '[[sad]]'"),
    ("missing_clips", "no prediction for 1 of 2 gold clip(s) (first: ['s2'])"),
    ("unknown_dataset", "invalid choice: 'unibench-xx'"),
    ("wrong_columns", "predictions needs column(s) name, openset"),
])
def test_bad_input_is_one_error_line(tmp_path, wheel_dir, capsys, case, expected):
    wheels = write_wheel_folder(tmp_path / "wheels")
    gold = csv(tmp_path / "gold.csv", name=["s1", "s2"], openset=["[happy]", "[[sad]]" if case == "malformed_gold" else "[sad]"])
    pred = csv(tmp_path / "pred.csv", name=["s1"] + ([] if case == "missing_clips" else ["s2"]),
               **{"label" if case == "wrong_columns" else "openset": ["[happy]"] + ([] if case == "missing_clips" else ["[]"])})
    if case == "missing_wheel":
        (wheels / "wheel2.xlsx").unlink()
    dataset = "unibench-xx" if case == "unknown_dataset" else "unibench-ov"
    try:
        code = score_main(["--dataset", dataset, "--gold", gold, "--score", pred, "--wheels", str(wheels)])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not list(tmp_path.glob("pred.*.json")) and not list(tmp_path.glob(".pred*"))  # nothing half written
