"""Two-stage instruction tuning of Emotion-LLaMA.

    torchrun --nproc-per-node N train.py --cfg-path train_configs/<x>.yaml [--options key=value ...]
    python train.py --cfg-path ...            # one process, CPU or one GPU

The loop is the whole recipe: loss / accumulation with gradient sync only on the last
micro-step, clipping, AdamW, one LR step per optimizer step, validation on a validation split
(never the test split) keeping the best checkpoint, and atomic checkpoints that resume exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from minigpt4.common.config import ConfigError, to_yaml
from minigpt4.common.errors import run_cli
from minigpt4.data.collator import EmotionCollator
from minigpt4.data.datasets import build_dataset, class_balanced_weights, describe
from minigpt4.eval.generation import predict
from minigpt4.eval.metrics import classification_metrics
from minigpt4.eval.parsing import parse_label
from minigpt4.models.builder import DTYPES, build_model
from minigpt4.models.checkpoint import load_trainable
from minigpt4.processors import EvaImageTransform
from minigpt4.run_config import TrainRunConfig, load_train_config
from minigpt4.training.checkpointing import TrainState, find_resume_checkpoint, load_checkpoint, save_best, save_checkpoint
from minigpt4.training.distributed import DistInfo, gather_objects, init_distributed, mean_across_ranks, shutdown
from minigpt4.training.optim import build_optimizer, learning_rate, set_learning_rate
from minigpt4.training.sampling import EpochSampler

log = logging.getLogger("train")


def build_train_set(cfg: TrainRunConfig, image_size: int) -> torch.utils.data.Dataset:
    if not cfg.datasets:
        raise ConfigError("the config has no `datasets:` to train on (add at least one dataset entry)")
    parts = [build_dataset(d, EvaImageTransform(image_size), train=True, seed=cfg.run.seed) for d in cfg.datasets.values()]
    for name, part in zip(cfg.datasets, parts):
        log.info("train %s: %s", name, describe(part))
    return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)


def validate(model, cfg: TrainRunConfig, val_sets: dict, info: DistInfo) -> dict[str, float]:
    """Emotion-task weighted F1 / accuracy per validation set, and their mean under `val_metric`."""
    scores: dict[str, float] = {}
    for name, dataset in val_sets.items():
        records = predict(model, dataset, batch_size=cfg.run.val_batch_size, max_new_tokens=cfg.run.val_max_new_tokens, info=info)
        records = [r for r in records if r["task"] == "emotion"]
        metrics = classification_metrics(
            [r["label"] for r in records], [parse_label(r["answer"], dataset.labels) for r in records], dataset.labels
        )
        scores.update({f"{name}/{k}": v for k, v in metrics.items()})
    keys = [k for k in scores if k.endswith("/" + cfg.run.val_metric)]
    scores[cfg.run.val_metric] = sum(scores[k] for k in keys) / max(1, len(keys))
    return scores


def train(cfg: TrainRunConfig, info: DistInfo) -> dict:
    run, run_dir = cfg.run, Path(cfg.run.output_dir)
    if run.init_from and not Path(run.init_from).is_file():  # user errors before minutes of loading
        raise ConfigError(f"run.init_from {run.init_from} does not exist (train the previous stage first, or fix the path)")
    resume_from = find_resume_checkpoint(run_dir, run.resume)
    train_set = build_train_set(cfg, cfg.model.vision.image_size)  # data errors before minutes of model loading
    val_sets = {
        name: build_dataset(d, EvaImageTransform(cfg.model.vision.image_size), train=False, seed=run.seed)
        for name, d in cfg.val_datasets.items()
    }
    torch.manual_seed(run.seed)  # identical initial projections on every rank
    model = build_model(cfg.model).to(info.device)
    if run.init_from:
        load_trainable(model, run.init_from)
    collator = EmotionCollator(model.tokenizer, cfg.model.num_patch_tokens, train=True, max_txt_len=cfg.model.max_txt_len,
                               prompt_format=cfg.model.prompt_format)
    optimizer = build_optimizer(model, run.optim)
    amp_dtype = DTYPES[cfg.model.dtype] if run.amp and info.device.type == "cuda" else torch.float32
    scaler = torch.amp.GradScaler(info.device.type, enabled=amp_dtype == torch.float16)

    micro_per_step = run.grad_accum_steps
    steps_per_epoch = run.iters_per_epoch or max(1, len(train_set) // (run.batch_size * info.world_size * micro_per_step))
    total_steps = run.max_epochs * steps_per_epoch
    weights = class_balanced_weights(train_set) if run.class_balanced else None

    state = TrainState()
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimizer, scaler, info)
        log.info("resumed from %s at epoch %d, step %d", resume_from, state.epoch, state.step)
    ddp = DistributedDataParallel(model) if info.enabled else model
    model.train()

    writer = SummaryWriter(run_dir / "tensorboard") if info.is_main else None
    metrics_log = run_dir / "metrics.jsonl"
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        kept = [l for l in metrics_log.read_text().splitlines() if json.loads(l)["step"] <= state.step] if metrics_log.exists() else []
        metrics_log.write_text("".join(l + "\n" for l in kept))  # drop steps a crash made us redo

    def checkpoint() -> None:
        save_checkpoint(run_dir, model, optimizer, scaler, state, to_yaml(cfg), info, run.keep_checkpoints)

    done = False
    for epoch in range(state.epoch, run.max_epochs):
        state.epoch = epoch
        for part in getattr(train_set, "datasets", [train_set]):
            part.set_epoch(epoch)  # a fresh draw of instructions from the pools each epoch
        sampler = EpochSampler(
            len(train_set), steps_per_epoch * micro_per_step * run.batch_size, seed=run.seed, epoch=epoch,
            rank=info.rank, world_size=info.world_size, start=state.step_in_epoch * micro_per_step * run.batch_size,
            weights=weights,
        )
        loader = torch.utils.data.DataLoader(
            train_set, batch_size=run.batch_size, sampler=sampler, collate_fn=collator, num_workers=run.num_workers
        )
        batches = iter(loader)
        bar = tqdm(total=steps_per_epoch, initial=state.step_in_epoch, desc=f"epoch {epoch}", disable=not info.is_main)
        while state.step_in_epoch < steps_per_epoch:
            t0 = time.perf_counter()
            lr = learning_rate(state.step, total_steps, run.optim)
            set_learning_rate(optimizer, lr)
            loss_sum = 0.0
            for micro in range(micro_per_step):
                batch = collator.to_device(next(batches), info.device)
                sync = micro == micro_per_step - 1 or not info.enabled
                with contextlib.nullcontext() if sync else ddp.no_sync():
                    with torch.autocast(info.device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
                        loss = ddp(batch).loss / micro_per_step
                    scaler.scale(loss).backward()
                loss_sum += loss.item()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], run.optim.max_grad_norm or math.inf
            )
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.step_in_epoch += 1

            loss_value = mean_across_ranks(loss_sum, info)
            if info.is_main:
                record = {"step": state.step, "epoch": epoch, "loss": loss_value, "lr": lr, "grad_norm": float(grad_norm)}
                with metrics_log.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if state.step % run.log_every == 0 or state.step == 1:
                    for key in ("loss", "lr", "grad_norm"):
                        writer.add_scalar(f"train/{key}", record[key], state.step)
                    writer.add_scalar("train/seconds_per_step", time.perf_counter() - t0, state.step)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
                bar.update(1)
            if run.save_every_steps and state.step % run.save_every_steps == 0:
                checkpoint()
            if run.max_steps is not None and state.step >= run.max_steps:
                done = True
                break
        bar.close()
        if done and state.step_in_epoch < steps_per_epoch:
            checkpoint()
            break
        state.epoch, state.step_in_epoch = epoch + 1, 0
        if val_sets and (epoch + 1) % run.val_every_epochs == 0:
            scores = validate(model, cfg, val_sets, info)
            if info.is_main:
                for key, value in scores.items():
                    writer.add_scalar(f"val/{key}", value, state.step)
                log.info("epoch %d validation: %s", epoch, json.dumps({k: round(v, 4) for k, v in scores.items()}))
            if scores[run.val_metric] > state.best_metric:
                state.best_metric, state.best_step = scores[run.val_metric], state.step
                if info.is_main:
                    save_best(run_dir, model, {"step": state.step, "epoch": epoch, **scores})
        checkpoint()
        if done:
            break

    # Every rank must hold the same weights after DDP training; a mismatch means a sync bug.
    checksum = float(sum(p.detach().double().sum() for p in model.parameters() if p.requires_grad))
    checksums = gather_objects(checksum, info)
    if len(set(checksums)) != 1:
        raise RuntimeError(f"ranks ended with different weights (checksums {checksums}); gradient sync is broken")
    summary = {
        "steps": state.step, "epochs_done": state.epoch, "best_metric": state.best_metric,
        "best_step": state.best_step, "world_size": info.world_size, "rank_weight_checksums": checksums,
    }
    if info.is_main:
        if not val_sets or not (run_dir / "best").exists():  # never validated: the last weights are the result
            save_best(run_dir, model, {"step": state.step, "note": "not validated: last weights"})
        writer.close()
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        log.info("done: %s (weights: %s)", json.dumps(summary), run_dir / "best" / "trainable.safetensors")
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train Emotion-LLaMA (one stage).")
    parser.add_argument("--cfg-path", required=True, help="train_configs/<x>.yaml")
    parser.add_argument("--options", nargs="*", default=[], help="overrides, e.g. run.max_epochs=2 model.lora.r=8")
    parser.add_argument("--resume", nargs="?", const="auto", help="resume: newest valid checkpoint, or a folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    overrides = list(args.options) + ([f"run.resume={args.resume}"] if args.resume else [])
    cfg = load_train_config(args.cfg_path, overrides)
    info = init_distributed(cfg.run.device)
    logging.basicConfig(
        level=logging.INFO if info.is_main else logging.WARNING,
        format=f"%(asctime)s [rank {info.rank}] %(name)s: %(message)s",
    )
    try:
        return train(cfg, info)
    finally:
        shutdown(info)


if __name__ == "__main__":
    result = run_cli(lambda: main(sys.argv[1:]))  # a user error: one `error:` line, exit status 2
    sys.exit(result if isinstance(result, int) else 0)
