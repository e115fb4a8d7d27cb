"""The real-size model, executed once: build, one stage-2 training step, one answer; time + peak memory.

    python benchmarks/bench_real_size.py --device cpu        # 7B + EVA-g at 448 px, ~17 GiB of RAM, minutes
    python benchmarks/bench_real_size.py --device cuda       # the same on a GPU
    python benchmarks/bench_real_size.py --device cuda --load-in-4bit   # QLoRA: nf4 base (bitsandbytes)
    python benchmarks/bench_real_size.py --tiny              # the same code at tiny size (the test)

Why: the real-size shapes (EVA ViT-g/14 at 448 px, Llama-2-7B, LoRA r=64 on q/v, 260 visual tokens,
bf16 frozen weights, gradient checkpointing) otherwise only exist as parameter counts on the meta
device. This script runs them end to end once with random weights and measures what decides the
machine a user needs.

How: the model of ModelConfig's defaults is built on the meta device and materialised with
`to_empty` directly in its final dtypes (frozen weights bf16, trainable LoRA + projections fp32), then
filled with random values: no fp32 copy of the 7B weights ever exists and nothing is downloaded.
One clip in the training layout (BOS, prompt with 256 patch + 3 feature + 1 CLS slots, target) goes
through the live EVA, the projections and the LLM (bf16 autocast on CUDA, as train.py), then backward, gradient
clipping and AdamW, as train.py does; first with gradient checkpointing on, then off if the memory
estimate says it fits. Then one greedy answer of up to `--gen-tokens` new tokens.

Before anything is built the script compares its memory estimate (bench_gpu.estimate_memory plus a
process overhead) with the memory available (MemAvailable / cgroup limit on CPU, free GPU memory on
CUDA) and stops with an `error:` line instead of driving the machine into the OOM killer. On a CPU
a watchdog also stops the run cleanly if other processes take the memory while it runs (--floor-gib).

Peak memory per phase: resident set size (VmHWM, reset before each phase) on CPU, and
`torch.cuda.max_memory_allocated` on CUDA (host RSS is recorded too). Results go to
benchmarks/results/real_size_<device>.json (or --json).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_gpu import (  # noqa: E402
    TINY_OPTIONS, FlopModel, build_random_model, estimate_memory, free_memory, init_random_, set_checkpointing,
    synthetic_batch,
)
from benchmarks.common import command_line, format_table, machine_info, synchronize, write_json  # noqa: E402
from minigpt4.common.config import load_config  # noqa: E402
from minigpt4.models.builder import DTYPES, build_model, count_parameters  # noqa: E402
from minigpt4.models.config import ModelConfig  # noqa: E402
from minigpt4.run_config import OptimConfig  # noqa: E402
from minigpt4.training.optim import build_optimizer  # noqa: E402

GIB = 2**30
PROCESS_OVERHEAD_GIB = 1.5  # Python, torch + transformers libraries, oneDNN / cuBLAS workspaces, allocator slack


# ----------------------------------------------------------------------------------------- memory
def available_gib(device: torch.device) -> float:
    """Memory this process may still take: free GPU memory, or MemAvailable capped by the cgroup limit."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free / GIB
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    available = int(meminfo["MemAvailable"].split()[0]) * 1024
    limit, current = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    try:
        if limit.read_text().strip() != "max":
            available = min(available, int(limit.read_text()) - int(current.read_text()))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit visible: MemAvailable alone
    return available / GIB


