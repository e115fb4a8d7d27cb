"""Real-size Emotion-LLaMA on one GPU: training tokens/s, samples/s, MFU and peak memory; generation samples/s.

    python benchmarks/bench_gpu.py                                   # H100/H200: 7B + EVA-g, random weights
    python benchmarks/bench_gpu.py --text-tokens 1024 --batch-sizes 1 2 4 8   # the stage-2 memory question
    python benchmarks/bench_gpu.py --estimate-only --text-tokens 1024 # computed memory table, no GPU needed
    python benchmarks/bench_gpu.py --tiny --device cpu               # the same code at tiny size (tests)

Nothing is downloaded: the model is the real-size architecture of ModelConfig's defaults
(Llama-2-7b shape, EVA ViT-g/14 at 448 px, LoRA r=64 on q/v) built on the meta device, moved to the
GPU with `to_empty` and filled with random weights (N(0, 0.02), norms 1, biases 0, RoPE recomputed):
a few seconds instead of minutes of CPU init. Speed and memory do not depend on the weight values.

Each batch holds synthetic token ids in the training prompt layout: BOS, 256 patch slots, 3 feature
slots + 1 CLS slot (the 260 visual tokens) and `--text-tokens` text tokens, of which the first
`--prompt-tokens` are prompt and the rest are target (with loss). It sweeps batch sizes x activation
checkpointing (`--checkpointing`: off, on = every layer, every_k, mlp_only; model.activation_checkpointing)
x EVA mode (live: the frozen ViT runs on 448 px images every step; cached: tokens are
read from the batch, as with `eva_cache`). An out-of-memory at one batch size is recorded as "oom"
and the larger batch sizes of that setting are skipped.

MFU (model FLOPs utilisation) = model FLOPs per step / step time / the GPU's PUBLISHED dense bf16
peak (`benchmarks.common.PUBLISHED_BF16_DENSE_TFLOPS`, e.g. H100 SXM 989 TFLOP/s; `--peak-tflops` for a
GPU not in the table; none on a CPU, where MFU is left null). The rate of a square torch.matmul loop
measured here (`matmul_peak`) is reported beside it, never as the denominator. Model FLOPs, with
T = batch x sequence tokens, T_tgt = target tokens (the LM head runs only where a label is),
N = frozen LLM decoder Linear weights counted from their logical shapes (in x out, also for packed
4-bit weights; 6.48 B), N_head = vocab x hidden, attn = 4 x layers x hidden x seq^2 x batch
(QK^T and AV, causal mask not halved):
    forward   2 N T + attn + 2 N_head T_tgt + 2 N_lora T + projections
    backward  2 N T + 2 attn + 2 N_head T_tgt   activation gradients through the frozen LLM (no weight gradients)
              + 4 N_lora T          LoRA activation + weight gradients
              + projections         weight gradients only (their inputs are frozen)
    EVA live  2 N_eva T_eva + 4 depth width 1025^2 batch (forward only, no_grad)
i.e. about 4 N T, not the 6 N T of full fine-tuning: a frozen base skips weight gradients but still
back-propagates activation gradients through every layer. Gradient checkpointing re-runs the forward
(of every layer, every k-th layer, or the MLPs only); that is hardware work, not model work, so it lowers
MFU and is reported separately as HFU.

Results go to benchmarks/results/gpu_<device>.json (or --json).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    command_line, format_table, machine_info, published_peak_tflops, synchronize, write_json,
)
from minigpt4.common.config import load_config  # noqa: E402
from minigpt4.models.builder import (  # noqa: E402
    DTYPES, build_model, count_parameters, merged_lora, set_activation_checkpointing,
)
from minigpt4.models.config import ModelConfig  # noqa: E402
from minigpt4.models.kv_cache import PreallocatedCache  # noqa: E402
from minigpt4.run_config import OptimConfig  # noqa: E402
from minigpt4.training.optim import build_optimizer  # noqa: E402

GIB = 2**30
GEN_MODES = ("dynamic", "fast", "static")

# The tiny architecture of `--tiny` (same shapes as the tests' tiny model).
TINY_OPTIONS = [
    "vision.image_size=56", "vision.patch_size=14", "vision.width=32", "vision.depth=2", "vision.num_heads=2",
    "vision.mlp_dim=64", "llm.architecture.vocab_size=512", "llm.architecture.hidden_size=64",
    "llm.architecture.intermediate_size=128", "llm.architecture.num_hidden_layers=2",
    "llm.architecture.num_attention_heads=4", "llm.architecture.num_key_value_heads=4",
    "llm.architecture.max_position_embeddings=2048", "lora.r=8", "feature_dim=32",
]


# ----------------------------------------------------------------------------------------- model
def model_config(args: argparse.Namespace, device: torch.device) -> ModelConfig:
    """ModelConfig defaults (real size) or the tiny architecture, random weights, no files."""
    options = ["llm.path=null", "vision.weights=null", f"vision.image_size={args.image_size}"]
    if args.tiny:
        options = ["llm.path=null", "vision.weights=null", *TINY_OPTIONS]
    options.append(f"dtype={'fp32' if device.type == 'cpu' else args.dtype}")
    if args.load_in_4bit:
        if not any(o.startswith("llm.path=") for o in args.options):
            raise SystemExit("--load-in-4bit quantizes real weights: add --options llm.path=checkpoints/Llama-2-7b-chat-hf")
        options.append("llm.load_in_4bit=true")
    return load_config(ModelConfig, None, [*options, *args.options])


@torch.no_grad()
def init_random_(model: nn.Module, std: float = 0.02) -> None:
    """Fill a `to_empty` model: norms 1, biases 0, other weights N(0, std); buffers zero, RoPE recomputed."""
    for module in model.modules():
        is_norm = isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or "Norm" in type(module).__name__
        for name, param in module.named_parameters(recurse=False):
            if is_norm and name == "weight":
                param.fill_(1.0)
            elif name == "bias" or name.endswith("_bias"):
                param.zero_()
            else:
                param.normal_(0.0, std)
        for name, buffer in module.named_buffers(recurse=False):
            buffer.zero_()  # EVA's k_bias is a zero buffer
        if isinstance(getattr(module, "inv_freq", None), torch.Tensor) and hasattr(module, "config"):
            fresh = type(module)(module.config)  # rotary embedding: rebuild its frequencies on the CPU
            for name, buffer in fresh.named_buffers(recurse=False):
                getattr(module, name).copy_(buffer)


def build_random_model(cfg: ModelConfig, device: torch.device) -> nn.Module:
    """The configured architecture with random weights on `device`, built without a CPU-side init."""
    if getattr(cfg.llm, "load_in_4bit", False):
        with torch.device(device):  # bitsandbytes quantizes while the weights move to the GPU
            return build_model(cfg)
    model = build_model(cfg, meta=True).to_empty(device=device)
    init_random_(model)
    return model


@dataclass
class FlopModel:
    """Parameter counts that set the FLOPs of one step (see the module docstring)."""

    llm_linear: int  # frozen Linear weights of the decoder layers (logical shapes), excl. LoRA and lm_head
    lm_head: int  # vocab x hidden: applied at target positions only in training
    lora: int
    layers: int
    hidden: int
    vocab: int
    patch_proj: int  # llama_proj weight
    other_proj: int  # CLS + feature projection weights (one token each)
    eva_linear: int  # EVA Linear + patch-embedding weights
    eva_depth: int
    eva_width: int
    eva_tokens: int  # 1 + patches
    patch_tokens: int
    mlp_linear: int = 0  # of llm_linear, the MLP weights (mlp_only checkpointing recomputes just these)

    @classmethod
    def of(cls, model: nn.Module) -> "FlopModel":
        llm, lora, mlp = 0, 0, 0
        head = model.llama_model.get_output_embeddings()
        for name, module in model.llama_model.named_modules():
            if isinstance(module, nn.Linear) and module is not head:
                # in x out, not weight.numel(): a bitsandbytes 4-bit weight is packed two per byte
                if "lora_" in name:
                    lora += module.in_features * module.out_features
                else:
                    llm += module.in_features * module.out_features
                    mlp += module.in_features * module.out_features if ".mlp." in name else 0
        eva = sum(m.weight.numel() for m in model.visual_encoder.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
        cfg = model.cfg
        config = model.llama_model.config
        grid = cfg.vision.image_size // cfg.vision.patch_size
        return cls(
            llm_linear=llm, lm_head=head.in_features * head.out_features, lora=lora, layers=config.num_hidden_layers, hidden=config.hidden_size,
            vocab=config.vocab_size, patch_proj=model.llama_proj.weight.numel(),
            other_proj=sum(p.weight.numel() for p in [model.cls_tk_llama_proj, *model.feature_projections]),
            eva_linear=eva, eva_depth=cfg.vision.depth, eva_width=cfg.vision.width, eva_tokens=1 + grid * grid,
            patch_tokens=cfg.num_patch_tokens, mlp_linear=mlp,
        )

    def train_step(self, batch: int, seq: int, targets: int, live_eva: bool, checkpointing: str = "every_layer",
                   k: int = 2) -> dict[str, float]:
        """Model FLOPs of one training step (`targets` label tokens per sample), and the FLOPs the
        `checkpointing` mode recomputes (hardware work: the LM head is outside the checkpointed layers;
        every_k recomputes ceil(layers / k) layers, mlp_only the MLP matmuls)."""
        tokens = batch * seq
        attn = 4 * self.layers * self.hidden * seq * seq * batch
        head = 2 * self.lm_head * targets * batch
        llm_fwd = 2 * self.llm_linear * tokens + attn
        lora_fwd = 2 * self.lora * tokens
        proj = 2 * (self.patch_proj * self.patch_tokens + self.other_proj) * batch
        eva = (2 * self.eva_linear * self.eva_tokens + 4 * self.eva_depth * self.eva_width * self.eva_tokens**2) * batch
        forward = llm_fwd + head + lora_fwd + proj
        backward = (2 * self.llm_linear * tokens + 2 * attn + head) + 2 * lora_fwd + proj
        model_flops = forward + backward + (eva if live_eva else 0)
        recompute = {"none": 0.0, "every_layer": llm_fwd + lora_fwd,
                     "every_k": (llm_fwd + lora_fwd) * math.ceil(self.layers / k) / self.layers,
                     "mlp_only": 2 * self.mlp_linear * tokens}[checkpoint_mode(checkpointing)]
        return {"model": float(model_flops), "recompute": float(recompute)}


def checkpoint_mode(checkpointing: bool | str) -> str:
    """A model.activation_checkpointing mode; True / False (the older on / off) are every_layer / none."""
    if isinstance(checkpointing, bool):
        return "every_layer" if checkpointing else "none"
    return {"on": "every_layer", "off": "none"}.get(checkpointing, checkpointing)


# ----------------------------------------------------------------------------------------- inputs
def synthetic_batch(cfg: ModelConfig, vocab: int, batch: int, text_tokens: int, prompt_tokens: int,
                    live_eva: bool, device: torch.device, train: bool = True) -> dict[str, Any]:
    """A batch in EmotionCollator's layout: BOS, prompt with the 260 visual slots, then the target.

    Every row has the same length, so no padding (generation batches need none either).
    """
    g = torch.Generator().manual_seed(batch * 1000 + text_tokens)
    n_patch, n_tail = cfg.num_patch_tokens, cfg.num_features + 1
    prompt = prompt_tokens if train else text_tokens  # evaluation: the whole text is prompt
    head = min(8, prompt // 2)  # "[INST] <video>" before the patch slots, "</video> <feature>" between
    mid = min(3, prompt - head)
    text = torch.randint(3, vocab, (batch, text_tokens if train else prompt), generator=g)
    slot = torch.zeros(batch, 1, dtype=torch.long)
    pieces = [torch.ones(batch, 1, dtype=torch.long), text[:, :head], slot.expand(batch, n_patch),
              text[:, head:head + mid], slot.expand(batch, n_tail), text[:, head + mid:]]
    ids = torch.cat(pieces, dim=1)
    visual = torch.zeros_like(ids, dtype=torch.bool)
    visual[:, 1 + head:1 + head + n_patch] = True
    start = 1 + head + n_patch + mid
    visual[:, start:start + n_tail] = True
    out: dict[str, Any] = {
        "input_ids": ids, "attention_mask": torch.ones_like(ids), "visual_mask": visual,
        "features": torch.randn(batch, cfg.num_features, cfg.feature_layout.width, generator=g),
        "feature_present": torch.ones(batch, cfg.num_features, dtype=torch.bool),
        "image_present": torch.ones(batch, dtype=torch.bool),
    }
    if train:
        labels = torch.full_like(ids, -100)
        target = ids.shape[1] - (text_tokens - prompt_tokens)
        labels[:, target:] = ids[:, target:]
        out["labels"] = labels
    size, grid = cfg.vision.image_size, cfg.vision.image_size // cfg.vision.patch_size
    if live_eva:
        out["images"] = torch.randn(batch, 3, size, size, generator=g)
    else:
        out["image_embeds"] = torch.randn(batch, 1 + grid * grid, cfg.vision.width, generator=g).to(DTYPES[cfg.dtype])
    return {k: v.to(device) for k, v in out.items()}


# ----------------------------------------------------------------------------------------- measure
def is_oom(err: BaseException) -> bool:
    """CUDA out-of-memory, whichever way PyTorch / cuBLAS reports it."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "CUBLAS_STATUS_ALLOC_FAILED" in text)


