#!/usr/bin/env bash
# Every GPU measurement of issue 24 in one go (~7-10 minutes on an H100/H200), random weights, nothing
# downloaded. Run from the repository root on a machine with one CUDA GPU:
#
#     bash benchmarks/gpu_all.sh            # writes benchmarks/results/gpu24_<gpu>_*.json (+ a copy under $OUT)
#
# 1. training at the shipped stage-2 shape (text 100 = 60 prompt + 40 target, 448 px): samples/s, tokens/s,
#    MFU of the published bf16 dense peak (measured matmul beside it), peak memory; batch 1 / 4 / 16,
#    gradient checkpointing on / off, EVA cached / live.
# 2. generation under the release protocol's cap (500 new tokens, greedy): the release's path (batch 1,
#    dynamic KV cache, LoRA unmerged) vs ours (PreallocatedCache + merged LoRA) at batch 1 / 16 / 64,
#    and HF's static cache (compiled on CUDA) at batch 1. clips/s ratio = samples_per_s(fast, 64) /
#    samples_per_s(dynamic, 1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export TOKENIZERS_PARALLELISM=false
slug=$($PY -c "import re, torch; print(re.sub(r'[^a-z0-9]+', '_', torch.cuda.get_device_name().lower()).strip('_'))")
res=benchmarks/results
$PY -c "import torch; print(torch.cuda.get_device_name(), torch.__version__)"

$PY benchmarks/bench_gpu.py --text-tokens 100 --batch-sizes 1 4 16 --steps 3 --warmup 1 --no-eval \
    --json "$res/gpu24_${slug}_train.json"
# 1b. the shipped stage-1/2 settings (train_configs/emotion_llama_base.yaml: batch 16, every_layer, token_budget
#     10240): a typical micro-batch (text 100, seq 361) and one at the token budget (text 379: 16 x 640 = 10240
#     positions), every checkpointing mode beside it; peak_memory_gib says which of them fit 24 GB.
$PY benchmarks/bench_gpu.py --text-tokens 100 379 --batch-sizes 16 --checkpointing on every_k mlp_only off \
    --steps 3 --warmup 1 --no-eval --json "$res/gpu24_${slug}_shipped.json"
$PY benchmarks/bench_gpu.py --no-train --text-tokens 100 --eva cached --batch-sizes 1 16 64 --gen-tokens 500 \
    --steps 2 --gen-modes dynamic fast --json "$res/gpu24_${slug}_generate.json"
$PY benchmarks/bench_gpu.py --no-train --text-tokens 100 --eva cached --batch-sizes 1 --gen-tokens 500 \
    --steps 2 --gen-modes static --json "$res/gpu24_${slug}_generate_static.json" || echo "static cache run failed (see above)"

$PY - "$res/gpu24_${slug}_generate.json" <<'PY'
import json, sys
rows = {(r["gen_mode"], r["batch_size"]): r for r in json.load(open(sys.argv[1]))["eval"] if r.get("status") == "ok"}
release = rows.get(("dynamic", 1))
for key, row in sorted(rows.items()):
    ratio = row["samples_per_s"] / release["samples_per_s"] if release else float("nan")
    print(f"{key[0]:>8} batch {key[1]:>3}: {row['samples_per_s']:.3f} clips/s, {ratio:.1f}x the release's loop, "
          f"peak {row['peak_memory_gib']:.1f} GiB")
PY
if [ -n "${OUT:-}" ]; then cp "$res"/gpu24_"${slug}"_*.json "$OUT"/; fi
