"""Every entry point turns a user error into ONE `error:` line naming the file / key, exit status 2.

The cases are those users hit: a misspelt key, a bad value, a missing or invalid config file,
missing weights, data or video. Each fails before any model is built. They run in-process through
the entry point's `main(argv)`, as its console script (`sys.exit(main())`) and its
`if __name__ == "__main__"` block call it, so a case costs milliseconds instead of an interpreter
start; two of them also run as the command a user types, a subprocess, to prove the shell path.
A traceback here means a user error was treated as a bug.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

import app
import eval_emotion
from conftest import ENV, REPO
from minigpt4 import demo, infer
from minigpt4.cli import train
from minigpt4.features import __main__ as features_cli
from minigpt4.tools import convert_checkpoint, holdout_split, inspect_model, make_tiny_models

NOWHERE = "/nonexistent/emotion-llama"
TRAIN_CFG = "train_configs/demo_stage1.yaml"
EVAL_CFG = "eval_configs/demo_tiny.yaml"
INFER_CFG = "eval_configs/infer_tiny.yaml"
FEATURE_CFG = "minigpt4/configs/features/tiny.yaml"

# what a user types -> the `main` it runs
ENTRY_POINTS = {
    "train.py": train.main, "eval_emotion.py": eval_emotion.main, "app.py": app.main, "minigpt4.infer": infer.main,
    "minigpt4.features": features_cli.main, "minigpt4.tools.convert_checkpoint": convert_checkpoint.main,
    "minigpt4.tools.holdout_split": holdout_split.main, "minigpt4.tools.inspect_model": inspect_model.main,
    "minigpt4.tools.make_tiny_models": make_tiny_models.main, "minigpt4.demo": demo.main,
}
SHELL_CASES = ("eval-typo-key", "holdout-missing-annotation")  # also run as a subprocess: a top-level script, a -m module


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


def command(args: list[str], files: dict[str, str]) -> tuple[list[str], str]:
    """The case's arguments with the test's files filled in, and the folder it runs in."""
    args = [a.format(**files) for a in args]
    cwd = files["cwd"] if args[:2] == ["-m", "minigpt4.demo"] else str(REPO)  # the demo run from the wrong folder
    return args, cwd


def assert_one_error_line(status, stderr: str, expected: str) -> None:
    assert status == 2, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr.splitlines()
    assert expected in errors[0], errors[0]


@pytest.fixture()
def isolated(monkeypatch):
    """An entry point called in-process may set up logging or environment variables as a program
    does; put them back so the rest of the session sees none of it."""
    root, environ = logging.getLogger(), dict(os.environ)
    handlers, level = list(root.handlers), root.level
    yield monkeypatch
    root.handlers[:], root.level = handlers, level
    os.environ.clear()
    os.environ.update(environ)


@pytest.mark.parametrize("args, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_error_is_one_line_and_exit_2(files, args, expected, isolated, capsys):
    args, cwd = command(args, files)
    isolated.chdir(cwd)
    script, argv = (args[1], args[2:]) if args[0] == "-m" else (args[0], args[1:])
    try:
        status = ENTRY_POINTS[script](argv)
    except SystemExit as exit:  # argparse, or a program that exits by itself
        status = exit.code
    assert_one_error_line(status, capsys.readouterr().err, expected)


@pytest.mark.parametrize("args, expected", [c[1:] for c in CASES if c[0] in SHELL_CASES], ids=[c[0] for c in CASES if c[0] in SHELL_CASES])
def test_user_error_is_one_line_and_exit_2_from_the_shell(files, args, expected):
    args, cwd = command(args, files)
    if args[0].endswith(".py"):
        args[0] = str(REPO / args[0])
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert_one_error_line(done.returncode, done.stderr, expected)
