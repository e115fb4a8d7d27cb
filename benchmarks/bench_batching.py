"""Padding waste of fixed vs length-grouped micro-batches, and the memory of the shipped configs' batches.

    .venv/bin/python benchmarks/bench_batching.py                 # CPU, ~1 minute, nothing downloaded

1. Synthetic corpus: a MERR-format corpus (`minigpt4.data.synthetic`, stage-1 tasks emotion + reason)
   read by the real `EmotionDataset`; item lengths measured by `training.batching.LengthTable`
   (the collator on each item's text, 448 px layout: 256 patch + 3 feature + 1 CLS slots) with the
   tiny test tokenizer (no Llama tokenizer is stored here: it splits words into more pieces).
2. A MERR-like length distribution, MODELED (no MERR text is stored here either): per item 1 BOS +
   260 visual slots + 22 template tokens + the instruction (emotion 35 tokens, reason 15-30) + a
   transcript (lognormal words, median 18, sigma 0.7, cap 200) + the target (emotion 2-4 tokens;
   stage-1 coarse captions median 35 words, sigma 0.4; stage-2 fine reasons median 45 words, sigma
   0.45; cap 200 words) + the end token, 1.3 tokens per word; half emotion, half reason items. It
   matches the ~350-token stage-2 sample with a ~40-token answer used elsewhere in benchmarks/.

For each: the fraction of a micro-batch's positions that is padding at batch 16, fixed micro-batches
(`EpochSampler`'s order) vs `LengthGroupedBatchSampler` (group_size 64; and with the shipped
token_budget), the exact samplers train.py uses.

3. The shipped configs (train_configs/*.yaml): the computed memory of their largest possible
   micro-batch (`bench_gpu.estimate_memory`: real-size parameter counts from the meta device, the
   config's activation checkpointing), i.e. token_budget positions, or batch_size rows of the
   longest possible sample (transcript and target at their 200-word caps, 1.5 tokens per word),
   whether it fits a 24 GB card, and the largest token budget that would.

Results: benchmarks/results/batching.json (or --json).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_gpu import FIT_LIMIT_GIB, FlopModel, checkpoint_mode, estimate_memory  # noqa: E402
from benchmarks.common import command_line, format_table, machine_info, write_json  # noqa: E402
from minigpt4.common.config import load_config  # noqa: E402
from minigpt4.common.distributed import DistInfo  # noqa: E402
from minigpt4.data.collator import EmotionCollator  # noqa: E402
from minigpt4.data.config import DatasetConfig  # noqa: E402
from minigpt4.data.datasets import build_dataset  # noqa: E402
from minigpt4.data.synthetic import generate_corpus  # noqa: E402
from minigpt4.models.builder import build_model, count_parameters  # noqa: E402
from minigpt4.models.config import ModelConfig  # noqa: E402
from minigpt4.run_config import load_train_config  # noqa: E402
from minigpt4.tools.make_tiny_models import make_tiny_models, train_tiny_tokenizer  # noqa: E402
from minigpt4.training.batching import LengthTable, padding_counts  # noqa: E402
from minigpt4.training.sampling import EpochSampler, LengthGroupedBatchSampler  # noqa: E402
from minigpt4.training.step import forward_backward  # noqa: E402

VISUAL_SLOTS = 260  # 256 patch + 3 feature + 1 CLS at 448 px
TEMPLATE_TOKENS = 22
TOKENS_PER_WORD = 1.3
WORST_TOKENS_PER_WORD = 1.5  # the memory bound's
TINY_MODEL_YAML = Path(__file__).resolve().parents[1] / "minigpt4/configs/models/emotion_llama_tiny.yaml"
SHIPPED = ("emotion_llama_stage1_coarse", "emotion_llama_stage2_fine", "emotion_llama_mer2023")


# ----------------------------------------------------------------------------------------- padding
def padding_of(batches: list[list[int]], lengths: list[int]) -> dict[str, float]:
    """Padding fraction of right-padded micro-batches, and their sizes in positions."""
    positions = [len(b) * max(lengths[i] for i in b) for b in batches]
    real = sum(lengths[i] for b in batches for i in b)
    return {"padding": 1 - real / sum(positions), "mean_positions": sum(positions) / len(positions),
            "max_positions": max(positions), "mean_rows": sum(map(len, batches)) / len(batches)}


def compare(lengths: list[int], batch_size: int, batches: int, token_budget: int | None, seed: int = 0) -> list[dict]:
    """fixed vs length_grouped (and with the token budget) over one epoch of `batches` micro-batches."""
    n = len(lengths)
    stream = EpochSampler(n, batches * batch_size, seed=seed, epoch=0).global_stream().tolist()
    rows = [{"batching": "fixed", **padding_of([stream[i:i + batch_size] for i in range(0, len(stream), batch_size)],
                                               lengths)}]
    for budget in (None, token_budget) if token_budget else (None,):
        sampler = LengthGroupedBatchSampler(n, batches, batch_size, lambda idx: [lengths[i] for i in idx], seed=seed,
                                            epoch=0, group_size=64, token_budget=budget)
        name = "length_grouped" + (f", token_budget {budget}" if budget else "")
        rows.append({"batching": name, **padding_of(list(sampler), lengths)})
    return rows


def synthetic_set(clips: int, work: Path):
    """A synthetic stage-1 training set (emotion + reason) under `work`, and its item lengths with the
    448 px layout, and the seconds LengthTable took for them."""
    data = generate_corpus(work / "corpus", clips=clips, seed=0, size=16, seconds=0.25, fps=4)
    cfg = DatasetConfig(reader="merr", annotation=str(data / "train.txt"),
                        captions=str(data / "MERR_coarse_grained.json"), transcripts=str(data / "transcripts.csv"),
                        videos=str(data / "videos"), feature_dirs={"local": "", "temporal": "", "audio": ""},
                        label_set="mer2023", tasks=["emotion", "reason"])
    dataset = build_dataset(cfg, train=True, seed=0)
    tokenizer = train_tiny_tokenizer()
    collator = EmotionCollator(tokenizer, 256, train=True)
    start = time.perf_counter()
    lengths = LengthTable(dataset, collator)(list(range(len(dataset))))
    return dataset, lengths, time.perf_counter() - start


def tiny_epochs(dataset, batch_size: int, batches: int, work: Path) -> list[dict]:
    """One epoch of `batches` micro-batches through the tiny model (forward + backward, CPU), fixed vs
    length-grouped: the same samples (no token budget), so the epoch's loss must agree."""
    make_tiny_models(work, seed=0, with_encoders=False)
    cfg = load_config(ModelConfig, TINY_MODEL_YAML, [f"llm.path={work / 'llm'}", f"vision.weights={work / 'eva_vit_tiny.pth'}"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    collator = EmotionCollator(model.tokenizer, cfg.num_patch_tokens, train=True, max_txt_len=cfg.max_txt_len)
    lengths = LengthTable(dataset, collator)
    g = torch.Generator().manual_seed(0)
    image, features = torch.randn(3, cfg.vision.image_size, cfg.vision.image_size, generator=g), torch.randn(3, 32, generator=g)

    def sample(index: int) -> dict:  # the item's text, random media (the tiny corpus has no features)
        text = dataset.text_sample(index)
        return {**text, "image": image, "features": features, "feature_present": torch.ones(3, dtype=torch.bool)}

    n = len(dataset)
    stream = EpochSampler(n, batches * batch_size, seed=0, epoch=0).global_stream().tolist()
    plans = {"fixed": [stream[i:i + batch_size] for i in range(0, len(stream), batch_size)],
             "length_grouped": list(LengthGroupedBatchSampler(n, batches, batch_size, lengths, seed=0, epoch=0,
                                                              group_size=64))}
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    rows = []
    for name, plan in plans.items():
        micro = [collator([sample(i) for i in b]) for b in plan]
        forward_backward(model, micro[:1], info, reduction="token")  # warm-up
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss_sum, count = forward_backward(model, micro, info, reduction="token")
        seconds = time.perf_counter() - start
        model.zero_grad(set_to_none=True)
        real, positions = padding_counts(micro)
        rows.append({"batching": name, "micro_batches": len(micro), "padding": 1 - real / positions,
                     "positions": positions, "seconds": seconds, "real_tokens_per_s": real / seconds,
                     "epoch_loss": float(loss_sum / count)})
    return rows


def modeled_lengths(n: int, stage: str, seed: int = 0) -> list[int]:
    """A MERR-like length distribution (see the module docstring); items alternate emotion / reason."""
    g = torch.Generator().manual_seed(seed)
    median, sigma = {"stage1": (35, 0.4), "stage2": (45, 0.45)}[stage]

    def words(med: float, sig: float) -> int:
        return min(200, int(math.exp(math.log(med) + sig * float(torch.randn((), generator=g)))))

    out = []
    for i in range(n):
        transcript = round(TOKENS_PER_WORD * words(18, 0.7))
        if i % 2 == 0:
            text = 35 + int(torch.randint(2, 5, (), generator=g))
        else:
            text = int(torch.randint(15, 31, (), generator=g)) + round(TOKENS_PER_WORD * words(median, sigma))
        out.append(1 + VISUAL_SLOTS + TEMPLATE_TOKENS + transcript + text + 1)
    return out


# ----------------------------------------------------------------------------------------- memory
def worst_case_gib(params, flops, intermediate: int, cfg, positions: int, rows_max: int, sample_max: int,
                   target_max: int) -> float:
    """Estimated peak GiB of the largest micro-batch: `positions` tokens in 1..rows_max rows, the target
    tokens as many as those rows can hold (each row also holds BOS + the visual slots)."""
    mode = cfg.model.activation_checkpointing
    worst = 0.0
    for rows in range(1, rows_max + 1):
        if rows * (1 + VISUAL_SLOTS) > positions:
            break
        targets = min(rows * target_max, positions - rows * (1 + VISUAL_SLOTS + TEMPLATE_TOKENS))
        worst = max(worst, estimate_memory(params, flops, intermediate, 1, min(positions, rows * sample_max), mode,
                                           cfg.model.llm.load_in_4bit, targets=max(targets, 1),
                                           k=cfg.model.activation_checkpointing_k)["total"])
    return worst


def shipped_rows() -> list[dict]:
    rows = []
    for name in SHIPPED:
        cfg = load_train_config(f"train_configs/{name}.yaml", ["model.vision.weights=null", "model.llm.path=null",
                                                              "model.checkpoint=null"])
        model = build_model(cfg.model, meta=True)
        params, flops = count_parameters(model), FlopModel.of(model)
        intermediate = model.llama_model.config.intermediate_size
        target_max = min(cfg.model.max_txt_len, math.ceil(200 * WORST_TOKENS_PER_WORD)) + 1
        sample_max = 1 + VISUAL_SLOTS + TEMPLATE_TOKENS + 40 + math.ceil(200 * WORST_TOKENS_PER_WORD) + target_max
        run = cfg.run
        positions = run.token_budget or run.batch_size * sample_max
        gib = worst_case_gib(params, flops, intermediate, cfg, positions, run.batch_size, sample_max, target_max)
        by_mode = {}
        for mode in ("none", "every_layer", "every_k", "mlp_only"):  # the same micro-batch under each mode
            other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, activation_checkpointing=mode,
                                                                       gradient_checkpointing=False))
            by_mode[mode] = worst_case_gib(params, flops, intermediate, other, positions, run.batch_size, sample_max,
                                           target_max)
        largest = 0
        for budget in range(256, 64 * 1024, 256):  # the largest budget (multiple of 256) that fits
            if worst_case_gib(params, flops, intermediate, cfg, budget, run.batch_size, sample_max,
                              target_max) >= FIT_LIMIT_GIB:
                break
            largest = budget
        rows.append({"config": name, "batch_size": run.batch_size, "batching": run.batching,
                     "token_budget": run.token_budget, "activation_checkpointing": checkpoint_mode(
                         cfg.model.activation_checkpointing), "longest_sample": sample_max,
                     "worst_micro_batch_positions": positions, "estimated_gib": gib,
                     "fits_24gb": gib < FIT_LIMIT_GIB, "largest_fitting_token_budget": largest,
                     "estimated_gib_by_mode": by_mode})
    return rows


