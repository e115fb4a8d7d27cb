"""Where a training step's time goes: loading, collate, EVA (live vs cached), forward, backward, optimizer.

    .venv/bin/python benchmarks/bench_train_step.py                     # tiny model, 24 synthetic clips, CPU
    .venv/bin/python benchmarks/bench_train_step.py --clips 6 --steps 2 --batch-size 2   # smoke test size

What it builds (in a temporary folder, or --work-dir to keep and reuse it): the tiny random
models (`minigpt4.tools.make_tiny_models`), a synthetic MERR-format corpus
(`minigpt4.data.synthetic`), its features and cached EVA tokens (`minigpt4.features.extract`,
tiny encoders) -- then the *real* `EmotionDataset` + `EmotionCollator` + `torch.utils.data.DataLoader`
over it, exactly as train.py builds them.

What it measures, for EVA tokens computed live from the frame and read from the cache:

* stage breakdown of one step on batches already in memory: load (dataset[i] for the batch's
  samples), collate, EVA encode (live only), projections + merge, LLM forward, backward,
  optimizer (clip + AdamW step + zero_grad);
* data-loader throughput alone (samples/s, `--workers` worker processes);
* the end-to-end step rate with the loader feeding the model (samples/s) next to the compute-only
  step rate: when end-to-end is much slower than compute-only, loading is the bottleneck.

Results go to benchmarks/results/train_step_cpu.json (or --json).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, Stopwatch, command_line, format_table, machine_info, synchronize, write_json  # noqa: E402
from minigpt4.common.config import load_config  # noqa: E402
from minigpt4.data.collator import EmotionCollator  # noqa: E402
from minigpt4.data.config import DatasetConfig  # noqa: E402
from minigpt4.data.datasets import build_dataset  # noqa: E402
from minigpt4.models.builder import DTYPES, build_model, count_parameters  # noqa: E402
from minigpt4.models.config import ModelConfig  # noqa: E402
from minigpt4.processors import EvaImageTransform  # noqa: E402
from minigpt4.run_config import OptimConfig  # noqa: E402
from minigpt4.training.optim import build_optimizer  # noqa: E402

TINY_MODEL_YAML = REPO / "minigpt4/configs/models/emotion_llama_tiny.yaml"
TINY_FEATURES_YAML = REPO / "minigpt4/configs/features/tiny.yaml"
STAGES = ("load", "collate", "forward", "backward", "optimizer")
INSIDE_FORWARD = ("eva_encode", "llm_decoder")  # parts of `forward`, timed by module hooks, not added again


# ----------------------------------------------------------------------------------------- setup
def prepare_workspace(work: Path, clips: int, llm_hidden: int, llm_layers: int) -> dict[str, Path]:
    """Tiny models, a synthetic corpus and its features under `work`; reused when already there."""
    from minigpt4.data.synthetic import generate_corpus
    from minigpt4.features.config import FeatureConfig
    from minigpt4.features.encoders import make_tiny_encoders
    from minigpt4.features.extract import extract_features, find_videos
    from minigpt4.tools.make_tiny_models import TINY_VISION, make_tiny_eva, make_tiny_llm

    paths = {
        "llm": work / f"models/llm_h{llm_hidden}_l{llm_layers}",
        "eva": work / "models/eva_vit_tiny.pth",
        "encoders": work / "models/encoders",
        "data": work / f"data_{clips}",
        "features": work / f"features_{clips}",
    }
    if not (paths["llm"] / "config.json").is_file():
        make_tiny_llm(paths["llm"], hidden=llm_hidden, layers=llm_layers, heads=max(1, llm_hidden // 16))
    if not paths["eva"].is_file():
        make_tiny_eva(paths["eva"])
    if not (paths["encoders"] / "hubert" / "config.json").is_file():
        make_tiny_encoders(paths["encoders"])
    if not (paths["data"] / "train.txt").is_file():
        generate_corpus(paths["data"], clips=clips, seed=0)
    if not (paths["features"] / "eva_cache").is_dir():
        vision_yaml = work / "models/eva_vision_tiny.yaml"
        fields = {**vars(TINY_VISION), "weights": str(paths["eva"])}
        vision_yaml.write_text("".join(f"{k}: {v}\n" for k, v in fields.items() if v is not None))
        cfg = load_config(FeatureConfig, TINY_FEATURES_YAML, [
            f"audio_encoder={paths['encoders'] / 'hubert'}", f"local_encoder={paths['encoders'] / 'mae'}",
            f"temporal_encoder={paths['encoders'] / 'videomae'}", "eva_cache=true", f"eva_vision={vision_yaml}"])
        videos, problems = find_videos(paths["data"] / "videos")
        report = extract_features(videos, paths["features"], cfg, progress=False, problems=problems)
        if report.failed:
            raise RuntimeError(f"feature extraction failed for {len(report.failed)} clips: {report.failed}")
    return paths


def dataset_config(paths: dict[str, Path], cached_eva: bool) -> DatasetConfig:
    """Stage-1 style training set (emotion + reason) over the synthetic corpus."""
    return DatasetConfig(
        reader="merr",
        annotation=str(paths["data"] / "train.txt"),
        captions=str(paths["data"] / "MERR_coarse_grained.json"),
        transcripts=str(paths["data"] / "transcripts.csv"),
        frames=str(paths["features"] / "frames"),
        feature_root=str(paths["features"]),
        eva_cache=str(paths["features"] / "eva_cache") if cached_eva else None,
        label_set="mer2023",
        tasks=["emotion", "reason"],
    )


# ----------------------------------------------------------------------------------------- measure
@contextlib.contextmanager
def timed_parts(watch: Stopwatch, model):
    """Inside the caller's timed `model(batch)`: time the EVA encoder (`model.encode_image`, wrapped on
    the instance for the block) and the LLM decoder (forward hooks) into `watch`."""
    causal_lm = model.llama_model.get_base_model() if hasattr(model.llama_model, "get_base_model") else model.llama_model
    decoder, encode_image = causal_lm.get_decoder(), model.encode_image
    starts = {}

    def pre(_module, _args):
        synchronize(watch.device)
        starts["llm_decoder"] = time.perf_counter()

    def post(_module, _args, _output):
        synchronize(watch.device)
        watch.add("llm_decoder", time.perf_counter() - starts.pop("llm_decoder"))

    def timed_encode_image(images):
        with watch("eva_encode"):
            return encode_image(images)

    handles = [decoder.register_forward_pre_hook(pre), decoder.register_forward_hook(post)]
    model.encode_image = timed_encode_image
    try:
        yield
    finally:
        del model.encode_image  # the class's method again
        for handle in handles:
            handle.remove()


def train_step(model, batch: dict, optimizer, watch: Stopwatch, live_eva: bool, amp_dtype: torch.dtype) -> float:
    """One optimizer step as train.py runs it: `model(batch).loss` (EVA when live, projections, merge,
    decoder, LM head at target positions only), backward, clip + AdamW. Inside the forward, the EVA
    encoder and the LLM decoder are timed by hooks (`live_eva` only says which batch this is)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    with torch.autocast(watch.device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32), \
            timed_parts(watch, model), watch("forward"):
        loss = model(batch).loss
    with watch("backward"):
        loss.backward()
    with watch("optimizer"):
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss.item()


