"""Two-stage instruction tuning of Emotion-LLaMA.

    torchrun --nproc-per-node N train.py --cfg-path train_configs/<x>.yaml [--options key=value ...]
    python train.py --cfg-path ...            # one process, CPU or one GPU

The loop is the whole recipe: loss / accumulation with gradient sync only on the last
micro-step, clipping, AdamW, one LR step per optimizer step, validation on a validation split
(never the test split) keeping the best checkpoint, and atomic checkpoints that resume exactly.
"""

from __future__ import annotations

import argparse
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
from minigpt4.training.distributed import DistInfo, gather_objects, init_distributed, shutdown
from minigpt4.training.grpo_step import GRPOTask, check_grpo_config, check_grpo_data, metric_means, reduce_sums, stream_positions, write_reward_curve
from minigpt4.training.optim import build_optimizer, learning_rate, set_learning_rate
from minigpt4.training.sampling import EpochSampler
from minigpt4.training.step import forward_backward

log = logging.getLogger("train")


def build_train_set(cfg: TrainRunConfig, image_size: int) -> torch.utils.data.Dataset:
    if not cfg.datasets:
        raise ConfigError("the config has no `datasets:` to train on (add at least one dataset entry)")
    parts = [build_dataset(d, EvaImageTransform(image_size), train=True, seed=cfg.run.seed) for d in cfg.datasets.values()]
    for name, part in zip(cfg.datasets, parts):
        log.info("train %s: %s", name, describe(part))
    return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)


