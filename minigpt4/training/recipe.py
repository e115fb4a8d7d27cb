"""The training recipe, in torchtune's shape: `setup` builds everything once, `train` is the loop,
`train_step` takes one optimizer step, `end_of_epoch` validates, keeps the best and checkpoints.

The loop is nanoGPT's: loss / accumulation with gradient sync only on the last micro-step
(`training/step.py`), clipping, AdamW, one LR step per optimizer step; validation on a validation
split (never the test split) keeping the best checkpoint; atomic checkpoints that resume exactly.

A *task* (`run.task`) decides how a step turns micro-batches into gradients: `sft` (supervised
fine-tuning on the collated targets, stages 1-2) or `grpo` (stage 3: rollouts, verifiable rewards,
`num_iterations` updates; `training/grpo_step.py`). Each is a function in `TASK_STEPS`; the loop,
the clipping, the optimizer step, logging and checkpoints stay as they are.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from minigpt4.common.config import ConfigError, to_yaml
from minigpt4.common.distributed import DistInfo, gather_objects
from minigpt4.common.io import atomic_write
from minigpt4.data.collator import EmotionCollator
from minigpt4.data.datasets import build_dataset, class_balanced_weights, clip_key, describe, remove_clips
from minigpt4.eval.generation import autocast, autocast_dtype, predict
from minigpt4.eval.metrics import classification_metrics
from minigpt4.eval.parsing import parse_label
from minigpt4.models.builder import build_model
from minigpt4.models.checkpoint import load_trainable
from minigpt4.processors import EvaImageTransform
from minigpt4.run_config import TrainRunConfig
from minigpt4.training.checkpointing import (TrainState, find_resume_checkpoint, load_checkpoint, logged_lines, save_best,
                                             save_checkpoint)
from minigpt4.training.grpo_step import (
    GRPOTask, check_grpo_config, check_grpo_data, metric_means, reduce_sums, stream_positions, write_reward_curve,
)
from minigpt4.training.optim import build_optimizer, learning_rate, set_learning_rate
from minigpt4.training.batching import LengthTable, padding_counts
from minigpt4.training.sampling import EpochSampler, LengthGroupedBatchSampler
from minigpt4.training.step import forward_backward

log = logging.getLogger("train")


def build_train_set(cfg: TrainRunConfig, image_size: int, val_sets: dict | None = None
                    ) -> tuple[torch.utils.data.Dataset, dict[str, int]]:
    """The training mixture, with every clip of the validation sets removed from each training
    list (by name: MERR is built from MER2023 clips, so a MERR list can hold validation clips);
    returns it and, per training dataset, how many validation clips were removed."""
    if not cfg.datasets:
        raise ConfigError("the config has no `datasets:` to train on (add at least one dataset entry)")
    parts = [build_dataset(d, EvaImageTransform(image_size), train=True, seed=cfg.run.seed,
                           feature_layout=cfg.model.feature_layout, vision=cfg.model.vision) for d in cfg.datasets.values()]
    val_names = {clip_key(r.name) for v in (val_sets or {}).values() for r in v.records}
    removed: dict[str, int] = {}
    for name, part in zip(cfg.datasets, parts):
        dropped = remove_clips(part, val_names) if cfg.run.drop_val_clips_from_train else []
        removed[name] = len(dropped)
        if dropped:
            log.warning("train %s: removed %d clip(s) that are in the validation split (first: %s)",
                        name, len(dropped), ", ".join(dropped[:3]))
        if not part.records:
            raise ConfigError(f"train {name}: every clip is in the validation split ({', '.join(cfg.val_datasets)}); "
                              "train on the hold-out list (holdout_split --train-out), not the validation list")
        log.info("train %s: %s", name, describe(part))
    return (parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)), removed


def validate(model, cfg: TrainRunConfig, val_sets: dict, info: DistInfo, limit: int | None = None) -> dict[str, float]:
    """Emotion-task weighted F1 / accuracy per validation set, and their mean under `val_metric`.

    Runs under the autocast evaluation uses (model.dtype on GPU when run.amp). `limit` keeps the
    first items of each set: the quick check before the first step.
    """
    scores: dict[str, float] = {}
    for name, dataset in val_sets.items():
        with autocast(cfg.model.dtype, info.device, cfg.run.amp):
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


# ---- tasks: how one optimizer step turns its micro-batches into gradients -------------------------

def sft_step(recipe: "TrainRecipe", micro_batches: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Supervised fine-tuning: the summed token (or sample) loss of the collated targets, divided
    by the step's global count. Returns (this rank's loss sum, the global count), on the device."""
    return forward_backward(
        recipe.ddp, micro_batches, recipe.info, reduction=recipe.cfg.model.loss_reduction,
        autocast_dtype=recipe.amp_dtype, scaler=recipe.scaler, to_device=recipe.collator.to_device,
    )