def loader_throughput(loader, batches: int) -> dict[str, float]:
    """Samples/s of the DataLoader alone (after its first batch, which pays for worker start-up)."""
    it = iter(loader)
    start = time.perf_counter()
    next(it)
    first = time.perf_counter() - start
    samples, start = 0, time.perf_counter()
    for batch in itertools.islice(it, batches):
        samples += len(batch["names"])
    seconds = time.perf_counter() - start
    return {"first_batch_s": first, "samples": samples, "seconds": seconds, "samples_per_s": samples / seconds}


def run_mode(model, dataset, collator, args, device: torch.device, live_eva: bool) -> dict:
    """Breakdown, loader throughput and step rates for one EVA mode."""
    amp_dtype = DTYPES[model.cfg.dtype] if device.type == "cuda" else torch.float32
    optimizer = build_optimizer(model, OptimConfig())
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(dataset), generator=generator).tolist()
    needed = (args.warmup + args.steps) * args.batch_size
    order = (order * math.ceil(needed / len(order)))[:needed]
    batches_idx = [order[i:i + args.batch_size] for i in range(0, needed, args.batch_size)]

    # 1) Stage breakdown on batches loaded in this process (load and collate timed too).
    watch = Stopwatch(device)
    batches = []
    for idx in batches_idx:
        with watch("load"):
            samples = [dataset[i] for i in idx]
        with watch("collate"):
            batches.append(collator.to_device(collator(samples), device))
    losses = []
    for step, batch in enumerate(batches):
        if step == args.warmup:  # keep load/collate (all batches), restart the compute stages
            watch.seconds = {k: v for k, v in watch.seconds.items() if k in ("load", "collate")}
            watch.counts = {k: v for k, v in watch.counts.items() if k in ("load", "collate")}
        losses.append(train_step(model, batch, optimizer, watch, live_eva, amp_dtype))
    seq_len = sum(b["input_ids"].shape[1] for b in batches) / len(batches)
    stages = {s: watch.mean(s) for s in STAGES + INSIDE_FORWARD if s in watch.counts}
    compute = sum(v for k, v in stages.items() if k in ("forward", "backward", "optimizer"))

    # 2) The DataLoader alone, then feeding the model.
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, collate_fn=collator, num_workers=args.workers,
        generator=torch.Generator().manual_seed(1), persistent_workers=False,
    )
    loading = loader_throughput(loader, args.steps)
    it = _cycle(loader)
    for _ in range(args.warmup):
        train_step(model, collator.to_device(next(it), device), optimizer, Stopwatch(device), live_eva, amp_dtype)
    samples, start = 0, time.perf_counter()
    for _ in range(args.steps):
        batch = collator.to_device(next(it), device)
        samples += len(batch["names"])
        train_step(model, batch, optimizer, Stopwatch(device), live_eva, amp_dtype)
    end_to_end = samples / (time.perf_counter() - start)
    compute_rate = args.batch_size / compute
    return {
        "eva": "live" if live_eva else "cached",
        "mean_sequence_length": seq_len,
        "seconds_per_step": stages,
        "compute_seconds_per_step": compute,
        "loader": loading,
        "samples_per_s": {
            "loader": loading["samples_per_s"],
            "compute_only": compute_rate,
            "end_to_end": end_to_end,
            "loader_in_main_process": args.batch_size / (stages["load"] + stages["collate"]),
        },
        "loader_is_bottleneck": loading["samples_per_s"] < compute_rate,
        "final_loss": losses[-1],
    }


