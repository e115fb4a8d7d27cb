"""Schemas of the YAML files users edit: `train_configs/*.yaml` and `eval_configs/*.yaml`.

    model:     ModelConfig   (minigpt4/models/config.py)
    datasets:  {name: DatasetConfig}   training mixture, or the benchmarks an eval config knows
    val_datasets: {name: DatasetConfig}   model selection during training (never the test split)
    run:       TrainConfig / EvalConfig (below)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Sequence

from minigpt4.common.config import load_config
from minigpt4.data.config import DatasetConfig
from minigpt4.models.config import KV_CACHES, ModelConfig


SCHEDULES = ("cosine_after_warmup", "release")
TRAIN_TASKS = ("sft", "grpo")  # supervised fine-tuning (stages 1-2) | GRPO with verifiable rewards (stage 3)
BATCHINGS = ("fixed", "length_grouped")  # run.batching (minigpt4/training/sampling.py)


@dataclass
class GenerationConfig:
    """Decoding settings, shared by evaluation (the keys of `run:`) and inference (`generation:`);
    docs/model.md, "Answers". Greedy with one beam unless sampling is asked for; sampling uses
    the release demo's temperature / top-p / repetition penalty."""

    max_new_tokens: dict[str, int] = field(
        default_factory=lambda: {"emotion": 16, "reason": 200, "reason_v2": 200})
    sample: bool = False  # the command line's --sample; the web demo turns it on
    temperature: float = 0.2
    top_p: float = 0.9
    repetition_penalty: float = 1.05
    seed: int = 0  # seeds projections a checkpoint does not cover, and sampled answers (repeatable runs)
    # Speed only, same answers (docs/model.md, "Fast generation"): the KV cache of the decode loop
    # (preallocated | dynamic | static; static = HF's StaticCache, which HF compiles on CUDA) and
    # LoRA folded into the base weights while answering (restored exactly afterwards).
    kv_cache: str = "preallocated"
    merge_lora: bool = True

    def __post_init__(self) -> None:
        if self.kv_cache not in KV_CACHES:
            raise ValueError(f"kv_cache {self.kv_cache!r} is unknown; choose one of {', '.join(KV_CACHES)}")

    BOUNDS: ClassVar[dict[str, str]] = {  # checked at load time (common.config.check_bounds)
        "max_new_tokens": ">0", "temperature": ">0", "top_p": "0..1", "repetition_penalty": ">0"}

    def kwargs(self, sample: bool) -> dict[str, Any]:
        """Keyword arguments for `EmotionLLaMA.generate` (on top of max_new_tokens)."""
        if not sample:
            return {"do_sample": False, "num_beams": 1, "kv_cache": self.kv_cache}
        return {"do_sample": True, "num_beams": 1, "temperature": self.temperature, "top_p": self.top_p,
                "repetition_penalty": self.repetition_penalty, "kv_cache": self.kv_cache}


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

    BOUNDS: ClassVar[dict[str, str]] = {  # checked at load time (common.config.check_bounds)
        "init_lr": ">0", "min_lr": ">=0", "warmup_lr": ">=0", "warmup_steps": ">=0", "weight_decay": ">=0",
        "beta1": "0..<1", "beta2": "0..<1", "max_grad_norm": ">=0"}

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
    # fixed: micro-batches in the epoch's shuffled order; length_grouped: the same samples, grouped
    # into micro-batches of similar token length within chunks of `group_size` micro-batches per
    # process (less padding; docs/training.md, "Batching and activation checkpointing")
    batching: str = "fixed"
    group_size: int = 64
    # length_grouped: at most this many positions (samples x the longest sample) per micro-batch, so
    # micro-batches of long samples hold fewer of them and peak memory is bounded; None = no cap
    token_budget: Optional[int] = None
    num_workers: int = 2  # data-loader worker processes (at most the usable cores minus one)
    num_threads: Optional[int] = None  # intra-op CPU threads; None = usable cores minus workers (common/threads.py)
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # autocast in model.dtype on GPU (fp16 adds a grad scaler)
    class_balanced: bool = False  # sample classes equally (WeightedRandomSampler weights)
    log_every: int = 10
    save_every_steps: Optional[int] = None  # also checkpoint mid-epoch (crash safety on long epochs)
    keep_checkpoints: int = 2  # newest N step checkpoints kept; `best/` is kept separately
    resume: Optional[str] = None  # "auto" (newest valid in output_dir) or a checkpoint folder
    # validation clips are removed from every training list by name; false only to validate on the
    # training clips on purpose (a memorisation check), never for a score you report
    drop_val_clips_from_train: bool = True
    start_fresh: bool = False  # resume "auto" finding only invalid checkpoints trains from step 0 instead of stopping
    init_from: Optional[str] = None  # trainable weights to start from (stage 2 <- stage 1 best)
    max_steps: Optional[int] = None  # stop after this many optimizer steps in total (smoke tests)
    val_every_epochs: int = 1
    val_max_new_tokens: int = 16
    val_batch_size: int = 8
    val_metric: str = "weighted_f1"
    optim: OptimConfig = field(default_factory=OptimConfig)

    BOUNDS: ClassVar[dict[str, str]] = {
        "max_epochs": ">0", "iters_per_epoch": ">0", "batch_size": ">0", "grad_accum_steps": ">0", "group_size": ">0", "token_budget": ">0",
        "num_workers": ">=0", "num_threads": ">0",
        "log_every": ">0", "save_every_steps": ">0", "keep_checkpoints": ">=0",
        "max_steps": ">0", "val_every_epochs": ">0", "val_max_new_tokens": ">0", "val_batch_size": ">0"}

    def __post_init__(self) -> None:
        if self.task not in TRAIN_TASKS:
            raise ValueError(f"run.task={self.task!r} is unknown; choose one of {', '.join(TRAIN_TASKS)}")
        if self.batching not in BATCHINGS:
            raise ValueError(f"run.batching={self.batching!r} is unknown; choose one of {', '.join(BATCHINGS)}")
        if self.token_budget is not None and self.batching != "length_grouped":
            raise ValueError("run.token_budget caps length-grouped micro-batches: set run.batching: length_grouped "
                             "(or remove token_budget)")


