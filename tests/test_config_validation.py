"""Config values out of range fail at load time with one line naming the key (before any model
loads), and a binary or empty annotation file is named as such."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import eval_emotion

from minigpt4.cli import train
from minigpt4.common.config import ConfigError
from minigpt4.data.annotations import AnnotationError, BadItems, read_captions, read_list_file, read_transcripts
from minigpt4.merr.config import load_merr_config
from minigpt4.run_config import load_eval_config, load_train_config

REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / "train_configs" / "demo_stage1.yaml")
EVAL = str(REPO / "eval_configs" / "demo_tiny.yaml")


@pytest.mark.parametrize("override, says", [
    ("run.batch_size=-1", "run.batch_size must be > 0, got -1"),
    ("run.batch_size=0", "run.batch_size must be > 0, got 0"),
    ("model.lora.r=-5", "model.lora.r must be >= 0, got -5"),
    ("model.lora.dropout=1.5", "model.lora.dropout must be >= 0 and < 1, got 1.5"),
    ("run.num_workers=-1", "run.num_workers must be >= 0, got -1"),
    ("run.grad_accum_steps=0", "run.grad_accum_steps must be > 0"),
    ("run.optim.init_lr=-0.001", "run.optim.init_lr must be > 0"),
    ("run.optim.min_lr=-1e-6", "run.optim.min_lr must be >= 0"),
    ("run.optim.beta2=1.0", "run.optim.beta2 must be >= 0 and < 1"),
    ("run.val_max_new_tokens=0", "run.val_max_new_tokens must be > 0"),
    ("run.max_steps=-3", "run.max_steps must be > 0"),
    ("model.vision.patch_size=0", "model.vision.patch_size must be > 0"),  # would divide by zero later
    ("model.max_txt_len=0", "model.max_txt_len must be > 0"),
    ("datasets.synthetic.max_words=-1", "datasets.synthetic.max_words must be > 0"),
    ("datasets.synthetic.modality_dropout.text=1.2", "datasets.synthetic.modality_dropout.text must be between 0 and 1"),
])
def test_train_config_values_out_of_range_name_the_key(override, says):
    with pytest.raises(ConfigError) as err:
        load_train_config(TRAIN, [override])
    assert says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("override, says", [
    ("run.batch_size=-2", "run.batch_size must be > 0"),
    ("run.max_new_tokens.emotion=0", "run.max_new_tokens.emotion must be > 0, got 0"),
    ("run.num_workers=-1", "run.num_workers must be >= 0"),
    ("run.judge.timeout_s=0", "run.judge.timeout_s must be > 0"),
])
def test_eval_config_values_out_of_range_name_the_key(override, says):
    with pytest.raises(ConfigError, match=says.replace(".", r"\.")):
        load_eval_config(EVAL, [override])


@pytest.mark.parametrize("override, says", [
    ("workers=0", "workers must be > 0"),
    ("faces.frame_stride=0", "faces.frame_stride must be > 0"),
    ("visual.endpoint.timeout_s=-1", "visual.endpoint.timeout_s must be > 0"),
    ("labels.min_probability=2", "labels.min_probability must be between 0 and 1"),
])
def test_merr_config_values_out_of_range_name_the_key(override, says):
    with pytest.raises(ConfigError, match=says.replace(".", r"\.")):
        load_merr_config(None, [override])


def test_values_in_range_still_load():
    cfg = load_train_config(TRAIN, ["model.lora.r=0", "run.num_workers=0", "run.save_every_steps=null"])
    assert cfg.model.lora.r == 0 and cfg.run.num_workers == 0 and cfg.run.save_every_steps is None


@pytest.mark.parametrize("main, cfg, override", [
    (train.main, TRAIN, "run.batch_size=-1"),
    (train.main, TRAIN, "model.lora.r=-5"),
    (eval_emotion.main, EVAL, "run.max_new_tokens.emotion=-1"),
], ids=["train-batch-size", "train-lora-r", "eval-max-new-tokens"])
def test_entry_points_print_one_error_line_and_exit_2(main, cfg, override, capsys, monkeypatch):
    """In-process, as the console scripts call `main` (see tests/test_entry_point_errors.py)."""
    def no_model(*args, **kwargs):
        raise AssertionError("a model was built before the config was checked")

    monkeypatch.setattr("minigpt4.models.builder.build_model", no_model)
    argv = ["--cfg-path", cfg, "--options", override]
    if main is eval_emotion.main:
        argv += ["--dataset", "synthetic"]
    with pytest.raises(SystemExit) as stop:
        sys.exit(main(argv))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and override.split("=")[0] in errors[0], err[-2000:]
    assert "Traceback" not in err


@pytest.mark.parametrize("content, says", [
    (b"", "is empty"),
    (b"\n  \n", "is empty"),
    (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00isom", "not UTF-8 text"),  # an MP4 given as the list
    (b"clip_001 10 happy\n\xff\xfe\xfa broken\n", "not UTF-8 text"),
])
def test_binary_or_empty_annotation_files_are_named(tmp_path, content, says):
    path = tmp_path / "train.txt"
    path.write_bytes(content)
    with pytest.raises(AnnotationError, match=says) as err:
        read_list_file(path, "merr", BadItems())
    assert str(path) in str(err.value)
    (tmp_path / "t.csv").write_bytes(content)
    with pytest.raises(AnnotationError, match=says):
        read_transcripts(tmp_path / "t.csv")
    (tmp_path / "c.json").write_bytes(content)
    with pytest.raises(AnnotationError, match=says):
        read_captions(tmp_path / "c.json")