def _cycle(loader):
    """Endless batches from `loader`, re-iterating it (a new epoch) when it runs out."""
    while True:
        yield from loader


# ----------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24, help="synthetic clips (about 70%% go to the train split)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="measured steps per mode")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps first")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (train.py: run.num_workers)")
    parser.add_argument("--llm-hidden", type=int, default=64, help="tiny LLM width (the tests' model: 64)")
    parser.add_argument("--llm-layers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave the default)")
    parser.add_argument("--options", nargs="*", default=[], help="model config overrides, e.g. lora.r=64")
    parser.add_argument("--work-dir", help="keep models / corpus / features here and reuse them (default: a temp dir)")
    parser.add_argument("--json", default="benchmarks/results/train_step_cpu.json")
    args = parser.parse_args(argv)
    for name in ("clips", "batch_size", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="bench_train_step_") as tmp:
        work = Path(args.work_dir or tmp)
        t0 = time.perf_counter()
        paths = prepare_workspace(work, args.clips, args.llm_hidden, args.llm_layers)
        setup_s = time.perf_counter() - t0
        model_cfg = load_config(ModelConfig, TINY_MODEL_YAML, [
            f"llm.path={paths['llm']}", f"vision.weights={paths['eva']}", *args.options])
        torch.manual_seed(0)
        model = build_model(model_cfg).to(device).train()
        collator = EmotionCollator(model.tokenizer, model_cfg.num_patch_tokens, train=True,
                                   max_txt_len=model_cfg.max_txt_len)
        transform = EvaImageTransform(model_cfg.vision.image_size)
        modes = []
        for live in (True, False):
            dataset = build_dataset(dataset_config(paths, cached_eva=not live), transform, train=True, seed=0)
            modes.append(run_mode(model, dataset, collator, args, device, live_eva=live))

    result = {
        "benchmark": "train_step",
        "command": command_line(),
        "machine": machine_info(device),
        "settings": {
            "device": str(device), "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
            "workers": args.workers, "clips": args.clips, "train_samples": len(dataset),
            "data": "synthetic MERR-format corpus (minigpt4.data.synthetic) + extracted tiny features, "
                    "read by the real EmotionDataset through a torch DataLoader",
            "model": {"config": str(TINY_MODEL_YAML.relative_to(REPO)), "options": args.options,
                      "llm_hidden": args.llm_hidden, "llm_layers": args.llm_layers,
                      "parameters": count_parameters(model)},
            "setup_seconds": round(setup_s, 2),
        },
        "modes": modes,
        "notes": [
            "seconds_per_step are means over the measured steps; load = dataset[i] for the batch's samples "
            "in the main process, collate = EmotionCollator on them",
            "samples_per_s.loader = the DataLoader alone with --workers workers; compute_only = batch_size / "
            "sum of the compute stages; end_to_end = the DataLoader feeding train steps",
            "in the cached mode the dataset still decodes and transforms the frame, which the model then ignores",
        ],
    }
    print_report(result)
    out = write_json(args.json, result)
    print(f"wrote {out}")
    return result


