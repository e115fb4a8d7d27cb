"""Release-format readers on fixture files in the exact published formats, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from minigpt4.data.annotations import (
    AnnotationError,
    BadItems,
    normalise_text,
    read_captions,
    read_coarse_json,
    read_dfew_split,
    read_emer_references,
    read_fine_json,
    read_iemocap,
    read_list_file,
    read_mer2023_csv,
    read_transcripts,
)
from minigpt4.data.labels import LabelError, normalise_label, normalise_labels

FIXTURES = Path(__file__).parent / "fixtures" / "release"
DFEW_SPLIT = FIXTURES / "DFEW" / "EmoLabel_DataSplit"


def test_list_file_release_line():
    records = read_list_file(FIXTURES / "MERR_coarse_grained.txt", "merr", BadItems())
    first = records[0]
    assert (first.name, first.frame_count, first.label, first.valence) == ("samplenew_00006611", 125, "sad", -10.0)
    assert records[1].valence is None
    assert [r.label for r in records] == ["sad", "happy", "worried", "doubt"]
    assert first.source.endswith("MERR_coarse_grained.txt:1")


def test_list_file_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a 10 happy\nb ten sad\nc 5\n")
    with pytest.raises(AnnotationError, match=r"list\.txt:2"):
        read_list_file(path, "merr", BadItems())
    bad = BadItems("skip")
    records = read_list_file(path, "merr", bad)
    assert [r.name for r in records] == ["a"] and bad.count == 2
    assert "list.txt:3" in bad.messages[1]


def test_unknown_label_names_file_line_and_valid_labels(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a 10 happy\nb 12 bored\n")
    with pytest.raises(AnnotationError) as err:
        read_list_file(path, "mer2023", BadItems())
    message = str(err.value)
    assert "list.txt:2" in message and "'bored'" in message and "neutral, angry, happy, sad, worried, surprise" in message


def test_duplicate_clip_is_an_error(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a 10 happy\na 10 sad\n")
    with pytest.raises(AnnotationError, match="listed twice"):
        read_list_file(path, "merr", BadItems())


def test_label_synonyms_and_sets():
    assert normalise_label("Happiness", "mer2023") == "happy"
    assert normalise_label("anger", "dfew") == "angry"
    assert normalise_label("worry", "merr") == "worried"
    assert normalise_label("surprised", "mer2023") == "surprise"
    assert normalise_label("exc", "iemocap4") == "happy"
    assert normalise_label("exc", "iemocap6") == "excited"
    assert normalise_labels("happy,surprised", "mer2023") == ["happy", "surprise"]
    with pytest.raises(LabelError, match="valid labels"):
        normalise_label("fear", "mer2023", "x.txt:3")


def test_caption_jsons():
    coarse = read_coarse_json(FIXTURES / "MERR_coarse_grained.json")
    assert coarse["samplenew_00006612"].startswith("The woman smiles")
    fine = read_fine_json(FIXTURES / "MERR_fine_grained.json")
    smp, full = fine["samplenew_00006611"]
    assert smp.startswith("Knitted brows") and full.startswith("In the video")
    assert read_captions(FIXTURES / "MERR_fine_grained.json")[1] == fine
    assert read_captions(FIXTURES / "MERR_coarse_grained.json")[0] == coarse


def test_bad_caption_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"a": {"text": "x"}}')
    with pytest.raises(AnnotationError, match="'a'.*caption"):
        read_coarse_json(path)
    path.write_text('{"a": ')
    with pytest.raises(AnnotationError, match="not valid JSON"):
        read_coarse_json(path)


def test_transcripts_columns():
    lines = read_transcripts(FIXTURES / "transcripts.csv")
    assert lines["samplenew_00006611"] == "I lost my job today, and I don't know what to do."
    assert lines["samplenew_00006613"] == ""
    english = read_transcripts(FIXTURES / "transcripts_mer2024.csv", "sentence_en")
    assert english["samplenew_00006611"] == "I lost my job today."
    with pytest.raises(AnnotationError, match="missing column.*sentence_en.*name, sentence"):
        read_transcripts(FIXTURES / "transcripts.csv", "sentence_en")


def test_mer2023_csv():
    records = read_mer2023_csv(FIXTURES / "mer2023_test3_label.csv", "mer2023", BadItems())
    assert [(r.name, r.label, r.valence) for r in records] == [
        ("sample_00000001", "happy", 2.5), ("sample_00000002", "worried", -1.0), ("sample_00000003", "neutral", None)]


def test_dfew_numeric_labels():
    records = read_dfew_split(DFEW_SPLIT / "train(single-labeled)" / "set_1.csv", "dfew", BadItems())
    assert [r.label for r in records] == ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
    assert records[0].name == "1"


def test_dfew_out_of_range(tmp_path):
    path = tmp_path / "set_1.csv"
    path.write_text("video_name,label\n1,8\n")
    with pytest.raises(AnnotationError, match=r"set_1\.csv:2.*out of range"):
        read_dfew_split(path, "dfew", BadItems())


def test_emer_csv_and_json():
    csv_records = read_emer_references(FIXTURES / "emer_references.csv", "merr", BadItems())
    json_records = read_emer_references(FIXTURES / "emer_references.json", "merr", BadItems())
    assert [r.reason for r in csv_records] == [r.reason for r in json_records]
    assert csv_records[0].label == "angry" and json_records[0].label is None and json_records[1].label == "happy"


def test_iemocap_variants():
    four = read_iemocap(FIXTURES / "iemocap.csv", "iemocap4", BadItems("skip"))
    assert [r.label for r in four] == ["neutral", "happy", "angry", "sad", "happy"]  # frustrated skipped
    six = read_iemocap(FIXTURES / "iemocap.csv", "iemocap6", BadItems())
    assert [r.label for r in six][1] == "excited" and six[4].label == "frustrated"
    assert [r.session for r in six] == ["1", "1", "2", "3", "4", "5"]
    with pytest.raises(AnnotationError, match=r"iemocap\.csv:6.*'fru'"):
        read_iemocap(FIXTURES / "iemocap.csv", "iemocap4", BadItems())


def test_missing_file_names_it(tmp_path):
    with pytest.raises(AnnotationError, match="not found.*nope.txt"):
        read_list_file(tmp_path / "nope.txt", "merr", BadItems())


def test_normalise_text_like_the_release():
    assert normalise_text("He says: \"No!\" (loudly).  Sad, Angry") == "he says no loudly sad, angry"
    assert len(normalise_text("word " * 300).split()) == 200


def test_open_vocabulary_label_set_accepts_any_emotion_word(tmp_path):
    from minigpt4.data.labels import LabelError, normalise_labels
    from minigpt4.data.prompts import OPEN_VOCABULARY_INSTRUCTION, emotion_instruction

    assert normalise_labels("Happiness,nervous, relieved", "open", "ov.txt:1") == ["happy", "nervous", "relieved"]
    with pytest.raises(LabelError, match="ov.txt:2"):
        normalise_labels("happy,42", "open", "ov.txt:2")
    assert emotion_instruction(()) == OPEN_VOCABULARY_INSTRUCTION