LOSS_AGGREGATIONS = ("sequence", "token", "dr_grpo")  # GRPO | DAPO, BNPO | Dr. GRPO
REFERENCES = ("adapter", "base")  # frozen copy of the starting LoRA | the LLM with the adapter disabled


@dataclass
class GRPOConfig:
    """`grpo:` of a stage 3 train config (`run.task: grpo`); every choice is explained in docs/training.md.

    Reward names and the template are checked against the reward registry when training starts
    (`training.grpo_step.check_grpo_config`), before any data or model is loaded."""

    group_size: int = 8  # G completions per prompt
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    template: str = "plain"  # plain | answer | think_answer | your own text with {answer}
    rewards: dict[str, Any] = field(default_factory=dict)  # {reward name: weight}, e.g. {accuracy: 1.0, format: 0.2}
    reward_modules: list[str] = field(default_factory=list)  # modules registering your own rewards, imported first
    soft_length: Optional[int] = None  # the `length` reward starts here (default 3/4 of max_new_tokens)
    scale_by_std: bool = True  # divide advantages by the group's std (GRPO); false = Dr. GRPO
    advantage_eps: float = 1e-4
    eps_low: float = 0.2  # ratio clip 1 - eps_low ...
    eps_high: float = 0.2  # ... 1 + eps_high (DAPO: 0.28)
    num_iterations: int = 1  # optimizer updates per batch of rollouts (old log-probs stored)
    beta: float = 0.04  # weight of the k3 KL to the reference; 0 skips the reference pass
    reference: str = "adapter"  # adapter | base
    loss_aggregation: str = "sequence"  # sequence | token | dr_grpo
    skip_all_equal: bool = False  # leave groups whose rewards are all equal out of the loss (dynamic sampling)

    def __post_init__(self) -> None:
        for name, weight in self.rewards.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ValueError(f"grpo.rewards.{name}: weight {weight!r} is not a number (e.g. {name}: 1.0)")
        self.rewards = {str(k): float(v) for k, v in self.rewards.items()}
        if self.group_size < 2:
            raise ValueError(f"grpo.group_size={self.group_size}: G must be an integer >= 2 (a group of one has no baseline)")
        if self.loss_aggregation not in LOSS_AGGREGATIONS:
            raise ValueError(f"grpo.loss_aggregation={self.loss_aggregation!r}; choose one of {', '.join(LOSS_AGGREGATIONS)}")
        if self.reference not in REFERENCES:
            raise ValueError(f"grpo.reference={self.reference!r}; choose one of {', '.join(REFERENCES)}")
        if self.num_iterations < 1 or self.max_new_tokens < 1:
            raise ValueError("grpo.num_iterations and grpo.max_new_tokens must be >= 1")
        if not (0 <= self.eps_low < 1 and self.eps_high >= 0):
            raise ValueError(f"grpo.eps_low={self.eps_low} must be in [0, 1) and grpo.eps_high={self.eps_high} >= 0")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"grpo.temperature={self.temperature} must be > 0 and grpo.top_p={self.top_p} in (0, 1]")
        if self.soft_length is None:
            self.soft_length = self.max_new_tokens * 3 // 4


@dataclass
class TrainRunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    val_datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    run: TrainConfig = field(default_factory=TrainConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)  # read when run.task is grpo


JUDGE_KINDS = ("llm", "offline")


