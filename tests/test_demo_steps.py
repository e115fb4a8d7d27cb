"""The demo's steps: each runs its program's `main` in the demo's process (imports paid once)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from minigpt4 import demo


def test_a_step_runs_the_program_in_this_process_and_is_logged(tmp_path, capsys):
    steps: list[dict] = []
    demo.run(["python", "-m", "minigpt4.data.synthetic", "--out", str(tmp_path / "c"), "--clips", "6"], steps, "corpus")
    assert capsys.readouterr().out.startswith(f"\n$ python -m minigpt4.data.synthetic --out {tmp_path / 'c'} --clips 6")
    corpus = json.loads((tmp_path / "c" / "corpus.json").read_text())
    assert len(corpus["clips"]) == 6 and len(list((tmp_path / "c" / "videos").glob("*.mp4"))) == 6
    assert [s["what"] for s in steps] == ["corpus"] and steps[0]["seconds"] >= 0


@pytest.mark.parametrize("argv, status", [
    (["python", "train.py", "--cfg-path", "{tmp}/missing.yaml"], 2),  # the program's own `error:` line
    (["python", "eval_emotion.py", "--no-such-flag"], 2),  # argparse's usage error (SystemExit)
])
def test_a_failed_step_stops_the_demo_with_its_exit_status(tmp_path, capsys, argv, status):
    steps: list[dict] = []
    with pytest.raises(demo.StepFailed, match=f"exit status {status}: python "):
        demo.run([a.format(tmp=tmp_path) for a in argv], steps)
    assert steps == [] and "error" in capsys.readouterr().err


def test_importing_the_demo_does_not_load_torch():
    """The corpus's render workers are spawned, and a spawned child imports the parent's main
    module first: `python -m minigpt4.demo` must stay light, or each worker pays torch's ~4 s."""
    probe = "import sys, minigpt4.demo; print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
