"""Answer parsing: the rules in minigpt4/eval/parsing.py's docstring, case by case."""

from __future__ import annotations

import pytest

from minigpt4.data.labels import DFEW_LABELS, IEMOCAP6_LABELS, MER2023_LABELS, MERR_LABELS
from minigpt4.eval.parsing import EMOTION_SYNONYMS, label_mentions, parse_label, parse_label_set


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("happy", "happy"),
        ("Happy", "happy"),
        ("HAPPY.", "happy"),
        ("  sad!!! ", "sad"),
        ("The emotion is: Happy.", "happy"),
        ("The emotional label of the person in the video is worried.", "worried"),
        ("happiness", "happy"),
        ("Anger", "angry"),
        ("worry", "worried"),
        ("She looks surprised!", "surprise"),
        ("“Surprised”", "surprise"),
        ("neutral\n", "neutral"),
    ],
)
def test_single_labels_casing_punctuation_synonyms(answer, expected):
    assert parse_label(answer, MER2023_LABELS) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("fearful", "fear"),
        ("The person is disgusted by the food.", "disgust"),
        ("He seems afraid.", "fear"),
        ("happiness", "happy"),
    ],
)
def test_dfew_synonyms(answer, expected):
    assert parse_label(answer, DFEW_LABELS) == expected


def test_last_sentence_with_a_label_decides():
    answer = "The person frowns and looks sad at first. In the end, however, the emotion is anger."
    assert parse_label(answer, MER2023_LABELS) == "angry"
    # A trailing sentence without any label does not hide the conclusion before it.
    assert parse_label("Happy. The person smiles broadly and laughs.", MER2023_LABELS) == "happy"


@pytest.mark.parametrize(
    "answer",
    [
        "happy or sad",  # a tie between two labels is ambiguous
        "happy, sad, neutral, angry, worried, surprise",  # echo of the label list
        "She is sad but also a little happy.",
    ],
)
def test_conflicting_labels_in_deciding_sentence_are_invalid(answer):
    assert parse_label(answer, MER2023_LABELS) is None


def test_same_label_twice_is_not_a_conflict():
    assert parse_label("She looks happy, so the emotion is happy.", MER2023_LABELS) == "happy"


def test_negated_mentions_are_ignored():
    assert parse_label("I think she is happy, not sad.", MER2023_LABELS) == "happy"
    assert parse_label("He is not angry; he is worried.", MER2023_LABELS) == "worried"
    # "no doubt" must not become the MERR label doubt.
    assert parse_label("There is no doubt she is happy.", MERR_LABELS) == "happy"
    # Only negation: nothing is asserted.
    assert parse_label("The person is not sad.", MER2023_LABELS) is None


@pytest.mark.parametrize("answer", ["", "   ", "I don't know.", "fear", "The person is talking about the weather."])
def test_no_valid_label_is_none_never_a_class(answer):
    # "fear" is a real emotion but not a MER2023 label: invalid, not mapped to something near.
    assert parse_label(answer, MER2023_LABELS) is None


def test_label_word_beats_synonym_table():
    # In IEMOCAP-6 "excited" is its own class; in MER2023 it means nothing.
    assert parse_label("excited", IEMOCAP6_LABELS) == "excited"
    assert parse_label("excitement", IEMOCAP6_LABELS) == "excited"
    assert parse_label("excited", MER2023_LABELS) is None


def test_labels_returned_as_spelt_and_custom_synonyms():
    assert parse_label("the answer is HAPPY", ["Happy", "Sad"]) == "Happy"
    assert parse_label("glee", ["happy", "sad"], {"glee": "happy"}) == "happy"
    # With an explicit synonym table the defaults are not used.
    assert parse_label("happiness", ["happy", "sad"], {"glee": "happy"}) is None
    assert parse_label("very mellow", ["very mellow", "sad"], {}) == "very mellow"


def test_duplicate_or_empty_labels_rejected():
    with pytest.raises(ValueError):
        parse_label("happy", [])
    with pytest.raises(ValueError, match="duplicates"):
        parse_label("happy", ["happy", "Happy"])


def test_label_mentions_per_sentence():
    assert label_mentions("Sad. Then happy and not angry.", MER2023_LABELS) == [["sad"], ["happy"]]


def test_synonym_table_includes_required_forms():
    for word, label in {"happiness": "happy", "anger": "angry", "worry": "worried", "surprised": "surprise",
                        "fearful": "fear", "disgusted": "disgust"}.items():
        assert EMOTION_SYNONYMS[word] == label


def test_label_set_splits_and_groups_synonyms():
    assert parse_label_set("happy, surprised and worry") == {"happy", "surprise", "worried"}
    assert parse_label_set("Emotions: Joyful; a bit nervous") == {"happy", "worried"}
    assert parse_label_set("happiness, joy, happy") == {"happy"}


def test_label_set_keeps_unknown_words_and_drops_negations():
    # Unknown emotion words stay (they count in |P|), fillers are dropped, negated items are not predictions.
    assert parse_label_set("embarrassed, slightly proud, not angry") == {"embarrassed", "proud"}
    assert parse_label_set("") == set()
    assert parse_label_set(["Happy", "worry"]) == {"happy", "worried"}
    assert parse_label_set("glee", {"glee": "happy"}) == {"happy"}
