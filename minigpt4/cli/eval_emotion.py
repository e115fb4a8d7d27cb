"""Evaluate Emotion-LLaMA on one benchmark: generate answers, then score them.

    torchrun --nproc-per-node N eval_emotion.py --cfg-path eval_configs/emotion_llama_mer2023.yaml --dataset mer2023
    python eval_emotion.py --cfg-path eval_configs/demo_tiny.yaml --dataset synthetic            # one process, CPU ok
    python eval_emotion.py --cfg-path eval_configs/emotion_llama_dfew.yaml --dataset dfew --all-folds
    python eval_emotion.py --cfg-path ... --dataset dfew --options datasets.dfew.fold=3 run.batch_size=16
    python eval_emotion.py --score outputs/eval/mer2023/predictions.jsonl --dataset mer2023      # no model

The model is built once; every process generates for its share of the items (batched greedy
decoding, left padding, `run.max_new_tokens` per task) and rank 0 writes, under
``<run.output_dir>/<dataset>/`` for the clean protocol and generated answers, or a folder named
after what changes the numbers (``.../release/``, ``.../score_labels/``, ``.../release_score_labels/``:
`EvalConfig.result_dir`), so one evaluation never overwrites another; ``.../fold_<k>/`` when one
fold is chosen. metrics.json records the protocol, answer mode, parse, checkpoint, config and
the inputs removed from every clip (``datasets.<key>.drop_modalities``, which also name the folder:
``.../without_audio/``).

`--without audio,text` (or `--without each`) evaluates the same model, built once, again with each
listed input (image, local, temporal, audio, text) removed from every clip, after the evaluation with
all inputs: one result folder per input, ``.../without_<input>/``, and a table of the weighted F1
(or the benchmark's first metric) with and without each input. This asks how much the trained
model leans on an input; what an input is worth to training is the demo's `--ablations`.

    predictions.jsonl   one record per item (schema: minigpt4/eval/report.py)
    metrics.json        every metric of the benchmark (minigpt4/eval/scoring.py)
    summary.md          the same as a table (also printed); with `run.answer_mode: both`, the
                        metrics of `generate` and `score_labels` side by side
    confusion.png       classification benchmarks
    config.yaml         the fully resolved config of the run

Which scorer a `datasets:` entry uses (first match wins): ``--benchmark``; the key itself when it
is a benchmark name (mer2023, dfew, iemocap, mer2024_ov, emer); otherwise the entry's reader
(dfew, iemocap, emer, mer2023 map to themselves; merr -- the synthetic corpus -- to mer2023).
The decision is printed and stored in metrics.json, so a run never scores silently by guess.

MER-UniBench (AffectGPT's nine sets, scored as their owners score them; docs/metrics.md):

    python eval_emotion.py --cfg-path eval_configs/unibench.yaml --benchmark mer-unibench
    python eval_emotion.py --cfg-path eval_configs/unibench.yaml --benchmark mer-unibench --score outputs/eval   # no model

asks every `datasets:` entry with ``reader: unibench`` (``tasks: [unibench]``, the owners'
zero-shot question), extracts labels with `run.unibench.extraction` and writes per set
``<key>/{predictions.jsonl, openset.csv, sentiment.csv, gold.csv, metrics.json}`` and, for the
run, ``unibench.md`` / ``unibench.json`` (the paper's table; sets not configured are listed as
skipped). ``--score`` re-scores the predictions of an earlier run in that folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from minigpt4.common.config import to_yaml
from minigpt4.common.distributed import DistInfo, barrier, init_distributed, shutdown
from minigpt4.common.errors import UserError, report, run_cli
from minigpt4.common.io import atomic_write
from minigpt4.common.threads import configure_threads
from minigpt4.data.config import DatasetConfig
from minigpt4.data.datasets import MODALITIES, build_dataset, describe
from minigpt4.data.labels import label_set
from minigpt4.data.prompts import PromptTemplate
from minigpt4.data.unibench import UNIBENCH_SETS
from minigpt4.eval.emotion_wheel import load_emotion_wheels
from minigpt4.eval.generation import autocast, check_answer_mode, predict, scored_view
from minigpt4.eval.label_extraction import make_extractor
from minigpt4.eval.report import markdown_summary, read_predictions, write_predictions
from minigpt4.eval.scoring import DATASETS as BENCHMARKS
from minigpt4.eval.scoring import answer_mode_table, score_main, score_predictions, write_score_outputs
from minigpt4.eval.unibench_run import score_unibench_set, write_unibench_table
from minigpt4.models.builder import build_model
from minigpt4.processors import EvaImageTransform
from minigpt4.run_config import EvalRunConfig, load_eval_config
from minigpt4.setup_check import check_config, eval_needs

log = logging.getLogger("eval_emotion")

# Readers whose format says which benchmark they are. `merr` is the instruction-tuning format
# (and the synthetic corpus): a closed-set classification, scored like MER2023.
READER_BENCHMARK = {"mer2023": "mer2023", "dfew": "dfew", "iemocap": "iemocap", "emer": "emer", "merr": "mer2023"}
CLASSIFICATION = ("mer2023", "dfew", "iemocap")
DEFAULT_FOLDS = (1, 2, 3, 4, 5)  # DFEW sets 1..5; IEMOCAP sessions 1..5


class EvalError(UserError):
    """A command line or config that cannot run; the message names the fix."""


def resolve_benchmark(key: str, dataset: DatasetConfig, explicit: str | None = None) -> tuple[str, str]:
    """(scorer name, why) for the `datasets:` entry `key` -- see the module docstring."""
    if explicit:
        name = explicit.lower().replace("-", "_")
        if name not in BENCHMARKS:
            raise EvalError(f"--benchmark {explicit!r} is not a scorer; use one of {', '.join(BENCHMARKS)}")
        return name, "--benchmark"
    name = key.lower().replace("-", "_")
    if name in BENCHMARKS:
        return name, "the dataset key"
    if dataset.reader in READER_BENCHMARK:
        return READER_BENCHMARK[dataset.reader], f"reader {dataset.reader!r}"
    raise EvalError(
        f"cannot tell which benchmark scores dataset {key!r} (reader {dataset.reader!r}); name the entry after "
        f"one of {', '.join(BENCHMARKS)} or pass --benchmark"
    )


def scored_task(benchmark: str, dataset: DatasetConfig) -> str:
    """The task whose answers the benchmark scores: the explanation task for EMER, else ``emotion``."""
    if benchmark == "emer":
        reasoning = [t for t in dataset.tasks if t != "emotion"]
        if not reasoning:
            raise EvalError("EMER scores explanations: give the dataset `tasks: [reason]` (or reason_v2)")
        return reasoning[0]
    if "emotion" not in dataset.tasks:
        raise EvalError(f"{benchmark} scores emotion answers: the dataset's `tasks` {dataset.tasks} must include emotion")
    return "emotion"


def output_dir(cfg: EvalRunConfig, key: str, folds: Sequence[int | None]) -> Path:
    """`EvalConfig.result_dir` of the run: one folder per protocol / answer mode / removed inputs, and
    per fold when one is chosen."""
    return cfg.run.result_dir(key, folds[0] if len(folds) == 1 else None, cfg.datasets[key].drop_modalities)


def without_inputs(spec: str | None, dataset: DatasetConfig) -> list[str]:
    """`--without`: 'each' or a comma list of inputs -> the inputs to remove one at a time (in
    MODALITIES order); not those the dataset already goes without."""
    if not spec:
        return []
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names == ["each"]:
        names = list(MODALITIES)
    unknown = [n for n in names if n not in MODALITIES]
    if unknown:
        raise EvalError(f"--without {spec!r}: unknown input(s) {unknown}; choices: each, {', '.join(MODALITIES)}")
    return [m for m in MODALITIES if m in names and m not in dataset.drop_modalities]


def with_dropped(cfg: EvalRunConfig, key: str, name: str) -> EvalRunConfig:
    """The same run with input `name` removed from every clip of `datasets.<key>`."""
    dcfg = cfg.datasets[key]
    dropped = dataclasses.replace(dcfg, drop_modalities=[*dcfg.drop_modalities, name])
    return dataclasses.replace(cfg, datasets={**cfg.datasets, key: dropped})


def run_labels(cfg: EvalRunConfig, key: str, cfg_path: str | None) -> dict[str, Any]:
    """What produced an evaluation's numbers, stored in metrics.json and shown in summaries and model cards."""
    return {"config_key": key, "config": cfg_path, "checkpoint": cfg.model.checkpoint,
            "protocol": cfg.run.protocol, "answer_mode": cfg.run.answer_mode,
            "dropped_inputs": list(cfg.datasets[key].drop_modalities)}