def rss_gib(field: str = "VmRSS") -> Optional[float]:
    """This process's resident set (VmRSS) or its peak since the last reset (VmHWM), GiB; Linux only."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return None


class MemoryGuard:
    """On a shared CPU machine, stop this process cleanly when free memory runs out mid-phase.

    The up-front check cannot see other processes growing later; without this guard the kernel's OOM
    killer would pick the largest process (this one) or a neighbour's, with no message. A daemon
    thread polls MemAvailable and exits with an `error:` line below `floor_gib`.
    """

    def __init__(self, device: torch.device, floor_gib: float, interval_s: float = 0.25):
        self.phase = "start"
        if device.type != "cpu" or floor_gib <= 0:
            return
        threading.Thread(target=self._watch, args=(device, floor_gib, interval_s), daemon=True).start()

    def _watch(self, device: torch.device, floor_gib: float, interval_s: float) -> None:
        while True:
            left = available_gib(device)
            if left < floor_gib:
                print(f"error: memory ran short during phase '{self.phase}' ({left:.2f} GiB left, floor "
                      f"{floor_gib:.2f}; peak RSS {rss_gib('VmHWM') or 0:.1f} GiB): stopped before the OOM killer. "
                      "Run again when the machine is quieter (free -g)", file=sys.stderr, flush=True)
                os._exit(3)
            time.sleep(interval_s)


class PeakMemory:
    """Peak memory of one phase: CUDA `max_memory_allocated`, and the host's peak RSS (VmHWM)."""

    def __init__(self, device: torch.device):
        self.device = device
        # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0): a per-phase RSS peak.
        self.rss_resettable = self._reset_rss()

    @staticmethod
    def _reset_rss() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        free_memory(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._reset_rss()

    def read(self) -> dict[str, Optional[float]]:
        out = {"peak_rss_gib": rss_gib("VmHWM"), "rss_gib": rss_gib("VmRSS")}
        if self.device.type == "cuda":
            out["peak_cuda_allocated_gib"] = torch.cuda.max_memory_allocated(self.device) / GIB
            out["peak_cuda_reserved_gib"] = torch.cuda.max_memory_reserved(self.device) / GIB
        out["peak_memory_gib"] = out["peak_cuda_allocated_gib"] if self.device.type == "cuda" else out["peak_rss_gib"]
        return out


def estimate_gib(params: dict[str, int], flops: FlopModel, intermediate: int, seq: int, checkpointing: bool,
                 four_bit: bool) -> dict[str, float]:
    """Computed peak of one training step on one clip (bench_gpu.estimate_memory) + the process overhead."""
    parts = estimate_memory(params, flops, intermediate, 1, seq, checkpointing, four_bit)  # logits at every position: a safe bound
    parts["process_overhead"] = PROCESS_OVERHEAD_GIB
    parts["total"] += PROCESS_OVERHEAD_GIB
    return parts


# ----------------------------------------------------------------------------------------- model
def model_config(args: argparse.Namespace, llm_path: Optional[str] = None) -> ModelConfig:
    """ModelConfig defaults (real size) or the tiny architecture; bf16 frozen weights, no files."""
    options = ["llm.path=null", "vision.weights=null", "dtype=bf16"]
    if args.tiny:
        options += TINY_OPTIONS
    if args.load_in_4bit:
        options += [f"llm.path={llm_path}", "llm.load_in_4bit=true"]
    return load_config(ModelConfig, None, [*options, *args.options])


def write_random_llm(cfg: ModelConfig, folder: Path) -> Path:
    """A Hugging Face folder holding the configured LLM with random bf16 weights (QLoRA quantizes a folder).

    The tokenizer is the tests' small trained one: the benchmark feeds token ids, it only has to load.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    from minigpt4.tools.make_tiny_models import train_tiny_tokenizer

    with torch.device("meta"):
        llm = LlamaForCausalLM(LlamaConfig(**cfg.llm.architecture)).to(torch.bfloat16)
    llm = llm.to_empty(device="cpu")
    init_random_(llm)
    llm.save_pretrained(folder)
    train_tiny_tokenizer().save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------------------- phases
def train_step(model, optimizer, batch: dict, amp_dtype: torch.dtype, device: torch.device) -> dict[str, float]:
    """One optimizer step as train.py takes it: autocast forward, backward, clip to 1.0, AdamW, zero_grad."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
        loss = model(batch).loss
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": float(loss.detach()), "grad_norm": float(grad_norm)}


@torch.no_grad()
def answer(model, batch: dict, new_tokens: int, amp_dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
    """One greedy answer of up to `new_tokens` tokens through the model's own input embedding (EVA live)."""
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
        out = model.llama_model.generate(
            inputs_embeds=model.embed_inputs(batch), attention_mask=batch["attention_mask"],
            max_new_tokens=new_tokens, do_sample=False, num_beams=1, eos_token_id=2, pad_token_id=0,
        )
    return {"new_tokens": int(out.shape[1])}


def run_phase(name: str, memory: PeakMemory, guard: MemoryGuard, fn: Callable[[], dict], **extra: Any) -> dict[str, Any]:
    """Time `fn` and read the phase's peak memory; print one line."""
    guard.phase = name
    memory.reset()
    synchronize(memory.device)
    start = time.perf_counter()
    result = fn()
    synchronize(memory.device)
    row = {"phase": name, "status": "ok", "seconds": time.perf_counter() - start, **extra, **result, **memory.read()}
    print(f"{name:<22} {row['seconds']:8.1f} s   peak {row['peak_memory_gib']:6.2f} GiB", flush=True)
    return row


# ----------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny architecture, same code (tests)")
    parser.add_argument("--text-tokens", type=int, default=None, help="prompt + target text tokens (default 100)")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="of the text, prompt (no loss); default 60")
    parser.add_argument("--gen-tokens", type=int, default=16, help="most new tokens of the answer")
    parser.add_argument("--checkpointing", nargs="+", choices=("on", "off"), default=["on", "off"],
                        help="training steps to run, in order; 'off' is skipped when the estimate does not fit")
    parser.add_argument("--load-in-4bit", action="store_true",
                        help="QLoRA: nf4 base weights (CUDA + bitsandbytes) quantized from llm.path; without "
                             "--options llm.path=DIR holding a model, a random bf16 LLM folder is written first")
    parser.add_argument("--margin-gib", type=float, default=1.0, help="memory kept free beyond the estimate")
    parser.add_argument("--floor-gib", type=float, default=0.5,
                        help="CPU: stop cleanly when free memory falls below this mid-run (0: no guard)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--options", nargs="*", default=[], help="extra ModelConfig overrides, e.g. lora.r=16")
    parser.add_argument("--json", help="default benchmarks/results/real_size_<device>.json")
    args = parser.parse_args(argv)
    args.text_tokens = args.text_tokens or (24 if args.tiny else 100)
    args.prompt_tokens = args.prompt_tokens if args.prompt_tokens is not None else (12 if args.tiny else 60)
    if args.text_tokens <= args.prompt_tokens or args.prompt_tokens < 4:
        parser.error(f"--text-tokens {args.text_tokens} must exceed --prompt-tokens {args.prompt_tokens} (>= 4)")
    if args.gen_tokens < 1:
        parser.error("--gen-tokens must be >= 1")
    if args.load_in_4bit and args.device != "cuda":
        parser.error("--load-in-4bit needs --device cuda (bitsandbytes nf4 runs on CUDA)")
    return args


def device_slug(device: torch.device, tiny: bool, four_bit: bool) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return f"{'tiny_' if tiny else ''}{slug}{'_qlora' if four_bit else ''}"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device; run on a GPU machine or use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="real_size_llm_") as tmp:
        return run(args, device, Path(tmp))


