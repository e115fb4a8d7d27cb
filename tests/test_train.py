"""train.py: learning, exact resume after a kill, DDP agreement, checkpoint safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, make_sample, tiny_train_config, write_tiny_corpus
from minigpt4.data.collator import EmotionCollator
from minigpt4.models.checkpoint import CheckpointError
from minigpt4.run_config import OptimConfig
from minigpt4.training.checkpointing import find_resume_checkpoint, read_state
from minigpt4.training.optim import build_optimizer, learning_rate


def losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def run_train(cfg_path, *extra, env=None):
    return subprocess.run([sys.executable, "train.py", "--cfg-path", str(cfg_path), *extra], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=300)


def test_overfitting_one_batch_drives_the_loss_down(tiny_model):
    batch = EmotionCollator(tiny_model.tokenizer, tiny_model.cfg.num_patch_tokens, train=True)(
        [make_sample(target="happy", seed=1), make_sample(target="sad", seed=2, image=False)]
    )
    optimizer = build_optimizer(tiny_model, OptimConfig(warmup_lr=1e-2))
    tiny_model.train()
    first = tiny_model(batch).loss.item()
    for _ in range(30):
        loss = tiny_model(batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.1 * first, (first, loss.item())


def test_weight_decay_only_on_matrices_and_schedule_end_points(tiny_model):
    optimizer = build_optimizer(tiny_model, OptimConfig())
    decay, no_decay = optimizer.param_groups
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    cfg = OptimConfig()
    assert learning_rate(0, 30_000, cfg) == pytest.approx(1e-6)
    assert learning_rate(1000, 30_000, cfg) == pytest.approx(1e-5)
    assert learning_rate(30_000, 30_000, cfg) == pytest.approx(1e-6)
    assert learning_rate(500, 30_000, cfg) == pytest.approx(5.5e-6)


@pytest.mark.slow
def test_train_script_learns_validates_and_keeps_the_best(tiny_dir, tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus", n=36)
    out = tmp_path / "run"
    cfg = tiny_train_config(tmp_path / "train.yaml", tiny_dir, corpus, out, tasks=["emotion"], max_epochs=3, iters_per_epoch=12,
                            optim={"init_lr": 1e-2, "min_lr": 1e-3, "warmup_lr": 1e-3, "warmup_steps": 4})
    result = run_train(cfg)
    assert result.returncode == 0, result.stderr[-3000:]
    history = losses(out)
    assert len(history) == 36
    assert sum(history[-6:]) / 6 < 0.5 * sum(history[:6]) / 6
    best = json.loads((out / "best" / "metrics.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert best["weighted_f1"] == summary["best_metric"] and 0.0 <= best["weighted_f1"] <= 1.0
    assert (out / "best" / "trainable.safetensors").is_file()
    assert any((out / "tensorboard").iterdir())
    assert len(list((out / "checkpoints").glob("step_*"))) == 2  # keep_checkpoints


@pytest.mark.slow
def test_killed_and_resumed_run_logs_the_same_losses(tiny_dir, tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus", n=24)
    common = dict(max_epochs=3, iters_per_epoch=4, save_every_steps=2, keep_checkpoints=3)
    straight = tmp_path / "straight"
    assert run_train(tiny_train_config(tmp_path / "a.yaml", tiny_dir, corpus, straight, **common)).returncode == 0

    killed = tmp_path / "killed"
    cfg = tiny_train_config(tmp_path / "b.yaml", tiny_dir, corpus, killed, **common)
    proc = subprocess.Popen([sys.executable, "train.py", "--cfg-path", str(cfg)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill once a mid-run checkpoint exists and training went past it
        log = killed / "metrics.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= 7:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(losses(killed)) < 12, "the run finished before it could be killed"
    resumed = run_train(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    assert losses(killed) == pytest.approx(losses(straight), abs=1e-6)


@pytest.mark.slow
def test_two_process_torchrun_ends_with_identical_weights(tiny_dir, tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus", n=24)
    out = tmp_path / "ddp"
    cfg = tiny_train_config(tmp_path / "ddp.yaml", tiny_dir, corpus, out, max_epochs=1, iters_per_epoch=4,
                            grad_accum_steps=2)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29531",
         "train.py", "--cfg-path", str(cfg)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert len(set(summary["rank_weight_checksums"])) == 1
    assert len(losses(out)) == 4


def test_corrupted_checkpoint_is_refused_and_the_previous_one_still_loads(tiny_model, tmp_path):
    from minigpt4.training.checkpointing import TrainState, save_checkpoint
    from minigpt4.training.distributed import DistInfo

    info = DistInfo(0, 1, 0, torch.device("cpu"))
    optimizer = build_optimizer(tiny_model, OptimConfig())
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    older = save_checkpoint(tmp_path, tiny_model, optimizer, scaler, TrainState(step=2), "{}", info, keep=2)
    newer = save_checkpoint(tmp_path, tiny_model, optimizer, scaler, TrainState(step=4), "{}", info, keep=2)
    weights = newer / "trainable.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the sha256"):
        read_state(newer)
    with pytest.raises(CheckpointError, match="sha256"):
        find_resume_checkpoint(tmp_path, str(newer))
    assert find_resume_checkpoint(tmp_path, "auto") == older
    assert read_state(older)["state"]["step"] == 2