def build_eval_sets(cfg: EvalRunConfig, key: str, folds: Sequence[int | None], info: DistInfo,
                    template: PromptTemplate | None = None) -> list:
    """(fold, dataset) pairs, built before the model so that a data error shows in seconds."""
    template = template or PromptTemplate.resolve(cfg.run.protocol, cfg.model.prompt_format)
    sets = []
    for fold in folds:
        dcfg = dataclasses.replace(cfg.datasets[key], fold=fold) if fold is not None else cfg.datasets[key]
        # the protocol's instruction pools and frame (the first one under release)
        dcfg = dataclasses.replace(dcfg, protocol=template.protocol, frame_choice=template.frame_choice(dcfg.frame_choice))
        dataset = build_dataset(dcfg, EvaImageTransform(cfg.model.vision.image_size), train=False, seed=cfg.run.seed,
                                feature_layout=cfg.model.feature_layout, vision=cfg.model.vision)
        log.info("%s%s%s: %s", key, f" fold {fold}" if fold is not None else "",
                 f" without {', '.join(dcfg.drop_modalities)}" if dcfg.drop_modalities else "", describe(dataset))
        sets.append((fold, dataset))
    return sets


def generate_records(model, cfg: EvalRunConfig, sets: list, info: DistInfo,
                     template: PromptTemplate | None = None) -> list[dict]:
    """Prediction records of every fold (each tagged with its ``fold`` when there is one), under
    the one autocast rule (model.dtype on a GPU when run.amp)."""
    template = template or PromptTemplate.resolve(cfg.run.protocol, cfg.model.prompt_format, model.tokenizer)
    records: list[dict] = []
    for fold, dataset in sets:
        with torch.inference_mode(), autocast(cfg.model.dtype, info.device, cfg.run.amp):
            part = predict(
                model, dataset, batch_size=cfg.run.batch_size, max_new_tokens=cfg.run.max_new_tokens, info=info,
                num_workers=cfg.run.num_workers, template=template, answer_mode=cfg.run.answer_mode,
                generation=cfg.run.kwargs(cfg.run.sample), merge_lora=cfg.run.merge_lora,
            )
        if fold is not None:
            for record in part:
                record["fold"] = fold
        records.extend(part)
    return records


