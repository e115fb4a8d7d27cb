"""Memory of the LM head in training: full-sequence logits vs logits at the target positions only.

    python benchmarks/bench_logits_memory.py        # real-size shapes from the meta device, any machine

The training forward (`EmotionLLaMA.forward` with labels) applies the [hidden, vocab] head only
where a label is. The Hugging Face path (`labels=` to the causal LM) builds [B, L, vocab] logits
for every position. Per logit position both keep 14 bytes alive for the backward pass, the same
accounting as `bench_gpu.py`: 16-bit logits, their fp32 copy, the fp32 log-softmax and its
gradient. The vocabulary size comes from the real-size config built on the meta device (no weights).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import command_line, format_table, machine_info, write_json  # noqa: E402
from minigpt4.common.config import load_config  # noqa: E402
from minigpt4.models.builder import build_model  # noqa: E402
from minigpt4.models.config import ModelConfig  # noqa: E402

REAL_YAML = "minigpt4/configs/models/emotion_llama.yaml"
BYTES_PER_LOGIT = 2 + 4 + 4 + 4
GIB = 1024**3
# (batch, sequence, target tokens per sample): a 448 px clip with a transcript is ~330 prompt tokens;
# stage 2 targets are a label + </s> (~4 tokens), stage 1 reasoning targets ~64; 1024 is the cap.
CASES = [(1, 330, 4), (1, 330, 64), (1, 1024, 64), (4, 1024, 64)]


def logits_row(vocab: int, batch: int, seq: int, targets: int) -> dict:
    full = batch * seq * vocab * BYTES_PER_LOGIT / GIB
    kept = batch * targets * vocab * BYTES_PER_LOGIT / GIB
    return {"batch": batch, "seq": seq, "targets": targets, "full_logits_gib": full,
            "target_logits_gib": kept, "saved_gib": full - kept}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg-path", default=REAL_YAML)
    parser.add_argument("--out", default="benchmarks/results/logits_memory.json")
    args = parser.parse_args(argv)

    cfg = load_config(ModelConfig, args.cfg_path, ["vision.weights=null", "llm.path=null", "checkpoint=null"])
    vocab = build_model(cfg, meta=True).llama_model.get_output_embeddings().weight.shape[0]
    rows = [logits_row(vocab, *case) for case in CASES]
    print(f"vocab {vocab}, {BYTES_PER_LOGIT} bytes per logit kept for the backward pass")
    print(format_table(rows, list(rows[0])))
    result = {"command": command_line(), "config": args.cfg_path, "vocab": vocab, "bytes_per_logit": BYTES_PER_LOGIT,
              "rows": rows, "machine": machine_info()}
    print(f"wrote {write_json(args.out, result)}")
    return result


if __name__ == "__main__":
    main()
