"""Re-state committed bench_gpu.py results with today's accounting: RE-COMPUTED, NOT RE-MEASURED.

    .venv/bin/python benchmarks/restate_gpu.py        # every results/gpu_*.json measured on a GPU

The step times and memory are the committed measurements; only the arithmetic on them changes:

* MFU divides by the GPU's published dense bf16 peak (`benchmarks.common.PUBLISHED_BF16_DENSE_TFLOPS`),
  not by the matmul rate the run measured (that rate stays beside it, as `fraction_of_measured_matmul`);
* model FLOPs count the LM head at target positions only (training builds logits only where a label
  is), and 4-bit weights from their logical shapes (older files counted the packed 4-bit `numel()`,
  half the layer: their `llm_linear` is doubled back, the 16-bit lm_head excepted).

Writes benchmarks/results/gpu_restated.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_gpu import FlopModel  # noqa: E402
from benchmarks.common import REPO, command_line, format_table, published_peak_tflops, write_json  # noqa: E402

RESULTS = REPO / "benchmarks/results"


def flop_model_of(committed: dict, four_bit: bool) -> FlopModel:
    """Today's FlopModel from a committed file's `flop_model` (older files folded lm_head into llm_linear)."""
    fm = dict(committed["flop_model"])
    if "lm_head" not in fm:
        head = fm["vocab"] * fm["hidden"]
        decoder = fm["llm_linear"] - head
        fm["llm_linear"] = 2 * decoder if four_bit else decoder  # packed nf4: two weights per stored byte
        fm["lm_head"] = head
    return FlopModel(**fm)


def restate(path: Path) -> list[dict]:
    committed = json.loads(path.read_text())
    settings = committed["settings"]
    gpu = committed["machine"].get("gpu") or "cpu"
    peak = published_peak_tflops(gpu)
    flops = flop_model_of(committed, settings.get("load_in_4bit", False))
    rows = []
    for row in committed["train"]:
        if row.get("status") != "ok":
            continue
        sec = row["seconds_per_step"]
        step = flops.train_step(row["batch_size"], row["seq_len"], row["text_tokens"] - settings["prompt_tokens"],
                                row["eva"] == "live")
        hardware = step["model"] + (step["recompute"] if row["gradient_checkpointing"] else 0.0)
        rows.append({
            "file": path.name, "gpu": gpu, "weights": "nf4" if settings.get("load_in_4bit") else settings["dtype"],
            "text_tokens": row["text_tokens"], "batch_size": row["batch_size"],
            "gradient_checkpointing": row["gradient_checkpointing"], "eva": row["eva"],
            "samples_per_s": row["samples_per_s"], "peak_memory_gib": row["peak_memory_gib"],
            "model_tflops_per_step": step["model"] / 1e12,
            "committed_model_tflops_per_step": row["model_tflops_per_step"],
            "mfu": step["model"] / sec / (peak * 1e12) if peak else None,
            "hfu": hardware / sec / (peak * 1e12) if peak else None,
            "fraction_of_measured_matmul": step["model"] / sec / (committed["matmul_peak"]["tflops"] * 1e12),
            "committed_mfu": row["mfu"],
            "published_peak_tflops": peak, "measured_matmul_tflops": committed["matmul_peak"]["tflops"],
        })
    return rows


def main() -> dict:
    files = sorted(p for p in RESULTS.glob("gpu_*.json") if "tiny" not in p.name and p.name != "gpu_restated.json")
    rows = [r for p in files for r in restate(p)]
    print("RE-COMPUTED from the committed step times, NOT RE-MEASURED: MFU of the published bf16 dense peak, "
          "FLOPs with target-only logits and logical 4-bit shapes")
    print(format_table(rows, ["weights", "text_tokens", "batch_size", "gradient_checkpointing", "eva", "samples_per_s",
                              "model_tflops_per_step", "committed_model_tflops_per_step", "mfu", "hfu",
                              "committed_mfu", "peak_memory_gib"],
                       ["weights", "text", "batch", "ckpt", "EVA", "samples/s", "TFLOP/step", "was", "MFU", "HFU",
                        "was (of matmul)", "peak GiB"]))
    result = {"benchmark": "gpu_restated", "command": command_line(), "sources": [p.name for p in files],
              "note": "re-computed from committed measurements, not re-measured", "train": rows}
    out = write_json(RESULTS / "gpu_restated.json", result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