@dataclass
class JudgeConfig:
    """The EMER judge (`run.judge` of eval configs; used by minigpt4/eval/judge.py): where and
    how to judge. Checked when the config is loaded, so a bad value fails before generation.
    Empty url / model are filled from the environment by `resolved`. The key is never a config
    value (configs are saved beside results): `api_key_env` names the variable that holds it."""

    kind: str = "llm"  # llm | offline
    url: str = ""  # base (…/v1) or full …/chat/completions URL; env EMER_JUDGE_URL
    model: str = ""  # env EMER_JUDGE_MODEL
    api_key_env: str = "OPENAI_API_KEY"  # NAME of the variable holding the key ("" = no key; local servers need none)
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 2.0  # waits backoff_s * 2**attempt between tries
    cache_path: str = ""  # JSONL; default: emer_judge_cache.jsonl next to the report
    max_tokens: int = 256

    BOUNDS: ClassVar[dict[str, str]] = {"timeout_s": ">0", "max_tokens": ">0", "max_retries": ">=0", "backoff_s": ">=0"}

    def __post_init__(self) -> None:
        if self.kind not in JUDGE_KINDS:
            raise ValueError(f"judge.kind {self.kind!r} is unknown; use {' or '.join(JUDGE_KINDS)}")
        for name in ("timeout_s", "max_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"judge.{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_retries", "backoff_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"judge.{name} must be >= 0, got {getattr(self, name)}")

    def resolved(self, env: Mapping[str, str] | None = None) -> "JudgeConfig":
        """A copy with url / model / key taken from `env` (default ``os.environ``) where empty."""
        env = os.environ if env is None else env
        return JudgeConfig(
            kind=self.kind,
            url=self.url or env.get("EMER_JUDGE_URL", ""),
            model=self.model or env.get("EMER_JUDGE_MODEL", ""),
            api_key_env=self.api_key_env,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
            cache_path=self.cache_path,
            max_tokens=self.max_tokens,
        )


@dataclass
class UnibenchConfig:
    """`run.unibench` of an eval config (``--benchmark mer-unibench``; docs/metrics.md, "MER-UniBench")."""

    wheels: str = ""  # AffectGPT's emotion_wheel/ folder (format.csv, synonym.xlsx, wheel1..5.xlsx)
    # label extraction (minigpt4/eval/label_extraction.py ExtractionConfig): kind llm | offline_lexicon,
    # url, model, api_key_env, sampling greedy | owners, cache_path, timeout_s, max_retries, concurrency
    extraction: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig(GenerationConfig):
    """`run:` of an eval config. The decoding keys (max_new_tokens, sample, temperature, ...) are
    `GenerationConfig`'s, written directly under `run:`."""

    output_dir: str = "outputs/eval"
    batch_size: int = 8
    num_workers: int = 2  # data-loader worker processes (at most the usable cores minus one)
    num_threads: Optional[int] = None  # intra-op CPU threads; None = usable cores minus workers (common/threads.py)
    device: str = "auto"
    amp: bool = True  # autocast in model.dtype on GPU, as training
    judge: JudgeConfig = field(default_factory=JudgeConfig)  # EMER judge: kind, url, model, api_key_env, cache_path
    protocol: str = "clean"  # clean | release: the released evaluation's prompt, first frame, 500 tokens (--protocol)
    unibench: UnibenchConfig = field(default_factory=UnibenchConfig)  # --benchmark mer-unibench: wheels, extraction
    # generate: parse the generated text; score_labels: the most likely label of the label set (with
    # probabilities); both: generate, and report the metrics of both modes side by side
    answer_mode: str = "generate"

    BOUNDS: ClassVar[dict[str, str]] = {**GenerationConfig.BOUNDS, "batch_size": ">0", "num_workers": ">=0",
                                        "num_threads": ">0"}

    @property
    def variant(self) -> str:
        """The folder name of a run whose numbers differ from the default's: ``""`` for the clean
        protocol with generated answers, else ``release``, ``score_labels`` or ``release_score_labels``.
        (``both`` reports the generated answers' metrics as ``generate`` does, plus the scored ones beside them.)"""
        parts = [self.protocol] if self.protocol != "clean" else []
        return "_".join(parts + (["score_labels"] if self.answer_mode == "score_labels" else []))

    def result_dir(self, key: str, fold: Optional[int] = None, dropped: Sequence[str] = ()) -> Path:
        """Where an evaluation of `datasets.<key>` writes: ``<output_dir>/<key>`` for the clean protocol
        and generated answers, ``<output_dir>/<key>/<variant>`` otherwise (a release-protocol run never
        overwrites the clean one), then ``/without_<inputs>`` when inputs are removed from every clip
        (the dataset's `drop_modalities`), then ``/fold_<k>`` when a single fold is chosen."""
        root = Path(self.output_dir) / key
        root = root / self.variant if self.variant else root
        root = root / f"without_{'_'.join(dropped)}" if dropped else root
        return root / f"fold_{fold}" if fold is not None else root


@dataclass
class EvalRunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)  # keyed by benchmark name (--dataset)
    run: EvalConfig = field(default_factory=EvalConfig)


def load_train_config(path: str, overrides: Sequence[str] = ()) -> TrainRunConfig:
    return load_config(TrainRunConfig, path, overrides)


def load_eval_config(path: str, overrides: Sequence[str] = ()) -> EvalRunConfig:
    return load_config(EvalRunConfig, path, overrides)
