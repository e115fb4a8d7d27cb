"""MER-UniBench scoring: hand-computed cases on hand-made wheel files and on the owners' real files."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import f1_score

from minigpt4.eval.emotion_wheel import WHEEL_NAMES, WheelFileError, load_emotion_wheels
from minigpt4.eval.unibench import (
    UnibenchInputError, hit_rate, ov_gold_string, ov_scores, sentiment_scores, unibench_markdown, unibench_table,
)
from unibench_fixtures import write_wheel_folder

REAL_WHEELS = Path(__file__).resolve().parent / "fixtures" / "emotion_wheel"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    return load_emotion_wheels(write_wheel_folder(tmp_path_factory.mktemp("wheels")))


@pytest.fixture(scope="module")
def real_wheels():
    return load_emotion_wheels(REAL_WHEELS)


def clusters(wheels, word):
    return [wheels.cluster(word, w) for w in WHEEL_NAMES]


def test_hand_made_mapping(wheels):
    assert clusters(wheels, "happy") == ["happy", "joy", "happy", "happy", "happy"]
    assert clusters(wheels, "Happiness ") == ["happy", "joy", "happy", "happy", "happy"]  # word form, lower-stripped
    # the first *sorted* candidate wins: fear -> fearless -> brave (before scared) wherever brave is on the wheel
    assert wheels.candidates("fear") == ["brave", "scared", "scared"]
    assert clusters(wheels, "fear") == ["happy", "fear", "happy", "happy", "happy"]
    assert clusters(wheels, "worried") == ["scared", "fear", "sad", "scared", "scared"]  # wheel3: later row wins
    assert clusters(wheels, "tense") == clusters(wheels, "worried")  # a synonym of a wheel word
    assert clusters(wheels, "sad")[4] is None
    assert clusters(wheels, "glad") == [None] * 5  # a synonym without a word form in format.csv
    assert clusters(wheels, "neutral") == [None] * 5
    assert wheels.synonym_map["unhappy"] == ["sad"]  # run 8 lists no synonyms: the runs are unions
    # the alternative rule (majority of candidates) is named and not the default
    assert wheels.cluster_any_synonym("fear", "wheel1") == "scared"


def test_ov_scores_hand_computed(wheels):
    gold = {"s1": "[happy, worried]", "s2": "[sad]", "s3": ov_gold_string(""), "s4": "['tense']"}
    pred = {"s1": "[fear]", "s2": "[]", "s3": "[happy]", "s4": "[worried, happy, sad]", "extra": "[sad]"}
    r = ov_scores(gold, pred, wheels)
    w1 = r["per_wheel"]["wheel1"]
    assert (w1["precision"], w1["recall"], w1["fscore"], w1["n_kept"]) == (
        pytest.approx(4 / 9), pytest.approx(1 / 2), pytest.approx(8 / 17), 3.0)  # s3 (gold neutral) skipped
    assert r["per_wheel"]["wheel3"]["fscore"] == pytest.approx(1 / 2)
    assert r["per_wheel"]["wheel5"]["n_kept"] == 2.0  # s2's gold maps to nothing on wheel5
    assert r["per_wheel"]["wheel5"]["fscore"] == pytest.approx(3 / 4)
    # the final F is the mean of per-wheel F, not the F of the mean precision and recall
    assert r["main"] == r["fscore"] == pytest.approx(181 / 340)
    assert (r["precision"], r["recall"]) == (pytest.approx(31 / 60), pytest.approx(11 / 20))
    assert r["alternatives"]["fscore_of_mean_pr"] == pytest.approx(682 / 1280)
    assert r["alternatives"]["fscore_of_mean_pr"] != pytest.approx(r["fscore"], abs=1e-5)


def test_ov_edge_cases(wheels):
    assert ov_gold_string("[]") == "neutral" and ov_gold_string(float("nan")) == "neutral"
    assert ov_gold_string("['Happy', 'sad']") == "happy, sad"
    # a wheel without a kept sample is NaN and makes F NaN, as the owners' np.mean([]) does
    r = ov_scores({"a": "[sad]"}, {"a": "[sad]"}, wheels)
    assert math.isnan(r["per_wheel"]["wheel5"]["fscore"]) and math.isnan(r["fscore"])
    # every prediction empty: precision = recall = 0 on every wheel -> 0/0 -> NaN
    assert math.isnan(ov_scores({"a": "[happy]"}, {"a": ""}, wheels)["per_wheel"]["wheel1"]["fscore"])
    with pytest.raises(UnibenchInputError, match="no prediction for 1 of 2 gold clip"):
        ov_scores({"a": "[happy]", "b": "[sad]"}, {"a": "[happy]"}, wheels)


def test_hit_rate_hand_computed(wheels):
    gold = {"h1": "happy", "h2": "sad", "h3": "neutral", "h4": "worried"}
    pred = {"h1": "[happy, sad]", "h2": "[worried]", "h3": "[]", "h4": "[fear]"}
    r = hit_rate(gold, pred, wheels)
    per = {w: v["hit_rate"] for w, v in r["per_wheel"].items()}
    assert per == {"wheel1": pytest.approx(1 / 3), "wheel2": pytest.approx(2 / 3), "wheel3": pytest.approx(2 / 3),
                   "wheel4": pytest.approx(1 / 3), "wheel5": pytest.approx(1 / 2)}
    assert [v["n_kept"] for v in r["per_wheel"].values()] == [3.0, 3.0, 3.0, 3.0, 2.0]
    assert r["main"] == pytest.approx(1 / 2)


def test_sentiment_hand_computed():
    gold = {"a": 1.2, "b": -0.6, "c": 0.0, "d": 0.4, "e": -2.0, "f": 0.8}
    pred = {"a": "positive", "b": "negative", "c": "positive", "d": "Positive", "e": "neutral", "f": "happy"}
    r = sentiment_scores(gold, pred)
    assert r["n_kept"] == 5.0  # gold 0 dropped
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["main"] == r["weighted_f1"] == pytest.approx(17 / 30)  # "Positive" counts as not positive
    assert r["weighted_f1"] == pytest.approx(f1_score([1, 0, 1, 0, 1], [1, 0, 0, 0, 0], average="weighted"))
    assert r["n_not_a_sentiment_word"] == 2.0
    assert r["alternatives"]["weighted_f1_casefold"] == pytest.approx(0.8)
    assert r["alternatives"]["accuracy_casefold"] == pytest.approx(4 / 5)


def test_real_owner_files(real_wheels):
    assert len(real_wheels.format_map) == 7386 and len(real_wheels.synonym_map) == 1255
    assert clusters(real_wheels, "fear") == ["scared", "happy", "joyful", "genius", "joyful"]  # via fearless
    assert clusters(real_wheels, "happy") == ["happy", "happy", "joyful", "joy", "powerful"]
    assert clusters(real_wheels, "neutral") == [None] * 5
    assert clusters(real_wheels, "surprise")[4] is None
    assert [clusters(real_wheels, "disgust")[i] for i in (2, 4)] == [None, None]
    # hit rate: a "fear" clip answered "happy" hits on wheels 2 and 3 only
    r = hit_rate({"a": "fear", "b": "happy", "c": "neutral"}, {"a": "[happy]", "b": "[Happy]", "c": "[sad]"}, real_wheels)
    assert [v["hit_rate"] for v in r["per_wheel"].values()] == [0.5, 1.0, 1.0, 0.5, 0.5]
    assert r["main"] == pytest.approx(0.7)
    # OV: "joy" maps like "happy" on every wheel; "neutral" in the prediction maps to nothing
    ov = ov_scores({"a": "happy", "b": "[sad, fear]"}, {"a": "[joy, neutral]", "b": "[sad]"}, real_wheels)
    w1 = ov["per_wheel"]["wheel1"]
    assert (w1["precision"], w1["recall"]) == (1.0, pytest.approx(3 / 4))  # b: G={sad, scared}, P={sad}
    assert ov["fscore"] == pytest.approx(2 * 0.75 / 1.75)


def test_unibench_table():
    scores = dict(mer2023=0.8, mer2024=0.7, meld=0.5, iemocap4=0.6, cmumosi=0.9, cmumosei=0.85, sims=0.75,
                  simsv2=0.7, ovmerdplus=0.6)
    t = unibench_table(scores)
    assert t["mean"] == pytest.approx(71.11) and t["scores"]["IEMOCAPFour"] == 60.0
    md = unibench_markdown(t)
    assert md.splitlines()[0].startswith("| MER2023 | MER2024 | MELD | IEMOCAPFour | CMUMOSI")
    assert md.splitlines()[2].endswith("| 60.00 | 71.11 |")
    partial = unibench_table({"mer2023": 0.8, "meld": 0.5})
    assert partial["mean"] is None and partial["mean_of_scored"] == 65.0
    assert "Skipped (not configured): MER2024, IEMOCAPFour" in unibench_markdown(partial)


def test_bad_wheel_folder(tmp_path):
    folder = write_wheel_folder(tmp_path / "w")
    (folder / "wheel3.xlsx").unlink()
    with pytest.raises(WheelFileError, match=r"wheel3\.xlsx.*point --wheels"):
        load_emotion_wheels(folder)
    folder = write_wheel_folder(tmp_path / "w2")
    pd.DataFrame({"name": ["happy"], "forms": ["happy"]}).to_csv(folder / "format.csv", index=False)
    with pytest.raises(WheelFileError, match=r"format\.csv: missing column\(s\) \['format'\]"):
        load_emotion_wheels(folder)
    folder = write_wheel_folder(tmp_path / "w3")
    pd.DataFrame({"name": ["joyous"], "format": ["joyous"]}).to_csv(folder / "format.csv", index=False)
    with pytest.raises(WheelFileError, match="'joyous'.* no entry in"):
        load_emotion_wheels(folder)
    with pytest.raises(WheelFileError, match="folder not found"):
        load_emotion_wheels(tmp_path / "nowhere")