def run_guarded(fn: Callable[[], dict], cleanup: Callable[[], None]) -> dict:
    """`fn()`, or {"status": "oom"} when it runs out of memory (then `cleanup` frees what it can)."""
    try:
        return {"status": "ok", **fn()}
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not is_oom(err):
            raise
        message = str(err).splitlines()[0][:200]
    # Leaving the except block dropped `err` and its traceback's frames (and their tensors).
    cleanup()
    return {"status": "oom", "error": message}


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> Optional[float]:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, iters: int) -> dict[str, Any]:
    """FLOP/s of a square matmul loop: the denominator of MFU, measured on this device."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"dtype": str(dtype).removeprefix("torch."), "size": size, "iters": iters,
            "tflops": 2 * size**3 * iters / seconds / 1e12}


def set_checkpointing(model: nn.Module, checkpointing: bool | str, k: int = 2) -> None:
    """Activation checkpointing as train.py sets it (`model.activation_checkpointing`); True = every layer."""
    set_activation_checkpointing(model.llama_model, checkpoint_mode(checkpointing), k)


def measure_train(model, optimizer, batch: dict, steps: int, warmup: int, amp_dtype: torch.dtype,
                  device: torch.device) -> dict[str, float]:
    """Mean seconds per optimizer step (forward, backward, clip, AdamW) after `warmup` steps."""
    trainable = [p for p in model.parameters() if p.requires_grad]

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            loss = model(batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    losses = [step() for _ in range(steps)]
    synchronize(device)
    loss = losses[-1]
    return {"seconds_per_step": (time.perf_counter() - start) / steps, "loss": float(loss)}


@torch.no_grad()
def measure_generate(model, batch: dict, new_tokens: int, repeats: int, amp_dtype: torch.dtype,
                     device: torch.device, gen_mode: str = "fast") -> dict[str, float]:
    """Seconds to answer the batch with exactly `new_tokens` greedy tokens (EVA, prefill and decode).
    `gen_mode` (GEN_MODES): ``dynamic`` = HF's growing cache, LoRA as separate matmuls (the release's
    way); ``fast`` = PreallocatedCache + LoRA merged (eval's defaults); ``static`` = HF's StaticCache,
    which HF compiles (CUDA graphs) on a GPU, + LoRA merged."""

    def answer() -> int:
        cache = {}
        if gen_mode == "fast":
            cache["past_key_values"] = PreallocatedCache(model.llama_model.config.num_hidden_layers,
                                                         batch["input_ids"].shape[1] + new_tokens)
        elif gen_mode == "static":
            cache["cache_implementation"] = "static"
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            out = model.llama_model.generate(
                inputs_embeds=model.embed_inputs(batch), attention_mask=batch["attention_mask"],
                max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                pad_token_id=0, **cache,
            )
        return out.shape[1]

    with merged_lora(model) if gen_mode != "dynamic" else contextlib.nullcontext():
        generated = answer()  # warm-up (and compilation, for static on a GPU)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            answer()
        synchronize(device)
    return {"seconds": (time.perf_counter() - start) / repeats, "new_tokens": generated}


# ----------------------------------------------------------------------------------------- memory estimate
# Bytes saved for backward per token per decoder layer, in units of `hidden`, for Llama with a frozen
# bf16 base and LoRA on q/v (frozen Linear layers save nothing for their input gradient):
#   2 RMSNorms (fp32 input kept by HF's RMSNorm: 4h + 2h each) 12h; LoRA q/v inputs + dropout masks 6h;
#   SDPA q, k, v, output 8h; SwiGLU gate, up, SiLU output (3 x 2 x intermediate = 16h at 11008/4096).
ACT_BYTES_PER_HIDDEN = 12 + 6 + 8
MLP_SAVED_TENSORS = 3
NF4_BYTES = 0.5 + 0.016  # 4 bits + double-quantized absmax (8 bits per 64 weights, 32 bits per 256 blocks)
FIT_LIMIT_GIB = 22.5  # a 24 GB card (24 GiB) minus CUDA context and allocator fragmentation


def estimate_memory(params: dict[str, int], flops: FlopModel, intermediate: int, batch: int, seq: int,
                    checkpointing: bool | str, four_bit: bool, weight_bytes: int = 2, targets: Optional[int] = None,
                    k: int = 2) -> dict[str, float]:
    """Computed (not measured) peak GPU memory of a training step, GiB, by component. The logits are
    built at the `targets` label positions per sample only (default: every position, the old bound).
    `checkpointing`: a model.activation_checkpointing mode (every_k with `k`), or True / False."""
    if four_bit:  # decoder Linear layers in nf4; embeddings, lm_head and norms stay 16-bit
        quantized = flops.llm_linear
        llm_weights = quantized * NF4_BYTES + (params["llm_base"] - quantized) * weight_bytes
    else:
        llm_weights = params["llm_base"] * weight_bytes
    mlp_token = MLP_SAVED_TENSORS * 2 * intermediate
    per_layer_token = ACT_BYTES_PER_HIDDEN * flops.hidden + mlp_token
    tokens = batch * seq
    mode = checkpoint_mode(checkpointing)
    # a checkpointed layer keeps its bf16 input (2 hidden bytes); one layer's (or MLP's) activations live
    # again during its recompute
    if mode == "every_layer":
        activations = tokens * (flops.layers * 2 * flops.hidden + per_layer_token)
    elif mode == "every_k":
        done = math.ceil(flops.layers / k)
        activations = tokens * (done * 2 * flops.hidden + (flops.layers - done + 1) * per_layer_token)
    elif mode == "mlp_only":  # the MLP's input is the norm output already counted
        activations = tokens * (flops.layers * (per_layer_token - mlp_token) + mlp_token)
    else:
        activations = tokens * flops.layers * per_layer_token
    activations += tokens * flops.hidden * 4 * 2  # inputs_embeds (fp32) and its gradient
    logit_rows = batch * (seq if targets is None else targets)
    logits = logit_rows * flops.vocab * (2 + 4 + 4 + 4)  # bf16 logits, fp32 copy, log-softmax, gradient
    parts = {
        "llm_weights": llm_weights,
        "eva_weights": params["visual_encoder"] * weight_bytes,
        "trainable_weights_grads_adam": params["trainable"] * 16,  # fp32 weight + grad + 2 Adam moments
        "activations": activations,
        "logits_and_loss": logits,
    }
    parts = {k: v / GIB for k, v in parts.items()}
    parts["total"] = sum(parts.values())
    return parts


def estimate_table(model, flops: FlopModel, batch: int, seq: int, targets: Optional[int] = None) -> list[dict[str, Any]]:
    params = count_parameters(model)
    intermediate = model.llama_model.config.intermediate_size
    rows = []
    for four_bit in (False, True):
        for checkpointing in (False, True):
            parts = estimate_memory(params, flops, intermediate, batch, seq, checkpointing, four_bit, targets=targets)
            rows.append({"weights": "nf4 (QLoRA)" if four_bit else "bf16", "gradient_checkpointing": checkpointing,
                         "batch_size": batch, "seq_len": seq, "target_tokens": targets, **parts,
                         "fits_24gb": parts["total"] < FIT_LIMIT_GIB})
    return rows


# ----------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny architecture (tests, CPU); same code paths")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 1 4 8 16 (tiny: 1 2)")
    parser.add_argument("--text-tokens", type=int, nargs="+", default=None,
                        help="text tokens per sample, prompt + target (default 100; 1024 = the release's cap)")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="of the text, prompt (no loss); default 60")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--checkpointing", nargs="+", choices=("off", "on", "every_k", "mlp_only"), default=["off", "on"],
                        help="activation checkpointing: off, on (every layer), every_k (--checkpointing-k), mlp_only")
    parser.add_argument("--checkpointing-k", type=int, default=2, help="every_k: layers 0, k, 2k, ... recompute")
    parser.add_argument("--eva", nargs="+", choices=("cached", "live"), default=["cached", "live"])
    parser.add_argument("--steps", type=int, default=None, help="measured steps (default 5, tiny 2)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--gen-tokens", type=int, default=16, help="new tokens per answer in the eval measurement")
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--no-train", action="store_true", help="generation only")
    parser.add_argument("--gen-modes", nargs="+", choices=GEN_MODES, default=["dynamic", "fast"],
                        help="generation paths to time (measure_generate): dynamic = the release's, fast = ours")
    parser.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16", help="frozen weights + autocast on GPU")
    parser.add_argument("--load-in-4bit", action="store_true", help="nf4 base weights (needs llm.load_in_4bit)")
    parser.add_argument("--matmul-size", type=int, default=None, help="default 8192 (tiny 256)")
    parser.add_argument("--matmul-iters", type=int, default=50)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's published dense bf16 peak, for a GPU not in PUBLISHED_BF16_DENSE_TFLOPS")
    parser.add_argument("--estimate-only", action="store_true", help="print the computed memory table and stop")
    parser.add_argument("--options", nargs="*", default=[], help="extra ModelConfig overrides, e.g. lora.r=16")
    parser.add_argument("--json", help="default benchmarks/results/gpu_<device>.json")
    args = parser.parse_args(argv)
    tiny = args.tiny
    args.batch_sizes = args.batch_sizes or ([1, 2] if tiny else [1, 4, 8, 16])
    args.text_tokens = args.text_tokens or ([24] if tiny else [100])
    args.prompt_tokens = args.prompt_tokens if args.prompt_tokens is not None else (12 if tiny else 60)
    args.steps = args.steps or (2 if tiny else 5)
    args.matmul_size = args.matmul_size or (256 if tiny else 8192)
    if tiny and args.image_size == 448:
        args.image_size = 56
    bad = [t for t in args.text_tokens if t <= args.prompt_tokens]
    if bad or args.prompt_tokens < 4:
        parser.error(f"--text-tokens {bad} must exceed --prompt-tokens {args.prompt_tokens} (>= 4): "
                     "the rest of the text is the target")
    if min(args.batch_sizes) < 1 or args.steps < 1 or args.gen_tokens < 1:
        parser.error("--batch-sizes, --steps and --gen-tokens must be >= 1")
    return args


def default_json(device: torch.device, tiny: bool) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return f"benchmarks/results/gpu_{'tiny_' if tiny else ''}{slug}.json"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device("cpu" if args.estimate_only else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or use --tiny --device cpu / --estimate-only")
    if device.type == "cpu" and not (args.tiny or args.estimate_only):
        raise SystemExit("the real-size model needs a GPU: add --tiny to run the same code at tiny size on the CPU")
    cfg = model_config(args, device)

    if args.estimate_only:
        model = build_model(cfg, meta=True)  # shapes only: exact parameter counts, no memory
        flops = FlopModel.of(model)
        rows = [r for t in args.text_tokens for b in args.batch_sizes
                for r in estimate_table(model, flops, b, 1 + cfg.num_visual_tokens + t, t - args.prompt_tokens)]
        print_estimates(rows)
        return {"memory_estimate": rows}

    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = build_random_model(cfg, device).train()
    build_s = time.perf_counter() - t0
    flops = FlopModel.of(model)
    params = count_parameters(model)
    vocab = model.llama_model.config.vocab_size
    amp_dtype = DTYPES[cfg.dtype] if device.type == "cuda" else torch.float32
    optimizer = build_optimizer(model, OptimConfig())
    peak = matmul_peak(device, amp_dtype, args.matmul_size, args.matmul_iters)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    published = args.peak_tflops or published_peak_tflops(device_name)
    print(f"built in {build_s:.1f}s: {params['total'] / 1e9:.2f} B parameters, {params['trainable'] / 1e6:.1f} M "
          f"trainable; published bf16 dense peak {published or 'unknown'} TFLOP/s (MFU denominator); "
          f"measured matmul {peak['tflops']:.1f} TFLOP/s ({peak['dtype']}, reported beside it)")

    def cleanup() -> None:
        optimizer.zero_grad(set_to_none=True)
        free_memory(device)

    train_rows: list[dict[str, Any]] = []
    for text in [] if args.no_train else args.text_tokens:
        seq = 1 + cfg.num_visual_tokens + text
        for ckpt in args.checkpointing:
            set_checkpointing(model, ckpt, args.checkpointing_k)
            for eva in args.eva:
                oom_at = None
                for batch_size in args.batch_sizes:
                    row = {"text_tokens": text, "seq_len": seq, "batch_size": batch_size,
                           "gradient_checkpointing": ckpt != "off", "activation_checkpointing": checkpoint_mode(ckpt),
                           "eva": eva,
                           "estimated_memory_gib": estimate_memory(
                               params, flops, model.llama_model.config.intermediate_size, batch_size, seq,
                               ckpt, args.load_in_4bit, targets=text - args.prompt_tokens,
                               k=args.checkpointing_k)["total"]}
                    if oom_at is not None:
                        train_rows.append({**row, "status": f"skipped (oom at batch {oom_at})"})
                        continue
                    free_memory(device)
                    reset_peak(device)

                    def run() -> dict:
                        batch = synthetic_batch(cfg, vocab, batch_size, text, args.prompt_tokens, eva == "live", device)
                        timing = measure_train(model, optimizer, batch, args.steps, args.warmup, amp_dtype, device)
                        step_flops = flops.train_step(batch_size, seq, text - args.prompt_tokens, eva == "live",
                                                      checkpoint_mode(ckpt), args.checkpointing_k)
                        sec = timing["seconds_per_step"]
                        hardware = step_flops["model"] + step_flops["recompute"]
                        return {
                            **timing,
                            "samples_per_s": batch_size / sec,
                            "tokens_per_s": batch_size * seq / sec,
                            "model_tflops_per_step": step_flops["model"] / 1e12,
                            "achieved_tflops": step_flops["model"] / sec / 1e12,
                            "mfu": step_flops["model"] / sec / (published * 1e12) if published else None,
                            "hfu": hardware / sec / (published * 1e12) if published else None,
                            "fraction_of_measured_matmul": step_flops["model"] / sec / (peak["tflops"] * 1e12),
                            "peak_memory_gib": peak_gib(device),
                        }

                    result = {**row, **run_guarded(run, cleanup)}
                    if result["status"] == "oom":
                        oom_at = batch_size
                    train_rows.append(result)
                    print_row(result)
    set_checkpointing(model, False)
    optimizer.zero_grad(set_to_none=True)
    del optimizer
    free_memory(device)

    eval_rows: list[dict[str, Any]] = []
    if not args.no_eval:
        model.eval()
        for text, eva, gen_mode in [(t, e, g) for t in args.text_tokens for e in args.eva for g in args.gen_modes]:
            oom_at = None
            for batch_size in args.batch_sizes:
                row = {"text_tokens": text, "seq_len": 1 + cfg.num_visual_tokens + text,
                       "batch_size": batch_size, "eva": eva, "gen_mode": gen_mode, "new_tokens": args.gen_tokens}
                if oom_at is not None:
                    eval_rows.append({**row, "status": f"skipped (oom at batch {oom_at})"})
                    continue
                free_memory(device)
                reset_peak(device)

                def run() -> dict:
                    batch = synthetic_batch(cfg, vocab, batch_size, text, args.prompt_tokens, eva == "live",
                                            device, train=False)
                    timing = measure_generate(model, batch, args.gen_tokens, max(1, args.steps // 2),
                                              amp_dtype, device, gen_mode)
                    return {**timing, "samples_per_s": batch_size / timing["seconds"],
                            "new_tokens_per_s": batch_size * timing["new_tokens"] / timing["seconds"],
                            "peak_memory_gib": peak_gib(device)}

                result = {**row, **run_guarded(run, lambda: free_memory(device))}
                if result["status"] == "oom":
                    oom_at = batch_size
                eval_rows.append(result)

    result = {
        "benchmark": "gpu",
        "command": command_line(),
        "machine": machine_info(device),
        "settings": {
            "device": str(device), "tiny": args.tiny, "dtype": cfg.dtype, "autocast": str(amp_dtype),
            "load_in_4bit": args.load_in_4bit, "image_size": cfg.vision.image_size,
            "visual_tokens": cfg.num_visual_tokens, "text_tokens": args.text_tokens,
            "prompt_tokens": args.prompt_tokens, "batch_sizes": args.batch_sizes, "steps": args.steps,
            "warmup": args.warmup, "gen_tokens": args.gen_tokens, "lora": vars(cfg.lora),
            "options": args.options, "weights": "random (architecture only, nothing downloaded)",
            "build_seconds": round(build_s, 2),
        },
        "parameters": params,
        "flop_model": vars(flops),
        "published_peak_tflops": published,
        "matmul_peak": peak,
        "train": train_rows,
        "eval": eval_rows,
        "notes": [
            "mfu = model FLOPs / step time / published_peak_tflops (the GPU's published dense bf16 peak; null "
            "when unknown); fraction_of_measured_matmul divides by matmul_peak instead, for reference only; model FLOPs = forward 2NT + attn + LoRA + projections, "
            "LM head 2 vocab hidden per target token forward and backward (target-only logits), "
            "backward 2NT + 2 attn (activation gradients through the frozen LLM) + LoRA/projection gradients, "
            "plus the EVA forward when live; hfu adds the recomputed forward of gradient checkpointing",
            "peak_memory_gib = torch.cuda.max_memory_allocated (the CUDA context and allocator cache are extra)",
            "estimated_memory_gib is computed by estimate_memory(), not measured",
        ],
    }
    print_summary(result)
    out = write_json(args.json or default_json(device, args.tiny), result)
    print(f"wrote {out}")
    return result


def print_row(row: dict) -> None:
    tag = (f"text {row['text_tokens']:>4}  batch {row['batch_size']:>2}  ckpt {row.get('activation_checkpointing', '-'):<11}"
           f"  EVA {row['eva']:<6}")
    if row["status"] != "ok":
        print(f"{tag}  {row['status']}")
        return
    mem = "-" if row["peak_memory_gib"] is None else f"{row['peak_memory_gib']:.1f} GiB"
    mfu = "MFU    -" if row["mfu"] is None else f"MFU {100 * row['mfu']:5.1f}%"
    print(f"{tag}  {row['samples_per_s']:8.2f} samples/s  {row['tokens_per_s']:10.0f} tokens/s  "
          f"{mfu}  ({100 * row['fraction_of_measured_matmul']:5.1f}% of measured matmul)  peak {mem}", flush=True)


def print_summary(result: dict) -> None:
    print(f"\ntraining (tokens = all positions incl. the 260 visual ones); MFU/HFU of the published bf16 dense "
          f"peak {result['published_peak_tflops'] or '(unknown: MFU not computed)'} TFLOP/s; "
          f"measured matmul {result['matmul_peak']['tflops']:.1f} TFLOP/s beside it")
    print(format_table(result["train"], ["text_tokens", "batch_size", "activation_checkpointing", "eva", "status",
                                         "samples_per_s", "tokens_per_s", "mfu", "hfu", "fraction_of_measured_matmul",
                                         "peak_memory_gib", "estimated_memory_gib"],
                       ["text", "batch", "ckpt", "EVA", "status", "samples/s", "tokens/s", "MFU", "HFU",
                        "of matmul", "peak GiB", "est. GiB"]))
    if result["eval"]:
        print(f"\nevaluation ({result['settings']['gen_tokens']} new tokens per answer, greedy)")
        print(format_table(result["eval"], ["text_tokens", "batch_size", "eva", "gen_mode", "status", "samples_per_s",
                                            "new_tokens_per_s", "peak_memory_gib"],
                           ["text", "batch", "EVA", "generation", "status", "samples/s", "new tokens/s", "peak GiB"]))


def print_estimates(rows: list[dict]) -> None:
    print("COMPUTED, NOT MEASURED: training-step memory (GiB), CUDA context (~0.5-1 GiB) not included")
    print(format_table(rows, ["weights", "gradient_checkpointing", "batch_size", "seq_len", "llm_weights",
                              "eva_weights", "trainable_weights_grads_adam", "activations", "logits_and_loss",
                              "total", "fits_24gb"],
                       ["weights", "ckpt", "batch", "seq", "LLM", "EVA", "trainable+Adam", "activations",
                        "logits", "total", "fits 24 GB"]))


if __name__ == "__main__":
    main()
