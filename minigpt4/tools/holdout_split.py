"""Hold out a stratified validation split from a release list file, for model selection.

    python -m minigpt4.tools.holdout_split --annotation MER2023/train.txt --fraction 0.1 \
        --train-out MER2023/train_minus_val.txt --val-out MER2023/val.txt

The release chose epochs on the test set; selecting on a held-out part of the training data
keeps the test score honest. Lines are copied verbatim (`name frame_count label [valence]`), the
split is stratified by label and fixed by `--seed`.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from pathlib import Path

from minigpt4.common.errors import UserError, run_cli


def holdout(lines: list[str], fraction: float, seed: int, source: str = "") -> tuple[list[str], list[str]]:
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--fraction must be between 0 and 1, got {fraction}")
    by_label: dict[str, list[str]] = defaultdict(list)
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 3:
            raise UserError(f"{source}:{number}: expected `name frame_count label [valence]`, got {line!r} (fix or delete the line)")
        by_label[fields[2]].append(line)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_label):
        group = sorted(by_label[label])
        rng.shuffle(group)
        n_val = max(1, round(fraction * len(group))) if len(group) > 1 else 0
        val += group[:n_val]
        train += group[n_val:]
    return sorted(train), sorted(val)


def split_command(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Stratified validation hold-out of a release list file.")
    parser.add_argument("--annotation", required=True)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-out", required=True)
    parser.add_argument("--val-out", required=True)
    args = parser.parse_args(argv)
    path = Path(args.annotation)
    if not path.is_file():
        raise UserError(f"--annotation {path}: file not found (give the release list file to split)")
    train, val = holdout(path.read_text().splitlines(), args.fraction, args.seed, str(path))
    for out, rows in ((args.train_out, train), (args.val_out, val)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("".join(r + "\n" for r in rows))
    print(f"{path}: {len(train)} train lines -> {args.train_out}, {len(val)} validation lines -> {args.val_out}")


def main(argv: list[str] | None = None) -> int:
    """The command (console script `emotion-llama-holdout`): a user error is one `error:` line, exit 2."""
    return run_cli(lambda: split_command(argv)) or 0


if __name__ == "__main__":
    sys.exit(main())