def run(args: argparse.Namespace, device: torch.device, tmp: Path) -> dict:
    cfg = model_config(args, llm_path=str(tmp / "llm"))
    # train.py's rule: bf16 autocast on CUDA; on a CPU the bf16 frozen weights run without autocast.
    amp_dtype = DTYPES[cfg.dtype] if device.type == "cuda" else torch.float32
    seq = 1 + cfg.num_visual_tokens + args.text_tokens

    # Shapes first (meta device, no memory): exact parameter counts -> the memory estimate -> go / no go.
    shape_model = build_model(model_config(argparse.Namespace(**{**vars(args), "load_in_4bit": False})), meta=True)
    params, flops = count_parameters(shape_model), FlopModel.of(shape_model)
    intermediate = shape_model.llama_model.config.intermediate_size
    del shape_model
    estimates = {mode: estimate_gib(params, flops, intermediate, seq, mode == "on", args.load_in_4bit)
                 for mode in ("on", "off")}
    first = estimates[args.checkpointing[0]]["total"]
    available = available_gib(device)
    where = f"GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "this machine"
    print(f"estimate {first:.1f} GiB (+{args.margin_gib:.1f} margin) for build + a step with checkpointing "
          f"{args.checkpointing[0]}; available on {where}: {available:.1f} GiB")
    if first + args.margin_gib > available:
        raise SystemExit(
            f"error: not enough memory for the {'tiny' if args.tiny else 'real-size'} model: needs about "
            f"{first:.1f} GiB + {args.margin_gib:.1f} GiB margin, {available:.1f} GiB available on {where}. "
            "Free memory (other processes) and run again, or use a larger machine / --device cuda"
        )

    memory = PeakMemory(device)
    guard = MemoryGuard(device, args.floor_gib)
    phases: list[dict[str, Any]] = []
    torch.manual_seed(0)
    holder: dict[str, Any] = {}

    def build() -> dict:
        if args.load_in_4bit and not (Path(cfg.llm.path) / "config.json").is_file():
            write_random_llm(cfg, Path(cfg.llm.path))
        holder["model"] = model = build_random_model(cfg, device).train()
        if args.load_in_4bit:  # the EVA tower and projections are random too (build_model leaves them as built)
            init_random_(model.visual_encoder)
        return {"dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})}

    phases.append(run_phase("build", memory, guard, build))
    model = holder.pop("model")
    optimizer = build_optimizer(model, OptimConfig())
    vocab = model.llama_model.config.vocab_size
    train_batch = synthetic_batch(cfg, vocab, 1, args.text_tokens, args.prompt_tokens, True, device)
    eval_batch = synthetic_batch(cfg, vocab, 1, args.text_tokens, args.prompt_tokens, True, device, train=False)

    for i, mode in enumerate(args.checkpointing):
        name = f"train_step_ckpt_{mode}"
        estimate = estimates[mode]["total"]
        if i > 0:  # the model and optimizer are held already: only the extra activations must fit
            extra = estimate - estimates[args.checkpointing[0]]["total"]
            now = available_gib(device)
            if extra + args.margin_gib > now:
                print(f"{name:<22} skipped: needs ~{extra:.1f} GiB more, {now:.1f} GiB available", flush=True)
                phases.append({"phase": name, "status": f"skipped (needs ~{extra:.1f} GiB more, {now:.1f} available)",
                               "estimated_gib": estimate})
                continue
        set_checkpointing(model, mode == "on")
        phases.append(run_phase(name, memory, guard, lambda: train_step(model, optimizer, train_batch, amp_dtype, device),
                                estimated_gib=estimate, gradient_checkpointing=mode == "on"))
    set_checkpointing(model, False)
    model.eval()
    phases.append(run_phase("answer", memory, guard, lambda: answer(model, eval_batch, args.gen_tokens, amp_dtype, device),
                            max_new_tokens=args.gen_tokens))

    result = {
        "benchmark": "real_size",
        "command": command_line(),
        "machine": machine_info(device),
        "settings": {
            "device": str(device), "tiny": args.tiny, "dtype": cfg.dtype, "autocast": str(amp_dtype),
            "load_in_4bit": args.load_in_4bit, "image_size": cfg.vision.image_size, "eva": "live",
            "visual_tokens": cfg.num_visual_tokens, "text_tokens": args.text_tokens,
            "prompt_tokens": args.prompt_tokens, "seq_len": seq, "batch_size": 1, "gen_tokens": args.gen_tokens,
            "lora": vars(cfg.lora), "options": args.options, "torch_threads": torch.get_num_threads(),
            "weights": "random (architecture only, nothing downloaded)",
        },
        "parameters": params,
        "memory_check": {"available_gib": available, "margin_gib": args.margin_gib,
                         "estimate_gib": {mode: parts for mode, parts in estimates.items()}},
        "phases": phases,
        "notes": [
            "peak_memory_gib: peak RSS (VmHWM reset per phase) on CPU; torch.cuda.max_memory_allocated on CUDA",
            "estimated_gib: bench_gpu.estimate_memory for batch 1 + process overhead; computed, not measured",
            "with load_in_4bit, build includes writing the random bf16 LLM folder unless llm.path held one",
        ],
    }
    print(format_table(phases, ["phase", "status", "seconds", "peak_memory_gib", "estimated_gib"],
                       ["phase", "status", "seconds", "peak GiB", "est. GiB"]))
    out = write_json(args.json or f"benchmarks/results/real_size_{device_slug(device, args.tiny, args.load_in_4bit)}.json",
                     result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
