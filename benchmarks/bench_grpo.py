"""Memory and work of one real-size stage 3 (GRPO) step, computed on the meta device (no weights, no GPU).

    python benchmarks/bench_grpo.py                     # G=8, 7B, 260 visual tokens, 256 new tokens
    python benchmarks/bench_grpo.py --group-size 4 --new-tokens 512

One GRPO step on one prompt (docs/training.md, "Stage 3"): the prompt (BOS, 256 patch + 3 feature +
1 CLS slots, `--text-tokens` of text) is embedded once; G completions of up to `--new-tokens` are
sampled with a KV cache; the reference (beta > 0) and, with num_iterations > 1, the old policy score
them without gradients; then the policy scores them with gradients and steps. The model is the
real-size architecture of ModelConfig's defaults built on the meta device, so parameter counts are
exact; memory and FLOPs are computed from them (benchmarks/bench_gpu.py's training-step model with
batch = G rows of prompt + completion tokens, and the LM head applied to completion positions only):

    generation   weights + KV cache  G x (prompt + new) x layers x 2 (K, V) x hidden x 2 bytes
    reference    weights + one layer's activations + the completion logits (no gradients)
    update       bench_gpu.estimate_memory(batch=G, seq=prompt + new), logits of completions only
    always       + the frozen reference copy of LoRA and projections (fp32), Adam state

The step's peak is the largest phase plus the reference copy. FLOPs: generation 2 N per new token
per row (+ the prefill), each no-grad pass 2 N T, the update ~4 N T per iteration (a frozen base:
activation gradients only). Nothing here is measured: it says which card a setting needs.
Results go to benchmarks/results/grpo_estimate.json (or --json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_gpu import FIT_LIMIT_GIB, GIB, FlopModel, TINY_OPTIONS, estimate_memory  # noqa: E402
from benchmarks.common import command_line, format_table, machine_info, write_json  # noqa: E402
from minigpt4.common.config import load_config  # noqa: E402
from minigpt4.models.builder import build_model, count_parameters  # noqa: E402
from minigpt4.models.config import ModelConfig  # noqa: E402

WEIGHT_BYTES = 2  # bf16 frozen weights and KV cache


def grpo_step_estimate(params: dict[str, int], flops: FlopModel, intermediate: int, *, group_size: int,
                       prompt_tokens: int, new_tokens: int, checkpointing: bool, four_bit: bool, beta: float,
                       num_iterations: int) -> dict[str, Any]:
    """Computed peak memory (GiB, by phase) and FLOPs of one GRPO step on one prompt."""
    seq = prompt_tokens + new_tokens
    update = estimate_memory(params, flops, intermediate, group_size, seq, checkpointing, four_bit, WEIGHT_BYTES)
    full_logits = group_size * seq * flops.vocab * (2 + 4 + 4 + 4) / GIB
    completion_logits = group_size * new_tokens * flops.vocab * (2 + 4 + 4 + 4) / GIB
    update["logits_and_loss"] += completion_logits - full_logits  # the LM head runs on completion positions only
    static = update["llm_weights"] + update["eva_weights"] + update["trainable_weights_grads_adam"]
    kv_cache = group_size * seq * flops.layers * 2 * flops.hidden * WEIGHT_BYTES / GIB
    one_layer = group_size * seq * (4 * flops.hidden + 2 * intermediate) * WEIGHT_BYTES / GIB
    generation = static + kv_cache + one_layer
    no_grad_pass = static + one_layer + group_size * new_tokens * flops.vocab * 4 * 2 / GIB
    reference_copy = (flops.lora + flops.patch_proj + flops.other_proj) * 4 / GIB
    update_total = static + update["activations"] + update["logits_and_loss"]
    peak = max(generation, no_grad_pass, update_total) + reference_copy

    n = flops.llm_linear + flops.lm_head + flops.lora
    train = flops.train_step(group_size, seq, new_tokens, live_eva=False)["model"]  # LM head on completions only
    generate_flops = 2 * n * group_size * seq  # prefill of the G rows + one token per row per step
    passes = (1 if beta else 0) + (1 if num_iterations > 1 else 0)
    return {
        "weights": "nf4 (QLoRA)" if four_bit else "bf16", "gradient_checkpointing": checkpointing,
        "group_size": group_size, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
        "generation_gib": generation, "no_grad_pass_gib": no_grad_pass, "update_gib": update_total,
        "kv_cache_gib": kv_cache, "activations_gib": update["activations"], "logits_gib": update["logits_and_loss"],
        "reference_copy_gib": reference_copy, "peak_gib": peak, "fits_24gb": peak < FIT_LIMIT_GIB,
        "tflops_generation": generate_flops / 1e12, "tflops_scoring": passes * 2 * n * group_size * seq / 1e12,
        "tflops_update": num_iterations * train / 1e12,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--text-tokens", type=int, default=70, help="prompt text tokens besides the 260 visual ones")
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--num-iterations", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="the tiny architecture (tests)")
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(ModelConfig, None, TINY_OPTIONS if args.tiny else [])
    model = build_model(cfg, meta=True)
    params, flops = count_parameters(model), FlopModel.of(model)
    intermediate = model.llama_model.config.intermediate_size
    prompt_tokens = 1 + cfg.num_visual_tokens + args.text_tokens
    rows = [grpo_step_estimate(params, flops, intermediate, group_size=args.group_size, prompt_tokens=prompt_tokens,
                               new_tokens=args.new_tokens, checkpointing=ckpt, four_bit=four_bit, beta=args.beta,
                               num_iterations=args.num_iterations)
            for four_bit in (False, True) for ckpt in (False, True)]
    result = {
        "command": command_line(), "machine": machine_info("meta"),
        "settings": {**vars(args), "visual_tokens": cfg.num_visual_tokens, "prompt_tokens": prompt_tokens,
                     "parameters": params},
        "rows": rows,
        "note": "computed on the meta device (exact parameter counts, estimated activations), not measured",
    }
    columns = ["weights", "gradient_checkpointing", "generation_gib", "update_gib", "kv_cache_gib", "logits_gib",
               "reference_copy_gib", "peak_gib", "fits_24gb", "tflops_generation", "tflops_update"]
    print(format_table(rows, columns))
    default = "grpo_estimate_tiny.json" if args.tiny else "grpo_estimate.json"
    write_json(Path(args.json) if args.json else Path(__file__).parent / "results" / default, result)
    return result


if __name__ == "__main__":
    main()
