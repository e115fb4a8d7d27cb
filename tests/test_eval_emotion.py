"""eval_emotion.py end to end on CPU: the real script, the tiny model and a tiny on-disk dataset."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import free_port, tiny_model_section

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "eval_emotion.py"
LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
FEATURE_DIRS = ("mae_340_UTT", "maeV_399_UTT", "HL-UTT")
N_CLIPS = 12


def write_tiny_dataset(root: Path, n: int = N_CLIPS, dim: int = 32, folds: int = 0) -> Path:
    """A list file (or DFEW-style fold CSVs), transcripts, 32-d features and small JPEG frames."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    names = [f"clip_{i:03d}" for i in range(n)]
    (root / "frames").mkdir(exist_ok=True)
    for folder in FEATURE_DIRS:
        (root / folder).mkdir(exist_ok=True)
    lines, rows = [], ["name,sentence"]
    for i, name in enumerate(names):
        for folder in FEATURE_DIRS:
            np.save(root / folder / f"{name}.npy", rng.standard_normal(dim).astype(np.float32))
        cv2.imwrite(str(root / "frames" / f"{name}.jpg"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        lines.append(f"{name} 10 {LABELS[i % len(LABELS)]}")
        rows.append(f"{name},I feel something number {i}")
    (root / "test.txt").write_text("\n".join(lines) + "\n")
    (root / "transcripts.csv").write_text("\n".join(rows) + "\n")
    for fold in range(1, folds + 1):  # DFEW-style split files: video_name,label (1..7)
        for split in ("train", "test"):
            chosen = [i for i in range(n) if (i % folds == fold - 1) == (split == "test")]
            (root / f"{split}_set_{fold}.csv").write_text("video_name,label\n" + "".join(f"{names[i]},{1 + i % 7}\n" for i in chosen))
    return root


def write_config(path: Path, tiny_dir: Path, data: Path, out: Path, **run) -> Path:
    cfg = {
        "model": tiny_model_section(tiny_dir),
        "datasets": {
            "synthetic": {"reader": "merr", "annotation": str(data / "test.txt"), "transcripts": str(data / "transcripts.csv"),
                          "frames": str(data / "frames"), "label_set": "mer2023", "tasks": ["emotion"]},
            "dfew": {"reader": "dfew", "annotation": str(data / "{split}_set_{fold}.csv"), "frames": str(data / "frames"),
                     "feature_root": str(data), "label_set": "dfew", "tasks": ["emotion"]},
        },
        "run": {"output_dir": str(out), "batch_size": 4, "num_workers": 0, "device": "cpu",
                "max_new_tokens": {"emotion": 6}, **run},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_script(*args: str, launcher: tuple[str, ...] = (sys.executable,), timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([*launcher, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def setup(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = write_tiny_dataset(root / "data", folds=2)
    return root, write_config(root / "eval.yaml", tiny_dir, data, root / "out")


@pytest.fixture(scope="module")
def single_run(setup):
    root, cfg = setup
    proc = run_script("--cfg-path", str(cfg), "--dataset", "synthetic")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "out" / "synthetic", proc


def test_end_to_end_writes_predictions_metrics_and_plot(single_run):
    out, proc = single_run
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == [f"clip_{i:03d}" for i in range(N_CLIPS)]
    assert all(r["task"] == "emotion" and r["label"] == LABELS[i % 6] and isinstance(r["answer"], str)
               for i, r in enumerate(records))
    assert any(r["answer"] for r in records)  # the tiny model does generate text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "mer2023" and metrics["config_key"] == "synthetic" and metrics["n_records"] == N_CLIPS
    m = metrics["metrics"]
    assert m["n"] == N_CLIPS
    # The scores are those of the written predictions, recomputed here with sklearn directly.
    from sklearn.metrics import accuracy_score, f1_score

    from minigpt4.eval.parsing import parse_label

    gold = [r["label"] for r in records]
    guess = [parse_label(r["answer"], LABELS) or "<invalid>" for r in records]
    assert m["accuracy"] == pytest.approx(accuracy_score(gold, guess))
    assert m["weighted_f1"] == pytest.approx(f1_score(gold, guess, labels=list(LABELS), average="weighted", zero_division=0))
    assert m["n_invalid"] == guess.count("<invalid>")
    assert np.asarray(metrics["confusion"]["counts"]).sum() == N_CLIPS
    png = out / "confusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and cv2.imread(str(png)).shape[0] > 100
    assert "| weighted_f1 |" in (out / "summary.md").read_text() and "| weighted_f1 |" in proc.stdout
    assert "synthetic:" in (out / "config.yaml").read_text()  # the resolved config travels with the results


def test_score_only_reproduces_metrics(single_run, tmp_path, capsys):
    from minigpt4.cli.eval_emotion import main

    out, _ = single_run
    assert main(["--score", str(out / "predictions.jsonl"), "--dataset", "mer2023", "--out", str(tmp_path)]) == 0
    rescored = json.loads((tmp_path / "metrics.json").read_text())
    original = json.loads((out / "metrics.json").read_text())
    assert rescored["metrics"] == original["metrics"] and rescored["confusion"] == original["confusion"]
    assert (tmp_path / "confusion.png").is_file() and "| weighted_f1 |" in capsys.readouterr().out


def test_release_protocol_and_both_modes_do_not_overwrite_the_clean_evaluation(setup, single_run, tmp_path, capsys):
    """Eval twice (clean, then release with answer_mode both): both results stay intact and say what they are."""
    root, cfg = setup
    clean_dir, _ = single_run
    clean_before = {name: (clean_dir / name).read_bytes() for name in ("predictions.jsonl", "metrics.json")}
    from minigpt4.cli.eval_emotion import main

    assert main(["--cfg-path", str(cfg), "--dataset", "synthetic", "--protocol", "release",
                 "--options", "run.answer_mode=both", "run.max_new_tokens={emotion: 2}"]) == 0
    release_dir = clean_dir / "release"  # `both` reports the generated answers' metrics, so no answer-mode folder
    assert {name: (clean_dir / name).read_bytes() for name in clean_before} == clean_before
    clean, release = (json.loads((d / "metrics.json").read_text()) for d in (clean_dir, release_dir))
    assert (clean["protocol"], clean["answer_mode"], clean["parse"]) == ("clean", "generate", "both")
    assert (release["protocol"], release["answer_mode"], release["parse"]) == ("release", "both", "both")
    assert clean["config"] == release["config"] == str(cfg) and clean["checkpoint"] is None
    assert release["resolved_config"] == str(release_dir / "config.yaml")
    assert "protocol: release" in (release_dir / "config.yaml").read_text()
    assert "- protocol: release" in (release_dir / "summary.md").read_text()
    assert "- protocol: clean" in (clean_dir / "summary.md").read_text()
    release_records = [json.loads(line) for line in (release_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(release_records) == N_CLIPS and all("scored_answer" in r for r in release_records)

    # --score on the `both` file scores the scored labels too, exactly as the eval did
    assert main(["--score", str(release_dir / "predictions.jsonl"), "--dataset", "mer2023", "--out", str(tmp_path)]) == 0
    rescored = json.loads((tmp_path / "metrics.json").read_text())
    assert rescored["by_answer_mode"] == release["by_answer_mode"] and "| score_labels |" not in capsys.readouterr().err

    # the model card says which evaluation its numbers come from
    from minigpt4.tools.export import metrics_table

    card = "\n".join(metrics_table(release, release_dir / "metrics.json"))
    assert "- protocol: release" in card and "- answer mode: both" in card and f"- config: {cfg}" in card


def test_without_each_input_builds_the_model_once_and_matches_separate_runs(setup, single_run, tmp_path, capsys):
    """`--without audio,text`: the clean results as before, then one folder per removed input whose
    answers equal a separate evaluation with that input dropped (datasets.<key>.drop_modalities)."""
    from minigpt4.cli.eval_emotion import main

    root, cfg = setup
    clean_dir, _ = single_run
    out = tmp_path / "together"
    assert main(["--cfg-path", str(cfg), "--dataset", "synthetic", "--without", "audio,text",
                 "--options", f"run.output_dir={out}"]) == 0
    printed = capsys.readouterr().out
    assert "| without audio |" in printed and "| without text |" in printed

    def answers(folder: Path) -> list[tuple[str, str]]:
        return [(r["name"], r["answer"]) for r in map(json.loads, (folder / "predictions.jsonl").read_text().splitlines())]

    together = out / "synthetic"
    assert answers(together) == answers(clean_dir)  # the extra passes leave the full evaluation as it was
    assert json.loads((together / "metrics.json").read_text())["dropped_inputs"] == []
    for name in ("audio", "text"):
        alone = tmp_path / f"alone_{name}"
        assert main(["--cfg-path", str(cfg), "--dataset", "synthetic", "--options", f"run.output_dir={alone}",
                     f"datasets.synthetic.drop_modalities=[{name}]"]) == 0
        # a run with an input dropped writes to its own folder, never over the full evaluation
        assert not (alone / "synthetic" / "metrics.json").exists()
        assert answers(together / f"without_{name}") == answers(alone / "synthetic" / f"without_{name}")
        metrics = json.loads((together / f"without_{name}" / "metrics.json").read_text())
        assert metrics["dropped_inputs"] == [name] and metrics["metrics"]["n"] == N_CLIPS
    capsys.readouterr()
    assert main(["--cfg-path", str(cfg), "--dataset", "synthetic", "--without", "audio,video"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --without") and "unknown input(s) ['video']" in err and "each, image, local" in err


def test_score_errors_name_the_eval_command(single_run, capsys):
    from minigpt4.cli.eval_emotion import main

    out, _ = single_run
    with pytest.raises(SystemExit):
        main(["--score", str(out / "predictions.jsonl"), "--dataset", "nope"])
    err = capsys.readouterr().err
    assert err.startswith("error:") and "eval_emotion.py --score --help" in err and "minigpt4.eval.scoring" not in err


def test_unknown_dataset_lists_configured_ones(setup, capsys):
    from minigpt4.cli.eval_emotion import main

    _, cfg = setup
    assert main(["--cfg-path", str(cfg), "--dataset", "mer2099"]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: no dataset 'mer2099'" in err and "configured: dfew, synthetic" in err


def test_bad_benchmark_foldless_all_folds_and_missing_config(setup, capsys):
    from minigpt4.cli.eval_emotion import main

    _, cfg = setup
    assert main(["--cfg-path", str(cfg), "--dataset", "synthetic", "--benchmark", "mer2099"]) == 2
    assert "is not a scorer" in capsys.readouterr().err
    assert main(["--cfg-path", str(cfg), "--dataset", "synthetic", "--all-folds"]) == 2
    assert "has no folds" in capsys.readouterr().err
    assert main(["--cfg-path", str(cfg.with_name("nope.yaml")), "--dataset", "synthetic"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_benchmark_resolution():
    from minigpt4.cli.eval_emotion import EvalError, resolve_benchmark
    from minigpt4.data.config import DatasetConfig

    assert resolve_benchmark("dfew", DatasetConfig(reader="merr"))[0] == "dfew"  # the key wins over the reader
    assert resolve_benchmark("MER2024-OV", DatasetConfig())[0] == "mer2024_ov"
    assert resolve_benchmark("synthetic", DatasetConfig(reader="merr")) == ("mer2023", "reader 'merr'")
    assert resolve_benchmark("sessions", DatasetConfig(reader="iemocap"))[0] == "iemocap"
    assert resolve_benchmark("x", DatasetConfig(reader="merr"), "emer") == ("emer", "--benchmark")
    with pytest.raises(EvalError, match="cannot tell which benchmark"):
        resolve_benchmark("webdata", DatasetConfig(reader="shards"))


def test_all_folds_aggregates_and_single_fold_dir(setup):
    from minigpt4.cli.eval_emotion import main  # in-process: the script's body, without a second interpreter start

    root, cfg = setup
    assert main(["--cfg-path", str(cfg), "--dataset", "dfew", "--all-folds", "--folds", "1,2"]) == 0
    metrics = json.loads((root / "out" / "dfew" / "metrics.json").read_text())
    assert sorted(metrics["folds"]) == ["1", "2"] and metrics["metrics"]["n_folds"] == 2
    assert {"uar", "war"} <= set(metrics["metrics"])
    records = [json.loads(x) for x in (root / "out" / "dfew" / "predictions.jsonl").read_text().splitlines()]
    assert [r["fold"] for r in records] == [1] * 6 + [2] * 6
    assert main(["--cfg-path", str(cfg), "--dataset", "dfew", "--options", "datasets.dfew.fold=2"]) == 0
    single = [json.loads(x) for x in (root / "out" / "dfew" / "fold_2" / "predictions.jsonl").read_text().splitlines()]
    assert single == [r for r in records if r["fold"] == 2]  # same model, same items -> same answers



@pytest.mark.slow
def test_two_processes_match_one(setup, single_run, tmp_path):
    _, cfg = setup
    out, _ = single_run
    launcher = (sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(free_port()))
    proc = run_script("--cfg-path", str(cfg), "--dataset", "synthetic", "--options", f"run.output_dir={tmp_path}",
                      launcher=launcher, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("| weighted_f1 |") == 1  # only rank 0 reports
    two = (tmp_path / "synthetic" / "predictions.jsonl").read_text()
    assert two == (out / "predictions.jsonl").read_text()


@pytest.mark.slow
def test_kfold_driver_two_folds_from_the_same_init(setup, tmp_path):
    """train.py + eval_emotion.py per fold via the CLI; both folds start from one init file."""
    import torch
    from safetensors.torch import load_file

    from minigpt4.models.builder import build_model
    from minigpt4.models.checkpoint import save_trainable
    from minigpt4.run_config import load_eval_config

    root, eval_cfg = setup
    model_cfg = yaml.safe_load(eval_cfg.read_text())["model"]
    data = root / "data"
    dfew = {"reader": "dfew", "annotation": str(data / "{split}_set_{fold}.csv"), "frames": str(data / "frames"),
            "feature_root": str(data), "label_set": "dfew", "tasks": ["emotion"]}
    torch.manual_seed(1)  # the init file: a seeded model's trainable tensors (what stage 1 would hand over)
    init = tmp_path / "init.safetensors"
    save_trainable(build_model(load_eval_config(str(eval_cfg)).model), init)
    train_cfg = tmp_path / "train.yaml"
    train_cfg.write_text(yaml.safe_dump({
        "model": model_cfg, "datasets": {"dfew": dfew},
        "run": {"output_dir": str(tmp_path / "unused"), "max_epochs": 1, "iters_per_epoch": 2, "batch_size": 2,
                "num_workers": 0, "device": "cpu", "log_every": 1, "init_from": str(init),
                "optim": {"warmup_steps": 1}},
    }))
    out = tmp_path / "kfold"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "minigpt4.eval.kfold_driver", "--train-cfg", str(train_cfg), "--eval-cfg", str(eval_cfg),
         "--dataset", "dfew", "--folds", "2", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "kfold.json").read_text())
    assert summary["benchmark"] == "dfew" and sorted(summary["folds"]) == ["1", "2"]
    assert summary["mean"]["n_folds"] == 2 and "uar" in summary["mean"] and "war_std" in summary["mean"]
    pooled = json.loads((out / "metrics.json").read_text())
    assert pooled["metrics"]["uar"] == pytest.approx(summary["mean"]["uar"])  # same per-fold numbers, same mean
    records = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted({r["fold"] for r in records}) == [1, 2] and len(records) == N_CLIPS
    for k in (1, 2):  # each fold trained on the other fold's clips only, starting from `init`
        cfg_k = yaml.safe_load((out / f"fold_{k}" / "train" / "config.yaml").read_text())
        assert cfg_k["run"]["init_from"] == str(init) and cfg_k["datasets"]["dfew"]["fold"] == k
        assert (out / f"fold_{k}" / "train" / "best" / "trainable.safetensors").is_file()
    assert set(load_file(init)) and load_file(out / "fold_1/train/best/trainable.safetensors").keys() == load_file(init).keys()


class DiskFullWhileWriting:
    """`os.fdopen` for `atomic_write`: writes to a file whose name contains `name` stop halfway
    through with ENOSPC, as on a disk that fills up; other files are written normally."""

    def __init__(self, name: str):
        self.name, self.fdopen = name, os.fdopen

    def __call__(self, fd, *args, **kwargs):
        handle = self.fdopen(fd, *args, **kwargs)
        if self.name not in os.readlink(f"/proc/self/fd/{fd}"):
            return handle
        real_write = handle.write

        def write(data):
            real_write(data[: len(data) // 2])
            handle.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        handle.write = write
        return handle


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell which file is written")
@pytest.mark.parametrize("victim", ["predictions.jsonl", "metrics.json"])
def test_a_full_disk_leaves_no_half_file_and_says_so(setup, tmp_path, monkeypatch, capsys, victim):
    from minigpt4.cli.eval_emotion import main

    _, cfg = setup
    out = tmp_path / "out"
    monkeypatch.setattr(os, "fdopen", DiskFullWhileWriting(victim))
    status = main(["--cfg-path", str(cfg), "--dataset", "synthetic", "--options", f"run.output_dir={out}"])
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1] == (f"error: the disk is full (No space left on device) while writing {out / 'synthetic' / victim}. "
                       "Free some space there (or write to another disk) and run again")
    assert sum(line.startswith("error:") for line in err) == 1 and not any("Traceback" in line for line in err)
    written = sorted(p.name for p in (out / "synthetic").iterdir())
    assert victim not in written and not [name for name in written if name.endswith(".tmp")], written
    if victim == "metrics.json":  # what was complete before the disk filled up is whole
        assert len((out / "synthetic" / "predictions.jsonl").read_text().splitlines()) == N_CLIPS