def evaluate(cfg: EvalRunConfig, key: str, benchmark: str, folds: Sequence[int | None], info: DistInfo,
             cfg_path: str | None = None, without: Sequence[str] = ()) -> dict[str, Any] | None:
    """Build the model once, generate for every fold (then again without each input of `without`),
    and (rank 0) write and return the scores; those without an input under ``result["without"]``."""
    if cfg.model.checkpoint is None:
        log.warning("model.checkpoint is not set: evaluating UNTRAINED projections / LoRA (pass --checkpoint)")
    layout = PromptTemplate.resolve(cfg.run.protocol, cfg.model.prompt_format)  # no tokens yet: the data's decisions
    runs = [cfg] + [with_dropped(cfg, key, name) for name in without]
    sets = [build_eval_sets(run, key, folds, info, layout) for run in runs]  # every data error before the model
    torch.manual_seed(cfg.run.seed)  # identical random init on every rank when there is no checkpoint
    model = build_model(cfg.model).to(info.device)
    template = layout.with_tokenizer(model.tokenizer)
    results = []
    for run, run_sets in zip(runs, sets):
        records = generate_records(model, run, run_sets, info, template)
        if info.is_main:
            results.append(write_result(run, key, benchmark, folds, records, cfg_path))
    if not info.is_main:
        return None
    result = results[0]
    if without:
        result["without"] = {name: r["metrics"] for name, r in zip(without, results[1:])}
    return result


def write_result(cfg: EvalRunConfig, key: str, benchmark: str, folds: Sequence[int | None], records: list[dict],
                 cfg_path: str | None) -> dict[str, Any]:
    """Score `records` and write predictions, metrics, summary and config to the run's result folder."""
    out = output_dir(cfg, key, folds)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "config.yaml", to_yaml(cfg))
    pred_path = write_predictions(records, out / "predictions.jsonl")
    dcfg = cfg.datasets[key]
    judge = dataclasses.replace(cfg.run.judge, cache_path=cfg.run.judge.cache_path or str(out / "emer_judge_cache.jsonl"))
    result = score_predictions(
        records, benchmark, labels=dcfg.label_set if benchmark in CLASSIFICATION else None,
        judge_cfg=judge if benchmark == "emer" else None, task=scored_task(benchmark, dcfg),
    )
    result = {"source": str(pred_path), **run_labels(cfg, key, cfg_path), "resolved_config": str(out / "config.yaml"),
              **result}
    if cfg.run.answer_mode == "both":
        scored = score_predictions(scored_view(records), benchmark, labels=dcfg.label_set, task="emotion")
        result["by_answer_mode"] = {"generate": result["metrics"], "score_labels": scored["metrics"]}
    write_score_outputs(result, out)
    return result


