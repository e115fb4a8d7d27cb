"""The demo's plan (steps and an ETA, printed first) and its one-screen summary (printed last)."""

from __future__ import annotations

import argparse
from pathlib import Path

from minigpt4 import demo

REPO = Path(__file__).resolve().parents[1]


def test_plan_lists_every_step_with_an_eta(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(demo, "DATA", tmp_path / "data")  # nothing made yet: corpus and models are planned too
    monkeypatch.setattr(demo, "TINY", tmp_path / "tiny")
    args = argparse.Namespace(clips=1000, quick=False)
    eta = demo.print_plan(args, demo.OUT)
    out = capsys.readouterr().out
    assert "synthetic corpus: 1000 clips" in out and "tiny random models" in out
    assert "train stage1: 4 epochs x 175 steps" in out and "train stage2: 2 epochs x 175 steps" in out
    assert "(6 passes, the model built once)" in out and f"ETA ~{eta / 60:.1f} min" in out
    quick_eta = demo.print_plan(argparse.Namespace(clips=1000, quick=True), Path("outputs/demo_quick"))
    out = capsys.readouterr().out
    assert "train stage1: 2 epochs" in out and "train stage2: 1 epoch x" in out and "(1 pass, the model built once)" in out
    assert quick_eta < eta


def test_summary_fits_one_screen_and_names_the_numbers():
    by_mode = {"generate": {"weighted_f1": 0.9, "accuracy": 0.9, "n_invalid": 0},
               "score_labels": {"weighted_f1": 0.91, "accuracy": 0.91, "n_invalid": 0}}
    results = {
        "all_inputs": {"weighted_f1": 0.9612, "accuracy": 0.96, "n": 150, "n_invalid": 0},
        "eval_without_one_input": {name: {"dropped": drop, **by_mode} for name, drop in demo.EVAL_DROPS.items()},
        "stage1_best": {"weighted_f1": 0.93, "step": 525}, "stage2_best": {"weighted_f1": 0.95, "step": 350},
        "steps": [{"what": "stage 1", "seconds": 61.0}, {"what": "evaluation", "seconds": 9.4}],
        "total_seconds": 170.2,
    }
    screen = demo.summary_screen(results, demo.OUT, eta=150.0)
    lines = screen.splitlines()
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 100
    assert "weighted F1 0.961" in screen and "150 clips" in screen and "170 s (plan: ~150 s)" in screen
    assert "no transcript" in screen and "no frame" in screen and "all inputs  " not in screen
    assert "stage 1 61 s" in screen and "outputs/demo/stage2/best/trainable.safetensors" in screen