def grpo_step(recipe: "TrainRecipe", micro_batches: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO (stage 3): rollouts of the step's prompts, rewards, then `num_iterations` updates, all but
    the last applied here (`optimizer_update`); rewards, KL, clipping etc. go to the log window."""
    positions = stream_positions(recipe.state.step_in_epoch, [len(b["names"]) for b in micro_batches],
                                 recipe.cfg.run.batch_size, recipe.info)
    sums = recipe.grpo.step(recipe.ddp, micro_batches, positions, recipe.state.epoch, update=recipe.optimizer_update)
    recipe.window.add_task_sums(sums)
    return sums["loss_sum"], sums["loss_count"]


TaskStep = Callable[["TrainRecipe", Sequence[dict[str, Any]]], tuple[torch.Tensor, torch.Tensor]]
TASK_STEPS: dict[str, TaskStep] = {"sft": sft_step, "grpo": grpo_step}


class LogWindow:
    """Training metrics summed on the device since the last log line; read (one all-reduce, one
    host sync) every `log_every` steps and before each checkpoint, so a resumed run logs the same lines."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.count = torch.zeros((), device=device)
        self.grad_norm = torch.zeros((), device=device)
        self.task_sums: dict[str, torch.Tensor] = {}  # a task's own sums (grpo: rewards, KL, ...)
        self.real_tokens, self.positions = 0, 0  # this rank's batches, counted on the CPU: padding = 1 - real / positions
        self.steps, self.t0 = 0, time.perf_counter()

    def add_task_sums(self, sums: dict[str, torch.Tensor]) -> None:
        for key, value in sums.items():
            self.task_sums[key] = self.task_sums.get(key, 0) + value.detach().float()

    def add(self, loss_sum: torch.Tensor, count: torch.Tensor, grad_norm: torch.Tensor,
            tokens: tuple[int, int] = (0, 0)) -> None:
        self.real_tokens += tokens[0]
        self.positions += tokens[1]
        self.loss_sum += loss_sum
        self.count += count
        self.grad_norm += grad_norm.detach().float()
        self.steps += 1

    def reset(self) -> None:
        for total in (self.loss_sum, self.count, self.grad_norm):
            total.zero_()
        self.task_sums = {}
        self.real_tokens, self.positions = 0, 0
        self.steps, self.t0 = 0, time.perf_counter()


class TrainRecipe:
    """One training stage: `setup()`, then `train()` -> the summary (also written to summary.json)."""

    def __init__(self, cfg: TrainRunConfig, info: DistInfo, task: str | None = None):
        task = task or cfg.run.task
        if task not in TASK_STEPS:
            raise ConfigError(f"unknown training task {task!r}; use one of {sorted(TASK_STEPS)}")
        self.cfg, self.info, self.task, self.task_step = cfg, info, task, TASK_STEPS[task]
        self.run_dir = Path(cfg.run.output_dir)

    def setup(self) -> None:
        """Data, model, optimizer and the resume point; user errors come before minutes of loading."""
        cfg, run, info = self.cfg, self.cfg.run, self.info
        if self.task == "grpo":
            check_grpo_config(cfg.grpo)  # reward names, template: a config error before a missing file
        if run.init_from and not Path(run.init_from).is_file():
            raise ConfigError(f"run.init_from {run.init_from} does not exist (train the previous stage first, or fix the path)")
        resume_from = find_resume_checkpoint(self.run_dir, run.resume, run.start_fresh)
        self.val_sets = {
            name: build_dataset(d, EvaImageTransform(cfg.model.vision.image_size), train=False, seed=run.seed,
                                feature_layout=cfg.model.feature_layout, vision=cfg.model.vision)
            for name, d in cfg.val_datasets.items()
        }
        self.train_set, self.val_clips_removed = build_train_set(cfg, cfg.model.vision.image_size, self.val_sets)
        labels = check_grpo_data(cfg.grpo, self.train_set) if self.task == "grpo" else ()
        torch.manual_seed(run.seed)  # identical initial projections on every rank
        self.model = build_model(cfg.model).to(info.device)
        if run.init_from:
            load_trainable(self.model, run.init_from)
        # grpo reads prompts (left-padded, no target): its completions are sampled
        self.collator = EmotionCollator(self.model.tokenizer, cfg.model.num_patch_tokens, train=self.task == "sft",
                                        max_txt_len=cfg.model.max_txt_len, prompt_format=cfg.model.prompt_format)
        self.optimizer = build_optimizer(self.model, run.optim)
        self.amp_dtype = autocast_dtype(cfg.model.dtype, info.device, run.amp)
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=self.amp_dtype == torch.float16)

        self.micro_per_step = run.grad_accum_steps
        self.steps_per_epoch = run.iters_per_epoch or max(
            1, len(self.train_set) // (run.batch_size * info.world_size * self.micro_per_step))
        self.total_steps = run.max_epochs * self.steps_per_epoch
        self.weights = class_balanced_weights(self.train_set) if run.class_balanced else None
        self.lengths = LengthTable(self.train_set, self.collator) if run.batching == "length_grouped" else None

        # grpo: the KL reference is the model as loaded (init_from), before any resume
        self.grpo = GRPOTask(cfg.grpo, self.model, labels, info, seed=run.seed, autocast_dtype=self.amp_dtype,
                             scaler=self.scaler, to_device=self.collator.to_device) if self.task == "grpo" else None
        self.state = TrainState()
        if resume_from is not None:
            self.state = load_checkpoint(resume_from, self.model, self.optimizer, self.scaler, info)
            log.info("resumed from %s at epoch %d, step %d", resume_from, self.state.epoch, self.state.step)
        trained = self.grpo.policy if self.grpo is not None else self.model  # the module the task's forward runs
        self.ddp = DistributedDataParallel(trained) if info.enabled else trained
        self.model.train()

        self.writer = SummaryWriter(self.run_dir / "tensorboard") if info.is_main else None
        self.metrics_log = self.run_dir / "metrics.jsonl"
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.run_dir / "config.yaml", to_yaml(cfg))
            kept = [line for line in logged_lines(self.metrics_log) if json.loads(line)["step"] <= self.state.step]
            atomic_write(self.metrics_log, "".join(line + "\n" for line in kept))  # drop steps a crash made us redo
        self.window = LogWindow(info.device)
        self.lr, self.bar = learning_rate(self.state.step, self.total_steps, run.optim), None

        if self.val_sets:  # "verifying settings": a broken validation config fails now, not after an epoch
            log.info("verifying settings: validation on the first 2 batches of each validation set")
            validate(self.model, cfg, self.val_sets, info, limit=2 * run.val_batch_size)
            self.model.train()

    def train(self) -> dict:
        """The loop: steps until the epoch's or the run's end, logging and checkpointing on the way."""
        run, state = self.cfg.run, self.state
        done = False
        for epoch in range(state.epoch, run.max_epochs):
            state.epoch = epoch
            batches = self.epoch_batches(epoch)
            self.bar = tqdm(total=self.steps_per_epoch, initial=state.step_in_epoch, desc=f"epoch {epoch}",
                            disable=not self.info.is_main)
            while state.step_in_epoch < self.steps_per_epoch:
                self.train_step([next(batches) for _ in range(self.micro_per_step)])
                if state.step % run.log_every == 0:
                    self.flush_log()
                if run.save_every_steps and state.step % run.save_every_steps == 0:
                    self.checkpoint()
                if run.max_steps is not None and state.step >= run.max_steps:
                    done = True
                    break
            self.flush_log()
            self.bar.close()
            if done and state.step_in_epoch < self.steps_per_epoch:
                self.checkpoint()  # stopped mid-epoch by run.max_steps: no validation
                break
            self.end_of_epoch(epoch)
            if done:
                break
        return self.finish()

    def epoch_batches(self, epoch: int):
        """The epoch's micro-batches from where the state stands (mid-epoch after a resume)."""
        run, info = self.cfg.run, self.info
        for part in getattr(self.train_set, "datasets", [self.train_set]):
            part.set_epoch(epoch)  # a fresh draw of instructions from the pools each epoch
        if self.lengths is not None:  # the same epoch stream, in micro-batches of similar length
            batches = LengthGroupedBatchSampler(
                len(self.train_set), self.steps_per_epoch * self.micro_per_step, run.batch_size, self.lengths,
                seed=run.seed, epoch=epoch, group_size=run.group_size, token_budget=run.token_budget, rank=info.rank,
                world_size=info.world_size, start=self.state.step_in_epoch * self.micro_per_step, weights=self.weights,
            )
            batching = {"batch_sampler": batches}
        else:
            samples_per_step = self.micro_per_step * run.batch_size
            sampler = EpochSampler(
                len(self.train_set), self.steps_per_epoch * samples_per_step, seed=run.seed, epoch=epoch,
                rank=info.rank, world_size=info.world_size, start=self.state.step_in_epoch * samples_per_step,
                weights=self.weights,
            )
            batching = {"batch_size": run.batch_size, "sampler": sampler}
        loader = torch.utils.data.DataLoader(
            self.train_set, collate_fn=self.collator, **batching,
            num_workers=run.num_workers, pin_memory=info.device.type == "cuda",  # non_blocking copies overlap compute
        )
        return iter(loader)

    def train_step(self, micro_batches: Sequence[dict[str, Any]]) -> None:
        """One optimizer step: this step's LR, the task's gradients, clipping, AdamW."""
        state = self.state
        self.lr = learning_rate(state.step, self.total_steps, self.cfg.run.optim)
        set_learning_rate(self.optimizer, self.lr)
        loss_sum, count = self.task_step(self, micro_batches)
        grad_norm = self.optimizer_update()
        state.step += 1
        state.step_in_epoch += 1
        self.window.add(loss_sum, count, grad_norm, padding_counts(micro_batches))
        self.bar.update(1)

    def optimizer_update(self) -> torch.Tensor:
        """Clipping, AdamW, cleared gradients; the gradient norm before clipping."""
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad], self.cfg.run.optim.max_grad_norm or math.inf
        )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def end_of_epoch(self, epoch: int) -> None:
        """Validation every `val_every_epochs` (keeping the best weights), then a checkpoint."""
        run, state, info = self.cfg.run, self.state, self.info
        state.epoch, state.step_in_epoch = epoch + 1, 0
        if self.val_sets and (epoch + 1) % run.val_every_epochs == 0:
            scores = validate(self.model, self.cfg, self.val_sets, info)
            if info.is_main:
                for key, value in scores.items():
                    self.writer.add_scalar(f"val/{key}", value, state.step)
                log.info("epoch %d validation: %s", epoch, json.dumps({k: round(v, 4) for k, v in scores.items()}))
            if scores[run.val_metric] > state.best_metric:
                state.best_metric, state.best_step = scores[run.val_metric], state.step
                if info.is_main:
                    save_best(self.run_dir, self.model, {"step": state.step, "epoch": epoch, **scores})
        self.checkpoint()

    def flush_log(self) -> None:
        """One metrics.jsonl line (and TensorBoard scalars) for the steps since the last one."""
        window, state, info = self.window, self.state, self.info
        if window.steps == 0:
            return
        sums = torch.stack([window.loss_sum, torch.tensor(float(window.real_tokens), device=info.device),
                            torch.tensor(float(window.positions), device=info.device)])
        if info.enabled:
            torch.distributed.all_reduce(sums)  # the loss count is global already
        loss_sum, real_tokens, positions = sums.tolist()
        count = float(window.count)
        record = {"step": state.step, "epoch": state.epoch, "loss": loss_sum / count if count else math.nan, "lr": self.lr,
                  "grad_norm": float(window.grad_norm) / window.steps, "steps": window.steps,
                  "seconds_per_step": (time.perf_counter() - window.t0) / window.steps,
                  "padding": 1.0 - real_tokens / positions if positions else 0.0}
        if self.grpo is not None:  # rewards (total, per function, std), KL, clip fraction, lengths, all-equal groups
            record.update(metric_means(reduce_sums(window.task_sums, info), list(self.grpo.weights)))
        if info.is_main:
            with self.metrics_log.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            for key in [k for k in record if k not in ("step", "epoch", "steps")]:
                self.writer.add_scalar(f"train/{key}", record[key], state.step)
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{self.lr:.2e}")
        window.reset()

    def checkpoint(self) -> None:
        self.flush_log()
        save_checkpoint(self.run_dir, self.model, self.optimizer, self.scaler, self.state, to_yaml(self.cfg), self.info,
                        self.cfg.run.keep_checkpoints)

    def finish(self) -> dict:
        """Check that every rank holds the same weights, keep the result, write summary.json."""
        state, info = self.state, self.info
        # Every rank must hold the same weights after DDP training; a mismatch means a sync bug.
        checksum = float(sum(p.detach().double().sum() for p in self.model.parameters() if p.requires_grad))
        checksums = gather_objects(checksum, info)
        if len(set(checksums)) != 1:
            raise RuntimeError(f"ranks ended with different weights (checksums {checksums}); gradient sync is broken")
        summary = {
            "steps": state.step, "epochs_done": state.epoch, "best_metric": state.best_metric,
            "best_step": state.best_step, "world_size": info.world_size, "rank_weight_checksums": checksums,
            "val_clips_removed_from_train": self.val_clips_removed,
        }
        if info.is_main:
            if not self.val_sets or not (self.run_dir / "best").exists():  # never validated: the last weights are the result
                save_best(self.run_dir, self.model, {"step": state.step, "note": "not validated: last weights"})
            self.writer.close()
            if self.grpo is not None:
                write_reward_curve(self.metrics_log, self.run_dir / "reward_curve.png", list(self.grpo.weights))
            atomic_write(self.run_dir / "summary.json", json.dumps(summary, indent=2))
            log.info("done: %s (weights: %s)", json.dumps(summary), self.run_dir / "best" / "trainable.safetensors")
        return summary


def train(cfg: TrainRunConfig, info: DistInfo, task: str | None = None) -> dict:
    """Run one training stage (`task`, default `run.task`); the summary (steps, best metric, per-rank weight checksums)."""
    recipe = TrainRecipe(cfg, info, task)
    recipe.setup()
    return recipe.train()