UNIBENCH = "mer-unibench"


def unibench_keys(cfg: EvalRunConfig) -> dict[str, str]:
    """MER-UniBench set -> its `datasets:` key, for every entry with ``reader: unibench``."""
    keys: dict[str, str] = {}
    for key, dcfg in cfg.datasets.items():
        if dcfg.reader != "unibench":
            continue
        if dcfg.unibench_set in keys:
            raise EvalError(f"datasets {keys[dcfg.unibench_set]!r} and {key!r} are both MER-UniBench set {dcfg.unibench_set!r}")
        if dcfg.tasks != ["unibench"]:
            raise EvalError(f"dataset {key!r}: a MER-UniBench set is asked the owners' question: set `tasks: [unibench]`")
        keys[dcfg.unibench_set] = key
    if not keys:
        raise EvalError("no MER-UniBench set configured: add `datasets:` entries with `reader: unibench`, "
                        f"`unibench_set:` (one of {', '.join(UNIBENCH_SETS)}) and `tasks: [unibench]`")
    return keys


def evaluate_unibench(cfg: EvalRunConfig, info: DistInfo, scores_from: str | None = None) -> dict[str, Any] | None:
    """Answer every configured set with one model (or read an earlier run's answers from
    `scores_from`), then (rank 0) extract, score and write the table; returns the table."""
    keys = unibench_keys(cfg)
    ucfg = cfg.run.unibench
    out_root = Path(scores_from) if scores_from else Path(cfg.run.output_dir) / cfg.run.variant  # release: its own folder
    extraction = {"cache_path": str(out_root / "unibench_extraction_cache.jsonl"), **ucfg.extraction}
    needs_wheels = extraction.get("kind") == "offline_lexicon" or any(UNIBENCH_SETS[s].kind != "sentiment" for s in keys)
    if needs_wheels and not ucfg.wheels:
        raise EvalError("MER-UniBench maps labels through the emotion wheels: set run.unibench.wheels to a copy of "
                        "AffectGPT's emotion_wheel/ folder")
    wheels = load_emotion_wheels(ucfg.wheels) if needs_wheels else None
    extractor = make_extractor(extraction, wheels)  # a bad extraction config fails before any generation
    answers: dict[str, list[dict]] = {}
    if scores_from:
        for set_name, key in keys.items():
            path = out_root / key / "predictions.jsonl"
            answers[set_name] = [r for r in read_predictions(path) if r.get("task") == "unibench"]
    else:
        if cfg.model.checkpoint is None:
            log.warning("model.checkpoint is not set: evaluating UNTRAINED projections / LoRA (pass --checkpoint)")
        layout = PromptTemplate.resolve(cfg.run.protocol, cfg.model.prompt_format)
        sets = {set_name: build_eval_sets(cfg, key, [None], info, layout) for set_name, key in keys.items()}
        torch.manual_seed(cfg.run.seed)
        model = build_model(cfg.model).to(info.device)
        template = layout.with_tokenizer(model.tokenizer)
        for set_name, key in keys.items():
            answers[set_name] = generate_records(model, cfg, sets[set_name], info, template)
            if info.is_main:
                (out_root / key).mkdir(parents=True, exist_ok=True)
                write_predictions(answers[set_name], out_root / key / "predictions.jsonl")
    if not info.is_main:
        return None
    concurrency = int(extraction.get("concurrency", 4))
    results = {set_name: (score_unibench_set(set_name, answers[set_name], extractor, wheels, out_root / keys[set_name],
                                             concurrency) if set_name in keys else None)
               for set_name in UNIBENCH_SETS}
    (out_root / "config.yaml").write_text(to_yaml(cfg))
    return write_unibench_table(results, out_root, cfg.model.checkpoint)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Evaluate Emotion-LLaMA on a benchmark (or, with --score, re-score a predictions file).",
        epilog="Extra arguments in --score mode (--labels, --task, --judge, ...) go to minigpt4.eval.scoring.",
    )
    p.add_argument("--cfg-path", help="eval_configs/<x>.yaml (required unless --score)")
    p.add_argument("--dataset", help="a key under `datasets:` in the config; with --score, a benchmark name "
                   "(not with --benchmark mer-unibench, which runs every configured MER-UniBench set)")
    p.add_argument("--options", nargs="*", default=[], help="config overrides, e.g. run.batch_size=16 datasets.dfew.fold=2")
    p.add_argument("--checkpoint", help="trainable weights to evaluate (sets model.checkpoint)")
    p.add_argument("--benchmark", help=f"scorer to use ({', '.join(BENCHMARKS)}, or {UNIBENCH}: every configured "
                   "MER-UniBench set and the table); default: see the module docstring")
    p.add_argument("--all-folds", action="store_true", help="evaluate every fold (DFEW sets / IEMOCAP sessions) and average")
    p.add_argument("--folds", default=",".join(map(str, DEFAULT_FOLDS)), help="folds for --all-folds (default 1,2,3,4,5)")
    p.add_argument("--protocol", help="clean (default) or release: the released evaluation's prompt, first frame and "
                   "500-token limit, to compare with published numbers (sets run.protocol; docs/release_protocol.md)")
    p.add_argument("--score", metavar="PREDICTIONS.jsonl", help="score an existing predictions file; no model is loaded "
                   f"(--benchmark {UNIBENCH}: the output folder of an earlier run)")
    p.add_argument("--out", help="--score mode: output folder (default <stem>_scores next to the file)")
    p.add_argument("--without", metavar="INPUTS", help="then evaluate the same model again with each of these inputs "
                   f"removed from every clip: 'each' or a comma list of {', '.join(MODALITIES)} (one folder each, "
                   "<result dir>/without_<input>/)")
    p.add_argument("--check", action="store_true", help="list every file, folder and package the config needs (present or missing) and exit: 0 all there, 2 not; no model is built")
    return p