def validate(model, cfg: TrainRunConfig, val_sets: dict, info: DistInfo, limit: int | None = None) -> dict[str, float]:
    """Emotion-task weighted F1 / accuracy per validation set, and their mean under `val_metric`.

    Runs under the autocast evaluation uses (model.dtype on GPU when run.amp). `limit` keeps the
    first items of each set: the quick check before the first step.
    """
    amp_dtype = DTYPES[cfg.model.dtype] if cfg.run.amp and info.device.type == "cuda" else torch.float32
    scores: dict[str, float] = {}
    for name, dataset in val_sets.items():
        with torch.autocast(info.device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            records = predict(model, dataset, batch_size=cfg.run.val_batch_size, max_new_tokens=cfg.run.val_max_new_tokens,
                              info=info, progress=limit is None, limit=limit)
        records = [r for r in records if r["task"] == "emotion"]
        metrics = classification_metrics(
            [r["label"] for r in records], [parse_label(r["answer"], dataset.labels) for r in records], dataset.labels
        )
        scores.update({f"{name}/{k}": v for k, v in metrics.items()})
    keys = [k for k in scores if k.endswith("/" + cfg.run.val_metric)]
    if not keys:
        names = sorted({k.split("/", 1)[1] for k in scores})
        raise ConfigError(f"run.val_metric={cfg.run.val_metric!r} is not a validation metric; use one of {names}")
    scores[cfg.run.val_metric] = sum(scores[k] for k in keys) / len(keys)
    return scores


def train(cfg: TrainRunConfig, info: DistInfo) -> dict:
    run, run_dir = cfg.run, Path(cfg.run.output_dir)
    if run.init_from and not Path(run.init_from).is_file():  # user errors before minutes of loading
        raise ConfigError(f"run.init_from {run.init_from} does not exist (train the previous stage first, or fix the path)")
    if run.task == "grpo":
        check_grpo_config(cfg.grpo)  # reward names, template: before minutes of loading
    resume_from = find_resume_checkpoint(run_dir, run.resume)
    train_set = build_train_set(cfg, cfg.model.vision.image_size)  # data errors before minutes of model loading
    labels = check_grpo_data(cfg.grpo, train_set) if run.task == "grpo" else ()
    val_sets = {
        name: build_dataset(d, EvaImageTransform(cfg.model.vision.image_size), train=False, seed=run.seed)
        for name, d in cfg.val_datasets.items()
    }
    torch.manual_seed(run.seed)  # identical initial projections on every rank
    model = build_model(cfg.model).to(info.device)
    if run.init_from:
        load_trainable(model, run.init_from)
    # grpo reads prompts (left-padded, no target): the completions are sampled
    collator = EmotionCollator(model.tokenizer, cfg.model.num_patch_tokens, train=run.task == "sft", max_txt_len=cfg.model.max_txt_len,
                               prompt_format=cfg.model.prompt_format)
    optimizer = build_optimizer(model, run.optim)
    amp_dtype = DTYPES[cfg.model.dtype] if run.amp and info.device.type == "cuda" else torch.float32
    scaler = torch.amp.GradScaler(info.device.type, enabled=amp_dtype == torch.float16)

    micro_per_step = run.grad_accum_steps
    steps_per_epoch = run.iters_per_epoch or max(1, len(train_set) // (run.batch_size * info.world_size * micro_per_step))
    total_steps = run.max_epochs * steps_per_epoch
    weights = class_balanced_weights(train_set) if run.class_balanced else None

    # the reference of the KL term is the model as loaded (init_from), before any resume
    grpo = GRPOTask(cfg.grpo, model, labels, info, seed=run.seed, autocast_dtype=amp_dtype, scaler=scaler,
                    to_device=collator.to_device) if run.task == "grpo" else None
    state = TrainState()
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimizer, scaler, info)
        log.info("resumed from %s at epoch %d, step %d", resume_from, state.epoch, state.step)
    trained = grpo.policy if grpo is not None else model  # what the task's forward runs through
    ddp = DistributedDataParallel(trained) if info.enabled else trained
    model.train()

    writer = SummaryWriter(run_dir / "tensorboard") if info.is_main else None
    metrics_log = run_dir / "metrics.jsonl"
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        kept = [l for l in metrics_log.read_text().splitlines() if json.loads(l)["step"] <= state.step] if metrics_log.exists() else []
        metrics_log.write_text("".join(l + "\n" for l in kept))  # drop steps a crash made us redo

    # Training metrics add up on the device and are read (one all-reduce, one host sync) every
    # `log_every` steps and before each checkpoint, so a resumed run logs the same lines.
    window = {"loss_sum": torch.zeros((), device=info.device), "count": torch.zeros((), device=info.device),
              "grad_norm": torch.zeros((), device=info.device), "steps": 0, "t0": time.perf_counter(),
              "grpo": {key: torch.zeros((), device=info.device) for key in grpo.sum_keys} if grpo is not None else None}

    def flush_log(lr: float) -> None:
        if window["steps"] == 0:
            return
        loss_sum = window["loss_sum"].clone()
        if info.enabled:
            torch.distributed.all_reduce(loss_sum)  # the counts are global already
        loss_sum, count = float(loss_sum), float(window["count"])
        record = {"step": state.step, "epoch": state.epoch, "loss": loss_sum / count if count else math.nan, "lr": lr,
                  "grad_norm": float(window["grad_norm"]) / window["steps"], "steps": window["steps"],
                  "seconds_per_step": (time.perf_counter() - window["t0"]) / window["steps"]}
        if grpo is not None:
            record.update(metric_means(reduce_sums(window["grpo"], info), list(grpo.weights)))
            for total in window["grpo"].values():
                total.zero_()
        if info.is_main:
            with metrics_log.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            for key in [k for k in record if k not in ("step", "epoch", "steps")]:
                writer.add_scalar(f"train/{key}", record[key], state.step)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
        for key in ("loss_sum", "count", "grad_norm"):
            window[key].zero_()
        window["steps"], window["t0"] = 0, time.perf_counter()

    def checkpoint() -> None:
        flush_log(lr)
        save_checkpoint(run_dir, model, optimizer, scaler, state, to_yaml(cfg), info, run.keep_checkpoints)

    if val_sets:  # "verifying settings": a broken validation config fails now, not after an epoch
        log.info("verifying settings: validation on the first 2 batches of each validation set")
        validate(model, cfg, val_sets, info, limit=2 * run.val_batch_size)
        model.train()

    def apply_update() -> torch.Tensor:
        """Clip, AdamW, clear the gradients; the gradient norm before clipping."""
        scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                              run.optim.max_grad_norm or math.inf)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return norm

    done, lr, bar = False, learning_rate(state.step, total_steps, run.optim), None
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
            train_set, batch_size=run.batch_size, sampler=sampler, collate_fn=collator, num_workers=run.num_workers,
            pin_memory=info.device.type == "cuda",  # lets the non_blocking copies overlap with compute
        )
        batches = iter(loader)
        bar = tqdm(total=steps_per_epoch, initial=state.step_in_epoch, desc=f"epoch {epoch}", disable=not info.is_main)
        while state.step_in_epoch < steps_per_epoch:
            lr = learning_rate(state.step, total_steps, run.optim)
            set_learning_rate(optimizer, lr)
            micro_batches = [next(batches) for _ in range(micro_per_step)]
            if grpo is None:
                loss_sum, count = forward_backward(
                    ddp, micro_batches, info, reduction=cfg.model.loss_reduction,
                    autocast_dtype=amp_dtype, scaler=scaler, to_device=collator.to_device,
                )
            else:  # rollouts, rewards, then num_iterations updates (all but the last applied inside)
                positions = stream_positions(state.step_in_epoch, [len(b["names"]) for b in micro_batches], run.batch_size, info)
                sums = grpo.step(ddp, micro_batches, positions, epoch, update=lambda: apply_update())
                loss_sum, count = sums["loss_sum"], sums["loss_count"]
                for key, value in sums.items():
                    window["grpo"][key] += value
            grad_norm = apply_update()
            state.step += 1
            state.step_in_epoch += 1
            window["loss_sum"] += loss_sum
            window["count"] += count
            window["grad_norm"] += grad_norm.detach().float()
            window["steps"] += 1
            bar.update(1)
            if state.step % run.log_every == 0:
                flush_log(lr)
            if run.save_every_steps and state.step % run.save_every_steps == 0:
                checkpoint()
            if run.max_steps is not None and state.step >= run.max_steps:
                done = True
                break
        flush_log(lr)
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
        if grpo is not None:
            write_reward_curve(metrics_log, run_dir / "reward_curve.png", list(grpo.weights))
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
