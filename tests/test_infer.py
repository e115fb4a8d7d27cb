"""Inference on raw video (`python -m minigpt4.infer`, `EmotionPredictor`, the app's handler).

An untrained tiny model answers gibberish, so "it names a valid label" would prove little. The
session fixture `workspace` (conftest) therefore trains the tiny model with train.py, from features extracted by batch
extraction, until it memorises the label of each of three clips, WITHOUT transcripts: only the
frame and the three utterance features tell the clips apart. Inference on the raw .mp4 files
must then give back each clip's label, which holds only if a clip reaches the model through
inference exactly as it did through extraction + training (same frame, features, prompt).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ENV, LABEL_SET, REPO
from minigpt4.infer import main as infer_main

TINY_CFG = REPO / "eval_configs/infer_tiny.yaml"
# the penalty skips the prompt because it is given as embeddings, as in the release's demo
pytestmark = pytest.mark.filterwarnings("ignore:Passing `repetition_penalty`:UserWarning")


def run_cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minigpt4.infer", *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def predictor(workspace):
    from minigpt4.infer import EmotionPredictor, load_infer_config

    return EmotionPredictor(load_infer_config(TINY_CFG, workspace["options"]))


# ---- the command line ----------------------------------------------------------------------

def test_cli_json_answers_the_trained_label_from_all_four_inputs(workspace, capsys):
    name, label = list(workspace["labels"].items())[-1]
    status = infer_main(["--cfg-path", str(TINY_CFG), "--video", str(workspace["videos"][name]), "--json",
                         "--options", *workspace["options"]])  # in-process: what `python -m minigpt4.infer` runs
    out = capsys.readouterr()
    assert status == 0, out.err[-3000:]
    result = json.loads(out.out)
    assert result["label"] == label
    assert result["label"] in result["label_set"] and len(result["label_set"]) == 7
    assert result["task"] == "emotion" and result["video"] == str(workspace["videos"][name])
    assert result["inputs_used"] == {"image": True, "local": True, "temporal": True, "audio": True, "text": False}
    assert any("no transcript" in note for note in result["notes"])
    assert result["seconds"] > 0


def test_cli_corrupt_file_exits_2_naming_the_file_before_loading_the_model(tmp_path, workspace):
    bad = tmp_path / "broken clip.mp4"
    bad.write_bytes(os.urandom(4096))
    done = run_cli("--cfg-path", str(TINY_CFG), "--video", str(bad), "--options", *workspace["options"])
    assert done.returncode == 2
    assert str(bad) in done.stderr and "damaged" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_cli_config_errors_exit_2_with_the_fix(workspace, capsys):
    from minigpt4.infer import main

    video = str(next(iter(workspace["videos"].values())))
    assert main(["--cfg-path", str(TINY_CFG), "--video", video, "--options", "generation.temprature=0.5"]) == 2
    assert "did you mean 'generation.temperature'" in capsys.readouterr().err
    missing = workspace["root"] / "nowhere.safetensors"
    options = [o for o in workspace["options"] if not o.startswith("model.checkpoint=")]
    assert main(["--cfg-path", str(TINY_CFG), "--video", video, "--options", *options,
                 f"model.checkpoint={missing}"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "make demo" in err


def test_cli_score_labels_json_carries_probabilities_of_every_label(workspace, capsys):
    name, label = list(workspace["labels"].items())[0]
    status = infer_main(["--cfg-path", str(TINY_CFG), "--video", str(workspace["videos"][name]), "--json",
                         "--answer-mode", "score_labels", "--options", *workspace["options"]])  # in-process
    out = capsys.readouterr()
    assert status == 0, out.err[-3000:]
    result = json.loads(out.out)
    probs = result["label_probs"]
    assert result["answer_mode"] == "score_labels" and set(probs) == set(result["label_set"])
    assert abs(sum(probs.values()) - 1) < 1e-4 and all(0 <= p <= 1 for p in probs.values())  # 6 decimals: tiny ones read 0
    assert result["label"] == result["answer"] == max(probs, key=probs.get) == label


def test_cli_missing_single_file_wording(workspace):
    missing = workspace["root"] / "no such clip.mp4"
    done = run_cli("--cfg-path", str(TINY_CFG), "--video", str(missing), "--options", *workspace["options"])
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert str(missing) in done.stderr and "file not found" in done.stderr
    assert "--videos" not in done.stderr and "skipped" not in done.stderr


# ---- the Python API ---------------------------------------------------------------------------

def test_predictor_gives_back_each_clips_trained_label(workspace, predictor):
    for name, label in workspace["labels"].items():
        prediction = predictor.predict(workspace["videos"][name])
        assert (prediction.label, prediction.answer) == (label, label), name
        assert all(prediction.inputs_used[k] for k in ("image", "local", "temporal", "audio"))
    sampled = predictor.predict(workspace["videos"][name], sample=True)  # the demo's settings
    assert sampled.label in predictor.labels


def test_score_labels_names_a_valid_label_from_any_subset_of_inputs(workspace, predictor):
    """Whatever inputs are left, the scored answer is a label of the set, with a distribution."""
    name, label = next(iter(workspace["labels"].items()))
    inputs = predictor.prepare(workspace["videos"][name])
    both = predictor.answer(inputs, answer_mode="both")
    assert both.label == label and max(both.label_probs, key=both.label_probs.get) == label
    for row in range(3):  # local, temporal, audio removed one at a time
        partial = dataclasses.replace(inputs, features=inputs.features.copy(), present=inputs.present.copy())
        partial.features[row], partial.present[row] = 0.0, False
        scored = predictor.answer(partial, answer_mode="score_labels")
        assert scored.label in predictor.labels and abs(sum(scored.label_probs.values()) - 1) < 1e-4
        assert scored.inputs_used[("local", "temporal", "audio")[row]] is False


def test_inputs_match_batch_extraction_and_the_evaluation_batch(workspace, predictor):
    """One clip in memory == the same clip through extract_features + the eval dataset."""
    from minigpt4.data.config import DatasetConfig
    from minigpt4.data.datasets import build_dataset
    from minigpt4.processors import EvaImageTransform

    data = workspace["data"]
    dataset = build_dataset(DatasetConfig(reader="merr", annotation=str(data / "all.txt"), frames=str(data / "frames"),
                                          label_set=LABEL_SET, tasks=["emotion"]),
                            EvaImageTransform(predictor.cfg.model.vision.image_size), train=False)
    for index, name in enumerate(workspace["labels"]):
        inputs = predictor.prepare(workspace["videos"][name])
        for row, folder in enumerate(("mae_340_UTT", "maeV_399_UTT", "HL-UTT")):  # local, temporal, audio
            np.testing.assert_allclose(inputs.features[row], np.load(data / folder / f"{name}.npy"), atol=1e-5)
        assert inputs.present.all()
        ours = predictor.build_batch(inputs, "emotion")
        theirs = predictor.collator([dataset[index]])
        for key in ("input_ids", "attention_mask", "visual_mask", "feature_present", "image_present"):
            assert torch.equal(ours[key], theirs[key]), (name, key)
        # the features rows checked above to 1e-5: extraction ran in another process, whose thread
        # count (common/threads.py) may differ from this one's, so the last bits may too
        assert torch.allclose(ours["features"], theirs["features"], rtol=0, atol=1e-5), name
        # the same (peak) frame: the extracted one went through JPEG, hence the tolerance
        assert (ours["images"] - theirs["images"]).abs().mean() < 0.05
        assert inputs.face.shape == (predictor.cfg.features.face_size,) * 2 + (3,)


def test_evaluation_and_inference_answer_a_clip_alike(workspace, predictor):
    """One answering function: eval's `predict` on the extracted clips and the predictor on the raw
    videos give the same answer, the same scored label and (up to the JPEG'd frame) the same probabilities."""
    from minigpt4.data.config import DatasetConfig
    from minigpt4.data.datasets import build_dataset
    from minigpt4.eval.generation import predict
    from minigpt4.processors import EvaImageTransform

    data = workspace["data"]
    dataset = build_dataset(DatasetConfig(reader="merr", annotation=str(data / "all.txt"), frames=str(data / "frames"),
                                          label_set=LABEL_SET, tasks=["emotion"]),
                            EvaImageTransform(predictor.cfg.model.vision.image_size), train=False)
    records = predict(predictor.model, dataset, batch_size=2, max_new_tokens=predictor.cfg.generation.max_new_tokens,
                      answer_mode="both", template=predictor.template, progress=False)
    assert len(records) == len(workspace["labels"])
    for record in records:
        ours = predictor.predict(workspace["videos"][record["name"]], answer_mode="both")
        assert (ours.answer, max(ours.label_probs, key=ours.label_probs.get)) == (record["answer"], record["scored_answer"])
        assert ours.label_probs.keys() == record["label_probs"].keys()
        assert max(abs(ours.label_probs[k] - record["label_probs"][k]) for k in ours.label_probs) < 0.02


def test_emotion_question_is_the_evaluation_question_for_merr_label_sets_too(workspace, predictor, monkeypatch):
    """Label sets inside MERR (the real model's) are asked with the release's pool, not their own list."""
    from minigpt4.data.config import DatasetConfig
    from minigpt4.data.datasets import build_dataset
    from minigpt4.data.labels import label_set

    data = workspace["data"]
    for name in ("mer2023", "merr", "dfew"):
        monkeypatch.setattr(predictor, "labels", label_set(name))
        dataset = build_dataset(DatasetConfig(reader="merr", annotation=str(data / "all.txt"),
                                              frames=str(data / "frames"), label_set=name), train=False)
        assert predictor.instruction("emotion") == dataset.instruction("emotion", 0), name


def test_clip_without_audio_is_answered_with_audio_marked_absent(tmp_path, workspace, predictor):
    from minigpt4.common.media import read_frames, write_video

    name = next(iter(workspace["labels"]))
    silent = tmp_path / "silent.mp4"
    write_video(silent, read_frames(workspace["videos"][name]), fps=8.0, audio=None)
    prediction = predictor.predict(silent, transcript="I am fine")
    assert prediction.inputs_used == {"image": True, "local": True, "temporal": True, "audio": False, "text": True}
    assert any("no audio track" in note and "silent.mp4" in note for note in prediction.notes)
    assert prediction.answer  # still answered
    inputs = predictor.prepare(silent)
    assert not inputs.present[2] and not inputs.features[2].any()


def test_unreadable_or_too_long_files_raise_errors_naming_the_file(tmp_path, workspace, predictor, monkeypatch):
    from minigpt4.common.media import MediaError
    from minigpt4.infer import VideoRejected

    good = next(iter(workspace["videos"].values()))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (truncated, empty, tmp_path / "missing.mp4"):
        with pytest.raises(MediaError, match=path.name):
            predictor.predict(path)
    monkeypatch.setattr(predictor.cfg.limits, "max_seconds", 0.5)
    with pytest.raises(VideoRejected, match="limits.max_seconds"):
        predictor.predict(good)
    monkeypatch.setattr(predictor.cfg.limits, "max_seconds", 30.0)
    monkeypatch.setattr(predictor.cfg.limits, "max_upload_mb", 0.001)
    with pytest.raises(VideoRejected, match="limits.max_upload_mb"):
        predictor.predict(good)
    with pytest.raises(ValueError, match="unknown task"):
        predictor.predict(good, task="summary")


def test_reason_task_and_custom_question(workspace, predictor):
    from minigpt4.data.prompts import pick_instruction

    video = next(iter(workspace["videos"].values()))
    reason = predictor.predict(video, task="reason", transcript="the meeting is at three")
    assert reason.question == pick_instruction("reason", None) and reason.inputs_used["text"]
    assert reason.label is None or reason.label in predictor.labels
    asked = predictor.predict(video, question="How does this person feel?")
    assert asked.question == "How does this person feel?"
    assert set(asked.to_json()) >= {"video", "task", "answer", "label", "inputs_used", "seconds"}
    json.dumps(asked.to_json())  # serialisable: no arrays in it


def test_untrained_model_answer_is_a_label_or_reported_invalid(workspace, tmp_path):
    from minigpt4.infer import EmotionPredictor, load_infer_config

    options = [o for o in workspace["options"] if not o.startswith("model.checkpoint=")] + ["model.checkpoint=null"]
    untrained = EmotionPredictor(load_infer_config(TINY_CFG, options))
    prediction = untrained.predict(next(iter(workspace["videos"].values())))
    if prediction.label is None:
        assert any("names no single label" in note for note in prediction.notes)
    else:
        assert prediction.label in untrained.labels


def test_app_handler_reports_errors_in_the_page_and_keeps_answering(tmp_path, workspace, predictor):
    from minigpt4.cli.app import analyse

    name, label = next(iter(workspace["labels"].items()))
    status, shown_label, answer, inputs, frame, face, probs = analyse(predictor, str(workspace["videos"][name]),
                                                                      "emotion", "", "")
    assert status.startswith("Analysed") and shown_label == label and "**audio**" in inputs
    assert set(probs) == set(predictor.labels) and max(probs, key=probs.get) == label  # the bar chart's data
    assert abs(sum(probs.values()) - 1) < 1e-4
    assert frame.shape[0] >= 192 and face.shape[0] >= 192  # enlarged for display
    bad = tmp_path / "upload" / "bad.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"not a video at all")
    status, shown_label, *_ = analyse(predictor, str(bad), "emotion", "", "")
    assert status.startswith("**Error:** bad.mp4") and str(bad.parent) not in status and shown_label == ""
    assert analyse(predictor, None, "emotion", "", "")[0].startswith("Upload a video")
    assert analyse(predictor, str(workspace["videos"][name]), "emotion", "", "")[1] == label


def test_configs_load_with_the_documented_generation_settings():
    from minigpt4.infer import GenerationConfig, load_infer_config

    assert GenerationConfig().kwargs(sample=False) == {"do_sample": False, "num_beams": 1, "kv_cache": "preallocated"}
    assert GenerationConfig().kwargs(sample=True) == {"do_sample": True, "num_beams": 1, "temperature": 0.2,
                                                      "top_p": 0.9, "repetition_penalty": 1.05,
                                                      "kv_cache": "preallocated"}
    tiny = load_infer_config(TINY_CFG)
    assert tiny.model.checkpoint == "outputs/demo/stage2/best/trainable.safetensors"
    assert tiny.features.frame_choice == "peak" and tiny.label_set == "mer2023"
    real = load_infer_config(REPO / "eval_configs/infer_real.yaml")
    assert real.model.dtype == "bf16" and real.model.feature_dim == 1024 and real.label_set == "merr"
    assert real.features.face_size == 224 and real.features.frame_choice == "first"


def test_open_vocabulary_question_and_release_protocol(workspace, predictor, monkeypatch, capsys):
    """One function decides the question (open vocabulary too); --protocol release: first frame, BOS BOS."""
    import dataclasses

    from minigpt4.data.config import DatasetConfig
    from minigpt4.data.datasets import build_dataset
    from minigpt4.data.labels import OPEN, label_set
    from minigpt4.infer import EmotionPredictor, main

    data = workspace["data"]
    monkeypatch.setattr(predictor, "labels", label_set(OPEN))
    dataset = build_dataset(DatasetConfig(reader="merr", annotation=str(data / "all.txt"), frames=str(data / "frames"),
                                          label_set=OPEN), train=False)
    assert predictor.instruction("emotion") == dataset.instruction("emotion", 0)
    assert "all possible emotional states" in predictor.instruction("emotion")
    monkeypatch.undo()

    release = EmotionPredictor(dataclasses.replace(predictor.cfg, protocol="release"))
    video = next(iter(workspace["videos"].values()))
    inputs = release.prepare(video)
    assert inputs.frame_index == 0  # the release's first frame, whatever features.frame_choice says
    batch = release.build_batch(inputs, "emotion", transcript="I am fine")
    bos = release.model.tokenizer.bos_token_id
    assert batch["input_ids"][0, :2].tolist() == [bos, bos]
    assert batch["instructions"][0].endswith("worried, surprise, fear, contempt, doubt.")

    assert main(["--cfg-path", str(TINY_CFG), "--video", str(video), "--protocol", "paper",
                 "--options", *workspace["options"]]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: unknown protocol 'paper'; choose one of clean, release"]


def test_uploads_and_inference_never_reach_decord(workspace, predictor, monkeypatch):
    """Untrusted files are decoded by PyAV only: the header probe, then streaming extraction."""
    from minigpt4.common import media

    def no_decord(path):
        raise AssertionError(f"decord opened {path}")

    monkeypatch.setattr(media, "_open_decord", no_decord)
    name, label = next(iter(workspace["labels"].items()))
    prediction = predictor.predict(workspace["videos"][name], answer_mode="score_labels")
    assert prediction.label == label


def test_limits_refuse_pixels_frames_and_text_before_decoding(workspace, predictor, monkeypatch):
    from minigpt4.common import media
    from minigpt4.infer import RequestRejected, VideoRejected

    good = next(iter(workspace["videos"].values()))
    info = media.probe_video(good)
    assert (info.num_frames, info.width, info.height) == astuple_of(media.video_info(good))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a clip the limits refuse")

    monkeypatch.setattr(predictor.clips.extractor, "prepare", no_decoding)
    monkeypatch.setattr(predictor.cfg.limits, "max_pixels", info.width * info.height - 1)
    with pytest.raises(VideoRejected, match=f"{good.name}: the frames are {info.width}x{info.height}.*limits.max_pixels"):
        predictor.predict(good)
    monkeypatch.setattr(predictor.cfg.limits, "max_pixels", 1920 * 1080)
    monkeypatch.setattr(predictor.cfg.limits, "max_frames", info.num_frames - 1)
    with pytest.raises(VideoRejected, match=f"has {info.num_frames} frames.*limits.max_frames"):
        predictor.predict(good)
    with pytest.raises(RequestRejected, match="the transcript has 2001 characters, over the limit of 2000"):
        predictor.predict(good, transcript="a" * 2001)
    with pytest.raises(RequestRejected, match="the question has 1001 characters"):
        predictor.predict(good, question="b" * 1001)
    with pytest.raises(RequestRejected, match="past its deadline"):
        predictor.predict(good, deadline=0.0)  # long gone


def astuple_of(info):
    return info.num_frames, info.width, info.height