def without_table(result: dict[str, Any]) -> str:
    """Markdown: the headline metric with all inputs and without each one (`--without`)."""
    metric = "weighted_f1" if "weighted_f1" in result["metrics"] else next(iter(result["metrics"]))
    rows = [("all inputs", result["metrics"])] + [(f"without {name}", m) for name, m in result["without"].items()]
    lines = [f"| evaluated | {metric} |", "|---|---|"] + [f"| {name} | {m[metric]:.4f} |" for name, m in rows]
    root = Path(result["source"]).parent
    return "\n".join(lines) + f"\n(each in {root}/without_<input>/)\n"


def _score_only(args: argparse.Namespace, extra: list[str]) -> int:
    """`--score`: the scoring CLI; a config (if given) turns a dataset key into its benchmark and label set."""
    dataset, labels = args.dataset, []
    if args.cfg_path:
        cfg = load_eval_config(args.cfg_path, args.options)
        if args.dataset in cfg.datasets:
            dcfg = cfg.datasets[args.dataset]
            dataset = resolve_benchmark(args.dataset, dcfg, args.benchmark)[0]
            labels = ["--labels", dcfg.label_set] if dataset in CLASSIFICATION and "--labels" not in extra else []
    elif args.benchmark:
        dataset = args.benchmark
    argv = ["--score", args.score, "--dataset", dataset] + (["--out", args.out] if args.out else []) + labels + extra
    return score_main(argv, prog="eval_emotion.py --score")


