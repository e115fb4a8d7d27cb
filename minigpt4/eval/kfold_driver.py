"""Leak-free k-fold fine-tuning + evaluation: train.py then eval_emotion.py per fold.

    python -m minigpt4.eval.kfold_driver --train-cfg train_configs/<x>.yaml --eval-cfg eval_configs/emotion_llama_dfew.yaml \
        --dataset dfew --folds 5 [--out outputs/kfold/dfew] [--nproc-per-node 4] [--train-options k=v ...] [--eval-options k=v ...]

Fold k trains with ``fold=k`` set on every dataset of the train config (DFEW ``set_{fold}.csv``,
IEMOCAP: session k held out) and evaluates the eval config's `--dataset` with ``fold=k``. Every
fold starts from the train config's ``run.init_from`` (or, without one, the same seeded random
init): the folds go through `minigpt4.eval.kfold.cross_validate`, and the init file's sha256 is
checked before each fold, so no fold can start from another fold's result -- the chaining that
inflated the community IEMOCAP numbers.

Writes, under ``--out``: ``fold_<k>/train/`` (train.py run), ``fold_<k>/eval/<dataset>/[<variant>/]fold_<k>/``
(eval_emotion.py outputs; `EvalConfig.result_dir`), and the aggregate: ``predictions.jsonl`` (all folds, tagged),
``metrics.json`` / ``summary.md`` (per-fold table, mean and std) and ``kfold.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from minigpt4.common.io import file_sha256
from minigpt4.common.threads import configure_threads
from minigpt4.eval.kfold import Fold, cross_validate
from minigpt4.eval.report import markdown_summary, read_predictions, write_metrics_json, write_predictions
from minigpt4.eval.scoring import score_predictions, write_score_outputs
from minigpt4.run_config import load_eval_config, load_train_config

REPO = Path(__file__).resolve().parents[2]


def _sha256(path: str | None) -> str | None:
    if not path:
        return None
    return file_sha256(path)


def _launcher(nproc: int) -> list[str]:
    if nproc <= 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]


def _run(cmd: list[str], what: str) -> None:
    print(f"$ {shlex.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"error: {what} failed with exit code {proc.returncode} (command above); fix it and re-run")


def run_kfold(args: argparse.Namespace) -> dict[str, Any]:
    train_cfg = load_train_config(args.train_cfg, args.train_options)
    eval_cfg = load_eval_config(args.eval_cfg, args.eval_options)  # fail on a bad config before any training
    if args.dataset not in eval_cfg.datasets:
        raise SystemExit(f"error: {args.eval_cfg}: no dataset {args.dataset!r} under `datasets:`; configured: {', '.join(eval_cfg.datasets)}")
    out = Path(args.out)
    folds = [Fold(index=k, train=(), test=()) for k in range(1, args.folds + 1)]  # files define the splits
    init_from = train_cfg.run.init_from
    init_state = {"init_from": init_from, "sha256": _sha256(init_from)}
    fold_keys = [f"datasets.{k}.fold" for k in train_cfg.datasets] + [f"val_datasets.{k}.fold" for k in train_cfg.val_datasets]

    def train_fold(fold: Fold, state: dict) -> Path:
        if _sha256(state["init_from"]) != state["sha256"]:
            raise SystemExit(f"error: {state['init_from']} changed during cross-validation; every fold must start from the same weights")
        run_dir = out / f"fold_{fold.index}" / "train"
        options = [*args.train_options, f"run.output_dir={run_dir}", *(f"{key}={fold.index}" for key in fold_keys)]
        _run([*_launcher(args.nproc_per_node), str(REPO / "train.py"), "--cfg-path", args.train_cfg, "--options", *options],
             f"training fold {fold.index}")
        return run_dir / "best" / "trainable.safetensors"

    def fold_dir(k: int) -> Path:  # where eval_emotion.py writes fold k (its protocol / answer mode folder included)
        return dataclasses.replace(eval_cfg.run, output_dir=str(out / f"fold_{k}" / "eval")).result_dir(
            args.dataset, k, eval_cfg.datasets[args.dataset].drop_modalities)

    def eval_fold(fold: Fold, checkpoint: Path) -> dict[str, float]:
        eval_root = out / f"fold_{fold.index}" / "eval"
        options = [*args.eval_options, f"run.output_dir={eval_root}", f"datasets.{args.dataset}.fold={fold.index}"]
        _run([*_launcher(args.nproc_per_node), str(REPO / "eval_emotion.py"), "--cfg-path", args.eval_cfg,
              "--dataset", args.dataset, "--checkpoint", str(checkpoint), "--options", *options], f"evaluating fold {fold.index}")
        metrics = json.loads((fold_dir(fold.index) / "metrics.json").read_text())
        return metrics.get("folds", {}).get(str(fold.index), metrics["metrics"])

    result = cross_validate(folds, init_state, train_fold, eval_fold)

    records = [r for k in range(1, args.folds + 1)
               for r in read_predictions(fold_dir(k) / "predictions.jsonl")]
    first = json.loads((fold_dir(1) / "metrics.json").read_text())
    dcfg, benchmark = eval_cfg.datasets[args.dataset], first["dataset"]
    pooled = score_predictions(
        records, benchmark, labels=dcfg.label_set if benchmark in ("mer2023", "dfew", "iemocap") else None,
        judge_cfg=dataclasses.replace(eval_cfg.run.judge, cache_path=str(out / "emer_judge_cache.jsonl")),
        task=next(t for t in dcfg.tasks if t != "emotion") if benchmark == "emer" else "emotion",
    )
    write_predictions(records, out / "predictions.jsonl")
    pooled = {"source": str(out / "predictions.jsonl"), **pooled}
    write_score_outputs(pooled, out)
    summary = {
        "command": shlex.join([Path(sys.executable).name, "-m", "minigpt4.eval.kfold_driver", *sys.argv[1:]]),
        "benchmark": benchmark,
        "init_from": init_from,
        "init_sha256": init_state["sha256"],
        "folds": {str(f.index): m for f, m in zip(folds, result["folds"])},
        "mean": result["mean"],
    }
    write_metrics_json(summary, out / "kfold.json")  # NaN (e.g. an undefined std) -> null
    print(markdown_summary(pooled))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minigpt4.eval.kfold_driver", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-cfg", required=True, help="train_configs/<x>.yaml; its datasets get fold=k")
    p.add_argument("--eval-cfg", required=True, help="eval_configs/<x>.yaml")
    p.add_argument("--dataset", required=True, help="key under the eval config's `datasets:`")
    p.add_argument("--folds", type=int, default=5, help="folds 1..K (default 5)")
    p.add_argument("--out", default="outputs/kfold", help="output folder (default outputs/kfold)")
    p.add_argument("--nproc-per-node", type=int, default=1, help="processes per fold run (torchrun when > 1)")
    p.add_argument("--train-options", nargs="*", default=[], help="overrides for train.py, e.g. run.max_epochs=2")
    p.add_argument("--eval-options", nargs="*", default=[], help="overrides for eval_emotion.py")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    configure_threads()
    args = build_parser().parse_args(argv)
    if args.folds < 2:
        raise SystemExit(f"error: --folds must be >= 2, got {args.folds}")
    run_kfold(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
