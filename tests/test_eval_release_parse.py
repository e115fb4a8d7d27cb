"""The release's parse as the release computes it: generated-text clean-up, last word, gold normaliser.

Every expected value is worked by hand from the rules in `minigpt4.eval.parsing` (module docstring),
and the end-to-end case goes through the real `eval_emotion.py --score ... --parse release` (its
`main`, in-process).
"""

from __future__ import annotations

import json

import pytest

from minigpt4.cli.eval_emotion import main as eval_emotion_main
from minigpt4.eval.parsing import parse_release, release_clean_answer, release_gold
from minigpt4.eval.report import write_predictions

MER = ["neutral", "angry", "happy", "sad", "worried", "surprise"]


@pytest.mark.parametrize(
    "text, cleaned",
    [
        ("  happy \n", "happy"),  # surrounding spaces and newlines
        ("sad</s>angry", "sad"),  # cut at the first </s>
        ("happy</s> x </s>", "happy"),
        ("<s>sad", "sad"),  # <s> removed
        ("<s>[INST] which emotion? [/INST] The emotion is sad", "The emotion is sad"),  # after [/INST]
        ("a [/INST] b [/INST]  worried ", "worried"),  # after the LAST [/INST]
        ("x [/INST] angry</s> [/INST] happy", "angry"),  # </s> first: the later [/INST] is gone
        ("", ""),
        (None, ""),
    ],
)
def test_release_clean_answer(text, cleaned):
    assert release_clean_answer(text) == cleaned


@pytest.mark.parametrize(
    "answer, label",
    [
        ("  happy \n", "happy"),
        ("The emotion is sad</s>angry", "sad"),
        ("<s>[INST] q [/INST] The person is angry", "angry"),
        ("happy.", "neutral"),  # trailing period: not a label
        ("Happy", "neutral"),  # case kept
        ("", "neutral"),  # empty answer
        ("The emotion is\nhappy", "neutral"),  # last split(" ") word is "is\nhappy"
        ("sad or happy", "happy"),
        ("fear", "neutral"),  # a word outside the six labels
    ],
)
def test_parse_release_hand_answers(answer, label):
    assert parse_release(answer, MER) == label


def test_parse_release_without_neutral_is_invalid():
    assert parse_release("fear", ["happy", "sad"]) is None


@pytest.mark.parametrize(
    "caption, gold",
    [
        ("Happy", "happy"),  # upper-case gold
        ("HAPPY.", "happy"),  # trailing period
        ("  (Sad)!  ", "sad"),  # punctuation -> spaces, runs collapse, strip
        ('He is "worried"; really~ worried', "worried"),
        ("a*b#c:d", "d"),  # each of * # : is a space
        ("neutral\n", "neutral"),  # surrounding newline
        ("very \n angry", "angry"),  # a run of whitespace is one space
        ("Surprise, surprise", "surprise"),  # commas are not in the list: "surprise, surprise"
    ],
)
def test_release_gold(caption, gold):
    assert release_gold(caption) == gold


def test_release_gold_keeps_200_words():
    words = [f"w{i}" for i in range(250)]
    assert release_gold(" ".join(words)) == "w199"  # the 200-word cut comes before the last word


# Hand-made predictions: (answer, gold) -> release prediction, release gold
CASES = [
    ("r1", "  happy \n", "happy"),  # happy / happy
    ("r2", "<s>[INST] q [/INST] The emotion is sad</s> angry", "Sad"),  # sad / sad
    ("r3", "The person feels worried.", "worried"),  # neutral / worried
    ("r4", "", "neutral"),  # neutral / neutral
    ("r5", "angry [/INST] surprise\n</s>", "Happy."),  # surprise / happy
    ("r6", "The emotion is\nhappy", "  (Happy)  "),  # neutral / happy
]
# y_true = happy sad worried neutral happy happy; y_pred = happy sad neutral neutral surprise neutral
# accuracy 3/6. Per class (support; precision, recall, F1):
#   happy (3; 1/1, 1/3, 0.5)  sad (1; 1, 1, 1)  worried (1; 0, 0, 0)  neutral (1; 1/3, 1, 0.5)
# weighted F1 = (3*0.5 + 1 + 0 + 0.5) / 6 = 0.5; weighted precision = (3*1 + 1 + 0 + 1/3) / 6 = 13/18
HAND = {"accuracy": 0.5, "weighted_f1": 0.5, "weighted_precision": 13 / 18, "weighted_recall": 0.5}


def test_eval_emotion_score_parse_release_end_to_end(tmp_path):
    """`eval_emotion.py --score --parse release` on a small predictions file."""
    records = [{"name": n, "task": "emotion", "answer": a, "label": g} for n, a, g in CASES]
    pred = write_predictions(records, tmp_path / "predictions.jsonl")
    out = tmp_path / "scores"
    # in-process: what `python eval_emotion.py --score ...` runs, without a second interpreter start
    assert eval_emotion_main(["--score", str(pred), "--dataset", "mer2023", "--parse", "release", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    for name, value in HAND.items():
        assert metrics[f"{name}_release_parse"] == pytest.approx(value), name
    assert metrics["n_invalid_release_parse"] == 0.0
    assert "accuracy" not in metrics  # only the release parse was asked for
