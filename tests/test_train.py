"""train.py: learning, exact resume after a kill, DDP agreement, checkpoint safety."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, free_port, make_sample, tiny_train_config, write_tiny_corpus
from minigpt4.cli.train import main as train_main
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
def test_train_script_learns_validates_and_keeps_the_best(tiny_dir, tmp_path, caplog):
    corpus = write_tiny_corpus(tmp_path / "corpus", n=36)
    out = tmp_path / "run"
    cfg = tiny_train_config(tmp_path / "train.yaml", tiny_dir, corpus, out, tasks=["emotion"], max_epochs=3, iters_per_epoch=12,
                            optim={"init_lr": 1e-2, "min_lr": 1e-3, "warmup_lr": 1e-3, "warmup_steps": 4})
    caplog.set_level(logging.INFO, logger="train")
    assert train_main(["--cfg-path", str(cfg), "--options", "run.log_every=4"]) == 0  # in-process: no interpreter start
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(4, 37, 4)) and all(r["steps"] == 4 for r in lines)
    history = [r["loss"] for r in lines]
    assert sum(history[-2:]) / 2 < 0.6 * sum(history[:2]) / 2, history
    assert "verifying settings" in caplog.text
    validations = [json.loads(line.split("validation: ", 1)[1]) for line in caplog.messages if " validation: " in line]
    assert len(validations) == 3
    scores = [v["weighted_f1"] for v in validations]
    best = json.loads((out / "best" / "metrics.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    first_best = scores.index(max(scores))
    assert best["weighted_f1"] == summary["best_metric"] == pytest.approx(max(scores), abs=1e-4)
    assert best["step"] == summary["best_step"] == 12 * (first_best + 1) and best["epoch"] == first_best
    assert (out / "best" / "trainable.safetensors").is_file()
    assert any((out / "tensorboard").iterdir())
    assert len(list((out / "checkpoints").glob("step_*"))) == 2  # keep_checkpoints


@pytest.mark.slow
def test_killed_and_resumed_run_logs_the_same_losses(tiny_dir, tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus", n=24)
    # Log lines every 3 steps and at each checkpoint (every 2): steps 2 3 4 6 8 9 10 12.
    common = dict(max_epochs=3, iters_per_epoch=4, save_every_steps=2, keep_checkpoints=3, log_every=3)
    straight = tmp_path / "straight"
    assert run_train(tiny_train_config(tmp_path / "a.yaml", tiny_dir, corpus, straight, **common)).returncode == 0

    killed = tmp_path / "killed"
    cfg = tiny_train_config(tmp_path / "b.yaml", tiny_dir, corpus, killed, **common)
    proc = subprocess.Popen([sys.executable, "train.py", "--cfg-path", str(cfg)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill once a mid-run checkpoint exists and training went past it
        log = killed / "metrics.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(losses(killed)) < 8, "the run finished before it could be killed"
    resumed = run_train(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    assert [json.loads(l)["step"] for l in (straight / "metrics.jsonl").read_text().splitlines()] == [2, 3, 4, 6, 8, 9, 10, 12]
    assert losses(killed) == pytest.approx(losses(straight), abs=1e-6)


def test_corrupted_checkpoint_is_refused_and_the_previous_one_still_loads(tiny_model, tmp_path):
    from minigpt4.training.checkpointing import TrainState, save_checkpoint
    from minigpt4.common.distributed import DistInfo

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


# ------------------------------------------------------------------------------------------ issue 13
def _grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("reduction", ["token", "sample"])
def test_accumulated_micro_steps_give_the_gradient_of_one_big_batch(tiny_model, reduction):
    from minigpt4.common.distributed import DistInfo
    from minigpt4.training.step import forward_backward

    info = DistInfo(0, 1, 0, torch.device("cpu"))
    samples = [make_sample(target="happy", seed=1), make_sample(target="sad", seed=2, image=False),
               make_sample(target="a much longer explanation of why the person is worried", seed=3),
               make_sample(target="surprise and some more words here", seed=4, feature_present=(True, False, True))]
    collate = EmotionCollator(tiny_model.tokenizer, tiny_model.cfg.num_patch_tokens, train=True)
    tiny_model.cfg.loss_reduction = reduction
    try:
        tiny_model.train()
        big_sum, big_count = forward_backward(tiny_model, [collate(samples)], info, reduction=reduction)
        big = _grads(tiny_model)
        micro = [collate(samples[:2]), collate(samples[2:])]
        acc_sum, acc_count = forward_backward(tiny_model, micro, info, reduction=reduction)
        accumulated = _grads(tiny_model)
        # The old rule: each micro-batch's own mean, divided by the number of micro-steps.
        for batch in micro:
            (tiny_model(batch).loss / len(micro)).backward()
        per_micro_mean = _grads(tiny_model)
    finally:
        tiny_model.cfg.loss_reduction = "token"
    assert big and set(big) == set(accumulated)
    if reduction == "sample":
        assert int(big_count) == 4
    assert torch.allclose(acc_sum, big_sum, atol=1e-4) and int(acc_count) == int(big_count)
    for name in big:
        assert torch.allclose(accumulated[name], big[name], atol=1e-5, rtol=1e-4), name
    if reduction == "token":  # the micro-batches hold different token counts: the old rule is off
        assert any(not torch.allclose(per_micro_mean[n], big[n], atol=1e-5, rtol=1e-3) for n in big)


def test_run_seed_decides_the_projections_of_a_random_tower(tiny_model_cfg):
    import dataclasses

    from minigpt4.models.builder import build_model

    cfg = dataclasses.replace(tiny_model_cfg, vision=dataclasses.replace(tiny_model_cfg.vision, weights=None))

    def build(seed):
        torch.manual_seed(seed)
        return build_model(cfg)

    a, b, a2 = build(1), build(2), build(1)
    assert not torch.equal(a.llama_proj.weight, b.llama_proj.weight)
    assert torch.equal(a.llama_proj.weight, a2.llama_proj.weight)
    # The tower itself follows vision.init_seed, not the run seed.
    assert torch.equal(a.visual_encoder.patch_embed.proj.weight, b.visual_encoder.patch_embed.proj.weight)


def test_class_balanced_weights_over_two_training_sets(tiny_dir, tmp_path):
    import yaml

    from minigpt4.data.datasets import class_balanced_weights
    from minigpt4.run_config import load_train_config
    from minigpt4.training.recipe import build_train_set

    corpus = write_tiny_corpus(tmp_path / "corpus", n=24)
    cfg_path = tiny_train_config(tmp_path / "t.yaml", tiny_dir, corpus, tmp_path / "out", tasks=["emotion"], class_balanced=True)
    raw = yaml.safe_load(cfg_path.read_text())
    raw["datasets"]["z_second"] = {**raw["datasets"]["tiny"], "annotation": str(corpus / "val.txt")}
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_train_config(str(cfg_path))
    train_set = build_train_set(cfg, cfg.model.vision.image_size)
    weights = class_balanced_weights(train_set)
    # 16 train clips, then 4 val clips ("tiny" < "z_second"): the label of clip i is MER2023[i % 6].
    labels = [i % 6 for i in range(20)]
    counts = {k: labels.count(k) for k in set(labels)}
    assert weights == pytest.approx([1.0 / counts[k] for k in labels])


def test_a_broken_validation_config_fails_before_the_first_step(tiny_dir, tmp_path, caplog, capsys):
    corpus = write_tiny_corpus(tmp_path / "corpus", n=24)
    out = tmp_path / "run"
    cfg = tiny_train_config(tmp_path / "train.yaml", tiny_dir, corpus, out, max_epochs=2, iters_per_epoch=50,
                            val_metric="wighted_f1")
    caplog.set_level(logging.INFO, logger="train")
    assert train_main(["--cfg-path", str(cfg)]) == 2  # in-process, as `python train.py` runs it
    assert "verifying settings" in caplog.text
    assert "error: run.val_metric='wighted_f1' is not a validation metric" in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().strip()


def torchrun(*args, cfg, env=None):
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *args, "train.py", "--cfg-path", str(cfg)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_one_node_two_nodes_and_one_process_train_the_same(tiny_dir, tmp_path):
    """2 processes on 1 node = 2 nodes x 1 process (c10d rendezvous on localhost) = 1 process with
    twice the batch: the loss of a step is the mean over all its target tokens, wherever they ran."""
    corpus = write_tiny_corpus(tmp_path / "corpus", n=24)

    def config(name, **run):
        return tiny_train_config(tmp_path / f"{name}.yaml", tiny_dir, corpus, tmp_path / name, max_epochs=1,
                                 iters_per_epoch=3, log_every=1, grad_accum_steps=2, **run)

    one_node = torchrun("--nproc-per-node", "2", "--master-port", str(free_port()), cfg=config("one_node", batch_size=1))
    _, err = one_node.communicate(timeout=300)
    assert one_node.returncode == 0, err[-3000:]
    port = free_port()
    nodes = [
        torchrun("--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "two_nodes",
                 "--rdzv-endpoint", f"127.0.0.1:{port}", cfg=config("two_nodes", batch_size=1))
        for _ in range(2)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]
    assert train_main(["--cfg-path", str(config("one_process", batch_size=2))]) == 0  # in-process

    summaries = {name: json.loads((tmp_path / name / "summary.json").read_text())
                 for name in ("one_node", "two_nodes", "one_process")}
    assert summaries["one_node"]["world_size"] == summaries["two_nodes"]["world_size"] == 2
    assert len(set(summaries["one_node"]["rank_weight_checksums"])) == 1
    assert summaries["two_nodes"]["rank_weight_checksums"] == summaries["one_node"]["rank_weight_checksums"]
    assert len(losses(tmp_path / "one_node")) == 3
    # Rank r takes items r, r + 2, ... of the epoch's stream: the same samples per step as one process
    # with a batch of 2; only the order of float additions differs.
    assert losses(tmp_path / "two_nodes") == losses(tmp_path / "one_node")
    assert losses(tmp_path / "one_process") == pytest.approx(losses(tmp_path / "one_node"), rel=1e-4)


# ------------------------------------------------------------------------------------------ issue 25
def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_refuses_when_every_checkpoint_is_invalid_and_starts_fresh_only_when_asked(tiny_dir, tmp_path, capsys):
    corpus = write_tiny_corpus(tmp_path / "corpus", n=24)
    out = tmp_path / "run"
    cfg = tiny_train_config(tmp_path / "train.yaml", tiny_dir, corpus, out, max_epochs=1, iters_per_epoch=4,
                            save_every_steps=2, keep_checkpoints=2, val_every_epochs=5)
    assert train_main(["--cfg-path", str(cfg)]) == 0
    older, newer = sorted((out / "checkpoints").glob("step_*"))
    weights = newer / "trainable.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    rng = older / "rng_rank0.pt"
    rng.write_bytes(rng.read_bytes()[:100])  # truncated
    before = _tree(out / "checkpoints"), (out / "metrics.jsonl").read_bytes()
    capsys.readouterr()

    assert train_main(["--cfg-path", str(cfg), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --resume: none of the 2 checkpoint(s)"), err
    assert f"{newer.name}: {weights}: contents do not match the sha256" in err[0]
    assert f"{older.name}: {rng}: contents do not match the sha256" in err[0] and "--start-fresh" in err[0]
    assert (_tree(out / "checkpoints"), (out / "metrics.jsonl").read_bytes()) == before  # nothing overwritten

    assert train_main(["--cfg-path", str(cfg), "--resume", "--start-fresh"]) == 0
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()][-1] == 4
    assert find_resume_checkpoint(out, "auto").name == "step_0000004"


def test_a_truncated_rng_file_and_a_half_written_log_line_resume_exactly(tiny_dir, tmp_path):
    """The newest checkpoint's rng file is cut short and the log ends in half a line (a crash while
    writing): resume takes the previous checkpoint, drops the half line, and logs the losses of a
    run that was never stopped."""
    corpus = write_tiny_corpus(tmp_path / "corpus", n=24)
    common = dict(max_epochs=2, iters_per_epoch=4, save_every_steps=2, keep_checkpoints=3, log_every=1,
                  val_every_epochs=5)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert train_main(["--cfg-path", str(tiny_train_config(tmp_path / "a.yaml", tiny_dir, corpus, straight, **common))]) == 0
    cfg = tiny_train_config(tmp_path / "b.yaml", tiny_dir, corpus, stopped, max_steps=6, **common)
    assert train_main(["--cfg-path", str(cfg)]) == 0
    rng = stopped / "checkpoints" / "step_0000006" / "rng_rank0.pt"
    rng.write_bytes(rng.read_bytes()[: rng.stat().st_size // 2])
    with (stopped / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 7, "epoch": 1, "lo')
    assert train_main(["--cfg-path", str(cfg), "--resume", "--options", "run.max_steps=null"]) == 0
    steps = [json.loads(line)["step"] for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    assert losses(stopped) == pytest.approx(losses(straight), abs=1e-6)
