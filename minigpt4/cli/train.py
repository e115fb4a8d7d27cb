"""Two-stage instruction tuning of Emotion-LLaMA (`python train.py`, `emotion-llama-train`).

    torchrun --nproc-per-node N train.py --cfg-path train_configs/<x>.yaml [--options key=value ...]
    python train.py --cfg-path ...            # one process, CPU or one GPU

The recipe itself (setup / step / end of epoch) is `minigpt4/training/recipe.py`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from minigpt4.common.distributed import init_distributed, shutdown
from minigpt4.common.errors import run_cli
from minigpt4.run_config import load_train_config
from minigpt4.training.recipe import train


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train Emotion-LLaMA (one stage).")
    parser.add_argument("--cfg-path", required=True, help="train_configs/<x>.yaml")
    parser.add_argument("--options", nargs="*", default=[], help="overrides, e.g. run.max_epochs=2 model.lora.r=8")
    parser.add_argument("--resume", nargs="?", const="auto", help="resume: newest valid checkpoint, or a folder")
    parser.add_argument("--start-fresh", action="store_true",
                        help="with --resume: train from step 0 when every checkpoint found is invalid (else it stops)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Load the config, join the process group (under torchrun) and train; the run's summary."""
    overrides = list(args.options) + ([f"run.resume={args.resume}"] if args.resume else [])
    overrides += ["run.start_fresh=true"] if args.start_fresh else []
    cfg = load_train_config(args.cfg_path, overrides)
    info = init_distributed(cfg.run.device)
    logging.basicConfig(
        level=logging.INFO if info.is_main else logging.WARNING,
        format=f"%(asctime)s [rank {info.rank}] %(name)s: %(message)s",
    )
    try:
        return train(cfg, info)
    finally:
        shutdown(info)


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when training finished, 2 on a user error (one `error:` line on stderr)."""
    args = parse_args(argv)
    summary = run_cli(lambda: run(args))
    return summary if isinstance(summary, int) else 0


if __name__ == "__main__":
    sys.exit(main())