# ----------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=400, help="synthetic clips (about 70%% train)")
    parser.add_argument("--items", type=int, default=8974, help="modeled items (MERR fine: 4,487 clips x 2 tasks)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=500, help="micro-batches per epoch compared")
    parser.add_argument("--tiny-batches", type=int, default=16, help="micro-batches of the tiny-model epoch")
    parser.add_argument("--json", default="benchmarks/results/batching.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    shipped = shipped_rows()
    budget = next((r["token_budget"] for r in shipped if r["token_budget"]), None)
    with tempfile.TemporaryDirectory(prefix="bench_batching_") as tmp:
        dataset, lengths, table_s = synthetic_set(args.clips, Path(tmp))
        tiny = tiny_epochs(dataset, args.batch_size, args.tiny_batches, Path(tmp) / "tiny")
    distributions = {"synthetic corpus (tiny tokenizer)": lengths,
                     "modeled MERR stage 1": modeled_lengths(args.items, "stage1"),
                     "modeled MERR stage 2": modeled_lengths(args.items, "stage2")}
    padding = []
    for name, values in distributions.items():
        for row in compare(values, args.batch_size, args.batches, budget):
            padding.append({"lengths": name, "items": len(values), "mean_length": sum(values) / len(values),
                            "max_length": max(values), **row})
    result = {
        "benchmark": "batching", "command": command_line(), "machine": machine_info(),
        "settings": {"batch_size": args.batch_size, "group_size": 64, "batches": args.batches, "clips": args.clips,
                     "items": args.items, "fit_limit_gib": FIT_LIMIT_GIB},
        "length_table_seconds": {"items": len(lengths), "seconds": table_s,
                                 "items_per_s": len(lengths) / table_s},
        "padding": padding,
        "tiny_model_epoch": tiny,
        "shipped_configs": shipped,
        "notes": ["padding = pad positions / all positions of the epoch's micro-batches (right padding)",
                  "the modeled distribution is an assumption (module docstring), not MERR's text",
                  "estimated_gib is computed by bench_gpu.estimate_memory, not measured; the bf16 estimate was "
                  "within -1% to +10% of H100 measurements (benchmarks/README.md)"],
    }
    print(f"padding at batch {args.batch_size} (group_size 64), over {args.batches} micro-batches")
    print(format_table(padding, ["lengths", "mean_length", "max_length", "batching", "padding", "mean_rows",
                                 "mean_positions", "max_positions"]))
    print(f"\ntiny model, {args.tiny_batches} micro-batches of {args.batch_size} (forward + backward, CPU), the same samples")
    print(format_table(tiny, ["batching", "padding", "positions", "seconds", "real_tokens_per_s", "epoch_loss"]))
    print(f"\nLengthTable: {len(lengths)} items in {table_s:.2f} s ({len(lengths) / table_s:.0f} items/s)")
    print("\nshipped configs, largest possible micro-batch (COMPUTED, NOT MEASURED)")
    print(format_table(shipped, ["config", "batch_size", "token_budget", "activation_checkpointing",
                                 "longest_sample", "worst_micro_batch_positions", "estimated_gib", "fits_24gb",
                                 "largest_fitting_token_budget"]))
    for row in shipped:
        modes = ", ".join(f"{mode} {gib:.1f}" for mode, gib in row["estimated_gib_by_mode"].items())
        print(f"{row['config']}: the same micro-batch by checkpointing mode (GiB): {modes}")
    print(f"wrote {write_json(args.json, result)}")
    return result


if __name__ == "__main__":
    main()