def print_report(result: dict) -> None:
    rows = []
    for stage in STAGES[:3] + INSIDE_FORWARD + STAGES[3:]:
        row = {"stage": f"  of which {stage}" if stage in INSIDE_FORWARD else stage}
        for mode in result["modes"]:
            value = mode["seconds_per_step"].get(stage)
            row[mode["eva"]] = None if value is None else 1000 * value
        rows.append(row)
    names = [m["eva"] for m in result["modes"]]
    s = result["settings"]
    seq = result["modes"][0]["mean_sequence_length"]
    print(f"train step, batch {s['batch_size']}, mean sequence {seq:.0f} tokens, {s['device']} "
          f"({result['machine']['cpu']}, torch {result['machine']['torch']})")
    print(format_table(rows, ["stage", *names], ["stage (ms/step)", *(f"EVA {n}" for n in names)]))
    print()
    rate_rows = [{"rate": key, **{m["eva"]: m["samples_per_s"][key] for m in result["modes"]}}
                 for key in ("loader", "loader_in_main_process", "compute_only", "end_to_end")]
    print(format_table(rate_rows, ["rate", *names], ["samples/s", *(f"EVA {n}" for n in names)]))
    for mode in result["modes"]:
        verdict = "the loader is the bottleneck" if mode["loader_is_bottleneck"] else "compute is the bottleneck"
        print(f"EVA {mode['eva']}: {verdict} (loader {mode['samples_per_s']['loader']:.1f} vs compute "
              f"{mode['samples_per_s']['compute_only']:.1f} samples/s)")


if __name__ == "__main__":
    main()
