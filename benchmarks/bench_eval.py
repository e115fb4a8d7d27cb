"""Evaluation throughput: our batched generation vs the release's one clip at a time, same protocol and cap.

    .venv/bin/python benchmarks/bench_eval.py                        # release protocol, 500-token cap, random weights
    .venv/bin/python benchmarks/bench_eval.py --protocol clean --max-new-tokens 16   # today's prompt and cap
    .venv/bin/python benchmarks/bench_eval.py --cfg-path eval_configs/demo_tiny.yaml --dataset synthetic \
        --checkpoint outputs/demo/stage2/best/trainable.safetensors  # after `make demo`

The released evaluation answered one clip per `generate` call with up to 500 new tokens. Every mode
here (MODES: the release's loop; batched with the dynamic KV cache; batched with the preallocated cache
and merged LoRA, evaluation's defaults) goes through `generate_records` (the code eval_emotion.py runs:
the protocol's dataset settings, prompt layout and token limit, `predict`) on the same model object and
the same items, one after another in this process; only `run:` settings differ. One untimed warm-up
call comes first. On a shared machine the result is "measured under load" (the JSON records the load). Speed does not depend on training, except that a trained model stops at
EOS early (random weights rarely do, so every answer runs to the cap; the JSON records the mean
answer length). Batched decoding runs each batch until its longest answer ends. Results:
benchmarks/results/eval_cpu.json (or --json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from minigpt4.cli.eval_emotion import build_eval_sets, generate_records  # noqa: E402
from minigpt4.data.prompts import PROTOCOLS, max_new_tokens_for  # noqa: E402
from minigpt4.models.builder import build_model  # noqa: E402
from minigpt4.run_config import EvalRunConfig, load_eval_config  # noqa: E402
from minigpt4.common.distributed import DistInfo  # noqa: E402


def make_synthetic_split(work: Path, clips: int, seed: int) -> list[str]:
    """Synthetic corpus + tiny encoders + features of its test split + tiny models; config overrides for them."""
    from minigpt4.tools.make_tiny_models import make_tiny_models

    py = sys.executable
    data, enc, tiny = work / "data", work / "encoders", work / "tiny"
    run = lambda *args: subprocess.run([py, "-m", *args], cwd=REPO, check=True, capture_output=True, text=True)  # noqa: E731
    run("minigpt4.data.synthetic", "--out", str(data), "--clips", str(clips), "--seed", str(seed))
    run("minigpt4.features", "tiny-encoders", "--out", str(enc))
    run("minigpt4.features", "extract", "--videos", str(data / "videos"), "--out", str(data),
        "--names-file", str(data / "test.txt"), "--cfg-path", "minigpt4/configs/features/tiny.yaml",
        "--options", f"audio_encoder={enc / 'hubert'}", f"local_encoder={enc / 'mae'}", f"temporal_encoder={enc / 'videomae'}")
    make_tiny_models(tiny, seed=0, with_encoders=False)
    return [
        f"model.llm.path={tiny / 'llm'}", f"model.vision.weights={tiny / 'eva_vit_tiny.pth'}", "model.checkpoint=null",
        f"datasets.synthetic.annotation={data / 'test.txt'}", f"datasets.synthetic.transcripts={data / 'transcripts.csv'}",
        f"datasets.synthetic.frames={data / 'frames'}",
    ]


# The modes compared, as `run:` settings: the release's loop (one clip per generate call, HF's dynamic
# KV cache, LoRA applied as separate matmuls), our batching alone, and our batching with the fast path.
MODES = {
    "release": dict(batch_size=1, kv_cache="dynamic", merge_lora=False),
    "batched_dynamic": dict(kv_cache="dynamic", merge_lora=False),
    "batched_fast": dict(kv_cache="preallocated", merge_lora=True),
}


def timed_records(model, cfg: EvalRunConfig, key: str, batch_size: int, **run: object) -> tuple[float, list[dict]]:
    """Seconds and records of eval_emotion's generation with `run.batch_size` = `batch_size` (and `run`)."""
    # generated answers only (the release's way): no label scoring on top
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, **{"batch_size": batch_size, **run},
                                                           answer_mode="generate"))
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    sets = build_eval_sets(cfg, key, [None], info)
    start = time.perf_counter()
    records = generate_records(model, cfg, sets, info)
    return time.perf_counter() - start, records


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg-path", help="an eval config (default: eval_configs/demo_tiny.yaml on a synthetic split made now)")
    p.add_argument("--dataset", default="synthetic", help="key under `datasets:`")
    p.add_argument("--checkpoint", help="trainable weights (default: the config's; random weights when no config)")
    p.add_argument("--items", type=int, default=64, help="clips to evaluate (the first N of the split)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--protocol", choices=PROTOCOLS, default="release",
                   help="prompt layout, frame and token limit of eval_emotion.py --protocol (default: the release's)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="cap for every task (default: the protocol's: 500 for release, the config's for clean)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--clips", type=int, default=440, help="synthetic corpus size (its test split is ~15%%)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                   help="what to time, in this order (default: all; ratios are to `release` when timed)")
    p.add_argument("--json", default=str(REPO / "benchmarks/results/eval_cpu.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        if args.cfg_path:
            cfg_path, overrides = args.cfg_path, []
        else:
            t0 = time.perf_counter()
            cfg_path, overrides = str(REPO / "eval_configs/demo_tiny.yaml"), make_synthetic_split(Path(tmp), args.clips, args.seed)
            print(f"synthetic split + tiny models made in {time.perf_counter() - t0:.1f}s")
        overrides += [f"datasets.{args.dataset}.limit={args.items}", f"datasets.{args.dataset}.tasks=[emotion]",
                      f"run.protocol={args.protocol}", "run.num_workers=0"]
        if args.checkpoint:
            overrides.append(f"model.checkpoint={args.checkpoint}")
        cfg: EvalRunConfig = load_eval_config(cfg_path, overrides)
        if args.max_new_tokens is not None:
            cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, max_new_tokens={"emotion": args.max_new_tokens}))
        cap = max_new_tokens_for(args.protocol, cfg.run.max_new_tokens)["emotion"]
        if args.max_new_tokens is not None and cap != args.max_new_tokens:
            p.error(f"--max-new-tokens {args.max_new_tokens}: the {args.protocol} protocol fixes the cap at {cap}")
        torch.manual_seed(args.seed)
        model = build_model(cfg.model).eval()
        warm = dataclasses.replace(cfg, datasets={args.dataset: dataclasses.replace(cfg.datasets[args.dataset], limit=1)})
        timed_records(model, warm, args.dataset, 1)  # warm-up, untimed
        timed = {}
        for mode in args.modes:  # one after another in this one process, same model and items
            settings = {"batch_size": args.batch_size, **MODES[mode]}
            timed[mode] = timed_records(model, cfg, args.dataset, **settings)
            print(f"{mode}: {timed[mode][0]:.1f} s", flush=True)
        n = len(next(iter(timed.values()))[1])

    base = "release" if "release" in timed else args.modes[0]
    base_s, base_records = timed[base]
    words = sum(len(r["answer"].split()) for r in base_records) / n
    print(f"protocol {args.protocol}, cap {cap} new tokens, measured under load (shared CPU)")
    print(f"\n{'mode':<16} {'batch':>5} {'kv cache':>12} {'merged':>6} {'items':>6} {'seconds':>9} {'items/s':>9} "
          f"{'ratio':>7} {'same answers':>12}")
    modes = {}
    for mode, (secs, records) in timed.items():
        settings = {"batch_size": args.batch_size, **MODES[mode]}
        same = sum(a["answer"] == b["answer"] for a, b in zip(records, base_records))
        modes[mode] = {**settings, "seconds": round(secs, 3), "items_per_s": round(n / secs, 3),
                       "ratio_to_" + base: round(base_s / secs, 2), "identical_answers": same}
        print(f"{mode:<16} {settings['batch_size']:>5} {settings['kv_cache']:>12} {str(settings['merge_lora']):>6} "
              f"{n:>6} {secs:>9.2f} {n / secs:>9.2f} {base_s / secs:>6.2f}x {same:>6}/{n}")
    print(f"mean answer length {words:.1f} words")
    result = {
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "config": cfg_path if args.cfg_path else "eval_configs/demo_tiny.yaml (synthetic split made on the fly)",
        "checkpoint": cfg.model.checkpoint or "none (random trainable weights)",
        "items": n,
        "protocol": args.protocol,
        "max_new_tokens": cap,
        "batch_size": args.batch_size,
        "modes": modes,
        "speedup": modes[args.modes[-1]]["ratio_to_" + base],
        "mean_answer_words": round(words, 2),
        "baseline": "the release's loop: one clip per generate call (run.batch_size=1, dynamic KV cache, LoRA "
                    "unmerged), same protocol, items and cap",
        "load": f"measured under load: {os.getloadavg()[0]:.1f} 1-min load average on {os.cpu_count()} CPUs",
        "torch_threads": args.threads,
        "device": "cpu",
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
