"""Every entry point turns a user error into ONE `error:` line naming the file / key, exit status 2.

Each case runs the real command as a subprocess (what a user types) and fails before any model
is built, so a case costs about the import time of its script. The cases are those users hit:
a misspelt key, a bad value, a missing or invalid config file, missing weights, data or video.
A traceback here means a user error was treated as a bug.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
NOWHERE = "/nonexistent/emotion-llama"
TRAIN_CFG = "train_configs/demo_stage1.yaml"
EVAL_CFG = "eval_configs/demo_tiny.yaml"
INFER_CFG = "eval_configs/infer_tiny.yaml"
FEATURE_CFG = "minigpt4/configs/features/tiny.yaml"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("user_errors")
    (root / "bad.yaml").write_text("run: {batch_size: [1,\n")  # unterminated flow sequence
    (root / "typo_train.yaml").write_text(f"includes: [{REPO / TRAIN_CFG}]\nrun:\n  batch_sise: 2\n")
    (root / "a_file").write_text("not a folder")
    return {"bad_yaml": str(root / "bad.yaml"), "typo_train": str(root / "typo_train.yaml"),
            "file": str(root / "a_file"), "out": str(root / "out"), "cwd": str(root)}


# (id, command after `python`, what the one line must name)
CASES = [
    ("train-typo-key", ["train.py", "--cfg-path", "{typo_train}"], "did you mean 'run.batch_size'"),
    ("train-bad-value", ["train.py", "--cfg-path", TRAIN_CFG, "--options", "run.batch_size=abc"], "run.batch_size"),
    ("train-missing-cfg", ["train.py", "--cfg-path", f"{NOWHERE}/train.yaml"], "config file not found"),
    ("train-invalid-yaml", ["train.py", "--cfg-path", "{bad_yaml}"], "not valid YAML"),
    ("train-missing-init-from", ["train.py", "--cfg-path", TRAIN_CFG, "--options", f"run.init_from={NOWHERE}/w.safetensors"],
     "run.init_from"),
    ("train-missing-resume", ["train.py", "--cfg-path", TRAIN_CFG, "--resume", NOWHERE], "--resume"),
    ("train-missing-annotation", ["train.py", "--cfg-path", TRAIN_CFG, "--options",
                                  f"datasets.synthetic_coarse.annotation={NOWHERE}/train.txt"], "annotation list file not found"),
    ("eval-missing-checkpoint", ["eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic", "--checkpoint",
                                 f"{NOWHERE}/w.safetensors"], "--checkpoint"),
    ("eval-missing-annotation", ["eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic", "--options",
                                 "model.checkpoint=null", f"datasets.synthetic.annotation={NOWHERE}/test.txt",
                                 "run.output_dir={out}"], "annotation list file not found"),
    ("eval-typo-key", ["eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic", "--options", "run.batch_sise=2"],
     "did you mean 'run.batch_size'"),
    ("eval-judge-typo-key", ["eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic", "--options",
                             "run.judge.modle=gpt"], "did you mean 'run.judge.model'"),
    ("eval-judge-bad-value", ["eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic", "--options",
                              "run.judge.kind=llmm"], "judge.kind 'llmm' is unknown"),
    ("infer-missing-video", ["-m", "minigpt4.infer", "--cfg-path", INFER_CFG, "--video", f"{NOWHERE}/clip.mp4"],
     "file not found"),
    ("infer-typo-key", ["-m", "minigpt4.infer", "--cfg-path", INFER_CFG, "--video", "x.mp4", "--options",
                        "generation.temprature=1"], "did you mean 'generation.temperature'"),
    ("features-missing-folder", ["-m", "minigpt4.features", "extract", "--videos", NOWHERE, "--out", "{out}",
                                 "--cfg-path", FEATURE_CFG], NOWHERE),
    ("convert-missing-src", ["-m", "minigpt4.tools.convert_checkpoint", "--src", f"{NOWHERE}/r.pth", "--dst",
                             "{out}/w.safetensors"], "checkpoint not found"),
    ("holdout-missing-annotation", ["-m", "minigpt4.tools.holdout_split", "--annotation", f"{NOWHERE}/train.txt",
                                    "--train-out", "{out}/t.txt", "--val-out", "{out}/v.txt"], "--annotation"),
    ("inspect-missing-cfg", ["-m", "minigpt4.tools.inspect_model", "--cfg-path", f"{NOWHERE}/m.yaml", "--meta"],
     "config file not found"),
    ("tiny-models-out-is-a-file", ["-m", "minigpt4.tools.make_tiny_models", "--out", "{file}"], "is a file"),
    ("demo-outside-the-repo", ["-m", "minigpt4.demo"], "repository root"),
    ("app-bad-answer-mode", ["app.py", "--cfg-path", INFER_CFG, "--options", "answer_mode=vote"], "answer_mode"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_error_is_one_line_and_exit_2(files, args, expected):
    args = [a.format(**files) for a in args]
    if args[0].endswith(".py"):
        args[0] = str(REPO / args[0])
    cwd = files["cwd"] if args[:2] == ["-m", "minigpt4.demo"] else REPO  # the demo run from the wrong folder
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    assert expected in errors[0], errors[0]
