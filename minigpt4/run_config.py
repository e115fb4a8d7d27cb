"""Schemas of the YAML files users edit: `train_configs/*.yaml` and `eval_configs/*.yaml`.

    model:     ModelConfig   (minigpt4/models/config.py)
    datasets:  {name: DatasetConfig}   training mixture, or the benchmarks an eval config knows
    val_datasets: {name: DatasetConfig}   model selection during training (never the test split)
    run:       TrainConfig / EvalConfig (below)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from minigpt4.common.config import load_config
from minigpt4.data.config import DatasetConfig
from minigpt4.models.config import ModelConfig
from minigpt4.training.grpo import GRPOConfig


SCHEDULES = ("cosine_after_warmup", "release")
TRAIN_TASKS = ("sft", "grpo")  # supervised fine-tuning (stages 1-2) | GRPO with verifiable rewards (stage 3)


@dataclass
class OptimConfig:
    """AdamW and the warm-up + cosine schedule of the release (docs/training.md)."""

    init_lr: float = 1e-5
    min_lr: float = 1e-6
    warmup_lr: float = 1e-6
    warmup_steps: int = 1000
    weight_decay: float = 0.05  # on >=2-D weights only; biases and norms get none
    beta1: float = 0.9
    beta2: float = 0.999
    max_grad_norm: float = 1.0  # the release did not clip; 0 disables
    schedule: str = "cosine_after_warmup"  # or "release": its cosine counts from step 0 (minigpt4/training/optim.py)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule {self.schedule!r} is unknown; choose one of {', '.join(SCHEDULES)}")


@dataclass
class TrainConfig:
    task: str = "sft"  # sft (stages 1-2) | grpo (stage 3: the `grpo:` section, docs/training.md)
    output_dir: str = "outputs/train"
    seed: int = 42
    max_epochs: int = 30
    iters_per_epoch: Optional[int] = 1000  # optimizer steps per epoch (the release's 1000); None = one pass
    batch_size: int = 1  # per process and micro-step
    grad_accum_steps: int = 1
    num_workers: int = 2
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # autocast in model.dtype on GPU (fp16 adds a grad scaler)
    class_balanced: bool = False  # sample classes equally (WeightedRandomSampler weights)
    log_every: int = 10
    save_every_steps: Optional[int] = None  # also checkpoint mid-epoch (crash safety on long epochs)
    keep_checkpoints: int = 2  # newest N step checkpoints kept; `best/` is kept separately
    resume: Optional[str] = None  # "auto" (newest valid in output_dir) or a checkpoint folder
    init_from: Optional[str] = None  # trainable weights to start from (stage 2 <- stage 1 best)
    max_steps: Optional[int] = None  # stop after this many optimizer steps in total (smoke tests)
    val_every_epochs: int = 1
    val_max_new_tokens: int = 16
    val_batch_size: int = 8
    val_metric: str = "weighted_f1"
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.task not in TRAIN_TASKS:
            raise ValueError(f"run.task={self.task!r} is unknown; choose one of {', '.join(TRAIN_TASKS)}")


@dataclass
class TrainRunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    val_datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    run: TrainConfig = field(default_factory=TrainConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)  # read when run.task is grpo


@dataclass
class EvalConfig:
    output_dir: str = "outputs/eval"
    batch_size: int = 8
    num_workers: int = 2
    device: str = "auto"
    max_new_tokens: dict[str, int] = field(default_factory=lambda: {"emotion": 16, "reason": 200, "reason_v2": 200})
    judge: dict[str, str] = field(default_factory=dict)  # EMER judge: url, model, api_key_env, cache, kind
    protocol: str = "clean"  # clean | release: the released evaluation's prompt, first frame, 500 tokens (--protocol)
    seed: int = 0
    # generate: parse the generated text; score_labels: the most likely label of the label set (with
    # probabilities); both: generate, and report the metrics of both modes side by side
    answer_mode: str = "generate"


@dataclass
class EvalRunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)  # keyed by benchmark name (--dataset)
    run: EvalConfig = field(default_factory=EvalConfig)


def load_train_config(path: str, overrides: Sequence[str] = ()) -> TrainRunConfig:
    return load_config(TrainRunConfig, path, overrides)


def load_eval_config(path: str, overrides: Sequence[str] = ()) -> EvalRunConfig:
    return load_config(EvalRunConfig, path, overrides)
