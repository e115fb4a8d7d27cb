"""`python -m minigpt4.tools.check_setup`: every missing file of a real config in one run, no model built."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, tiny_model_section

from minigpt4.tools.check_setup import main

REAL_CONFIGS = sorted(str(p.relative_to(REPO)) for p in [*REPO.glob("train_configs/emotion_llama_stage*.yaml"),
                                                         *REPO.glob("eval_configs/emotion_llama_*.yaml")])


def lines_of(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("cfg", REAL_CONFIGS)
def test_real_configs_in_a_fresh_tree_list_every_missing_file(cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a fresh tree: no weights, no data (relative paths resolve here)
    assert main(["--cfg-path", str(REPO / cfg)]) == 2
    out = lines_of(capsys)
    files = [line for line in out[1:-1] if "package:" not in line]
    assert files and all(line.split()[0] == "MISSING" for line in files), out
    keys = {line.split()[1] for line in files}
    assert {"model.llm.path", "model.vision.weights"} <= keys
    assert any(k.endswith(".annotation") for k in keys) and any(k.endswith(".feature_dirs.audio") for k in keys)
    assert out[-1].startswith(f"{len(files)} of ") and "docs/getting_started.md" in out[-1]


def test_stage1_names_each_file_it_needs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--cfg-path", str(REPO / "train_configs/emotion_llama_stage1_coarse.yaml")]) == 2
    missing = {line.split()[2] for line in lines_of(capsys) if line.strip().startswith("MISSING")}
    assert missing == {
        "checkpoints/Llama-2-7b-chat-hf", "checkpoints/eva_vit_g.pth", "checkpoints/minigptv2_checkpoint.pth",
        "MERR/MERR_coarse_grained.txt", "MERR/MERR_coarse_grained.json", "MERR/transcripts.csv", "MERR/frames",
        "MERR/eva_cache", "MERR/mae_340_UTT", "MERR/maeV_399_UTT", "MERR/HL-UTT",
        "MER2023/val.txt", "MER2023/transcripts.csv", "MER2023/frames",
        "MER2023/mae_340_UTT", "MER2023/maeV_399_UTT", "MER2023/HL-UTT",
    }


def test_infer_config_lists_the_encoders(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--cfg-path", str(REPO / "eval_configs/infer_real.yaml")]) == 2
    missing = {line.split()[1] for line in lines_of(capsys) if line.strip().startswith("MISSING")}
    assert {"features.audio_encoder", "features.local_encoder", "features.temporal_encoder", "model.checkpoint"} <= missing


def write_present_tree(root: Path, tiny_dir: Path, dim: int, bad_dim: int | None = None) -> Path:
    """An eval config whose every file exists (feature width `dim`, one folder `bad_dim` wide)."""
    data = root / "data"
    (data / "frames").mkdir(parents=True)
    for k, folder in enumerate(("mae_340_UTT", "maeV_399_UTT", "HL-UTT")):
        (data / folder).mkdir()
        np.save(data / folder / "clip_0.npy", np.zeros(bad_dim if bad_dim and k == 2 else dim, np.float32))
    (data / "test.txt").write_text("clip_0 10 happy\n")
    cfg = {"model": tiny_model_section(tiny_dir),
           "datasets": {"synthetic": {"reader": "merr", "annotation": str(data / "test.txt"),
                                      "frames": str(data / "frames"), "label_set": "mer2023"}}}
    path = root / "eval.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_everything_present_passes_and_a_wrong_feature_width_is_a_problem(tiny_dir, tmp_path, capsys):
    from minigpt4.models.config import ModelConfig
    from minigpt4.common.config import load_section

    dim = load_section(ModelConfig, write_present_tree(tmp_path / "a", tiny_dir, 8), "model").feature_dim
    good = write_present_tree(tmp_path / "b", tiny_dir, dim)
    assert main(["--cfg-path", str(good)]) == 0
    out = capsys.readouterr().out
    assert "llm.path" in out and f"clip_0.npy ({dim},)" in out and out.splitlines()[-1].startswith("all ")
    bad = write_present_tree(tmp_path / "c", tiny_dir, dim, bad_dim=dim + 1)
    assert main(["--cfg-path", str(bad)]) == 2
    problem = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("PROBLEM")]
    assert len(problem) == 1 and "feature_dirs.audio" in problem[0] and f"expected ({dim},)" in problem[0]


def test_eval_check_flag_runs_the_same_check_without_a_model(tmp_path):
    """`eval_emotion.py --check` on a real config: the list, exit 2, and no model loading (seconds)."""
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "eval_emotion.py"), "--cfg-path",
                           str(REPO / "eval_configs/emotion_llama_mer2023.yaml"), "--dataset", "mer2023", "--check"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "MISSING  model.checkpoint" in proc.stdout and "MISSING  datasets.mer2023.annotation" in proc.stdout


def test_a_wrong_cfg_path_fails_before_the_heavy_imports(tmp_path):
    """The top-level scripts check --cfg-path before importing torch: one error line, exit 2, and no
    torch module loaded (the check runs first; `-X importtime` would list it otherwise)."""
    for script in ("train.py", "eval_emotion.py", "app.py"):
        proc = subprocess.run([sys.executable, "-X", "importtime", str(REPO / script), "--cfg-path", "/nope.yaml",
                               "--dataset", "x"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        errors = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
        assert proc.returncode == 2 and errors == ["error: config file not found: /nope.yaml"], proc.stderr[-2000:]
        assert "| torch" not in proc.stderr


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    from minigpt4.common.errors import run_cli

    def body():
        raise KeyboardInterrupt

    assert run_cli(body) == 130
    assert capsys.readouterr().err == "interrupted (Ctrl-C)\n"


def test_preflight_reads_both_flag_spellings(tmp_path):
    from minigpt4.common.preflight import missing_path

    real = tmp_path / "c.yaml"
    real.write_text("{}")
    assert missing_path(["--cfg-path", str(real)]) is None and missing_path([f"--cfg-path={real}"]) is None
    assert missing_path(["--cfg-path=/no.yaml"]) == "config file not found: /no.yaml"
    assert missing_path(["--score", "p.jsonl", "--dataset", "mer2023"]) is None  # no --cfg-path: nothing to check