def _unibench_main(args: argparse.Namespace, extra: list[str]) -> int:
    """`--benchmark mer-unibench`: every configured set, one table (module docstring)."""
    try:
        if extra or args.dataset or args.all_folds:
            raise EvalError(f"--benchmark {UNIBENCH} runs every configured MER-UniBench set: drop --dataset / "
                            f"--all-folds{' / ' + ' '.join(extra) if extra else ''}")
        if not args.cfg_path:
            raise EvalError(f"--benchmark {UNIBENCH} needs --cfg-path (its datasets and run.unibench settings)")
        overrides = list(args.options) + ([f"model.checkpoint={args.checkpoint}"] if args.checkpoint else [])
        overrides += [f"run.protocol={args.protocol}"] if args.protocol else []
        cfg = load_eval_config(args.cfg_path, overrides)
        unibench_keys(cfg)
        if args.score is None and cfg.model.checkpoint and not Path(cfg.model.checkpoint).is_file():
            raise EvalError(f"model.checkpoint {cfg.model.checkpoint} does not exist (pass --checkpoint with the trained weights)")
    except UserError as err:
        return report(err)
    info = init_distributed("cpu" if args.score else cfg.run.device)
    logging.basicConfig(level=logging.INFO if info.is_main else logging.WARNING,
                        format=f"%(asctime)s [rank {info.rank}] %(name)s: %(message)s")
    try:
        table = run_cli(lambda: evaluate_unibench(cfg, info, args.score))
        if isinstance(table, int):
            return table
        barrier(info)
    finally:
        shutdown(info)
    if table is not None:
        out = Path(args.score or cfg.run.output_dir)
        print((out / "unibench.md").read_text(encoding="utf-8"))
        print(f"wrote {out}/unibench.md, {out}/unibench.json and <set>/metrics.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.benchmark == UNIBENCH:
        return _unibench_main(args, extra)
    if not args.dataset:
        parser.error("--dataset is required (or --benchmark mer-unibench)")
    if args.score:
        return run_cli(lambda: _score_only(args, extra))
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not args.cfg_path:
        parser.error("--cfg-path is required (or --score PREDICTIONS.jsonl to score without a model)")
    overrides = list(args.options) + ([f"model.checkpoint={args.checkpoint}"] if args.checkpoint else [])
    overrides += [f"run.protocol={args.protocol}"] if args.protocol else []
    try:
        cfg = load_eval_config(args.cfg_path, overrides)
        if args.check:
            if args.dataset not in cfg.datasets:
                raise EvalError(f"{args.cfg_path}: no dataset {args.dataset!r} under `datasets:`; configured: {', '.join(cfg.datasets)}")
            return check_config(eval_needs(cfg, [args.dataset]), f"{args.cfg_path} (eval config, dataset {args.dataset})")
        PromptTemplate.resolve(cfg.run.protocol, cfg.model.prompt_format)  # a bad protocol / format fails here, in seconds
        if args.dataset not in cfg.datasets:
            known = ", ".join(cfg.datasets) or "(none)"
            raise EvalError(
                f"{args.cfg_path}: no dataset {args.dataset!r} under `datasets:`; configured: {known} "
                "(pick one of those or add an entry to the config)"
            )
        dcfg = cfg.datasets[args.dataset]
        benchmark, why = resolve_benchmark(args.dataset, dcfg, args.benchmark)
        scored_task(benchmark, dcfg)
        if cfg.run.answer_mode != "generate" and benchmark not in CLASSIFICATION:
            raise EvalError(f"run.answer_mode {cfg.run.answer_mode} scores a closed label set; {benchmark} needs "
                            "answer_mode: generate")
        check_answer_mode(cfg.run.answer_mode, label_set(dcfg.label_set))
        if cfg.model.checkpoint and not Path(cfg.model.checkpoint).is_file():
            raise EvalError(f"model.checkpoint {cfg.model.checkpoint} does not exist (pass --checkpoint with the "
                            "trained weights, e.g. <train output_dir>/best/trainable.safetensors)")
        if args.all_folds:
            try:
                folds: list[int | None] = [int(f) for f in args.folds.split(",") if f.strip()]
            except ValueError:
                raise EvalError(f"--folds {args.folds!r} must be comma-separated integers, e.g. 1,2,3,4,5") from None
            uses_fold = dcfg.reader == "iemocap" or any("{fold}" in (p or "") for p in (dcfg.annotation, dcfg.shards))
            if not uses_fold:
                raise EvalError(f"--all-folds: dataset {args.dataset!r} has no folds (its annotation path has no {{fold}})")
        else:
            folds = [dcfg.fold]
        without = without_inputs(args.without, dcfg)
    except UserError as err:
        return report(err)

    info = init_distributed(cfg.run.device)
    logging.basicConfig(level=logging.INFO if info.is_main else logging.WARNING,
                        format=f"%(asctime)s [rank {info.rank}] %(name)s: %(message)s")
    threads = configure_threads(cfg.run.num_workers, cfg.run.num_threads)
    cfg.run.num_workers = threads.workers
    log.info("dataset %s scored as %s (from %s)%s, protocol %s", args.dataset, benchmark, why,
             f", folds {folds}" if folds != [None] else "", cfg.run.protocol)
    try:
        result = run_cli(lambda: evaluate(cfg, args.dataset, benchmark, folds, info, args.cfg_path, without))
        if isinstance(result, int):  # a user error, already reported
            return result
        barrier(info)
    finally:
        shutdown(info)
    if result is not None:
        print(markdown_summary(result))
        if "by_answer_mode" in result:
            print(answer_mode_table(result["by_answer_mode"]))
        print(f"wrote {Path(result['source']).parent}/{{predictions.jsonl, metrics.json, summary.md"
              f"{', confusion.png' if 'confusion' in result else ''}}}")
        if "without" in result:
            print(without_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
