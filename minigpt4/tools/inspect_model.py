"""Print a model's parameter counts, token layout and dtype as JSON.

    python -m minigpt4.tools.inspect_model --cfg-path minigpt4/configs/models/emotion_llama.yaml --meta

With `--meta` the real-size model is built on the meta device: shapes only, no memory, no
weights read, so the 7B architecture can be checked on any laptop.
"""

from __future__ import annotations

import argparse
import json
import sys

from minigpt4.common.config import load_section
from minigpt4.common.errors import run_cli
from minigpt4.models.builder import build_model, count_parameters
from minigpt4.models.config import ModelConfig


def inspect(cfg: ModelConfig, meta: bool) -> dict:
    model = build_model(cfg, meta=meta)
    counts = count_parameters(model)
    return {
        "arch": cfg.arch,
        "meta": meta,
        "dtype": cfg.dtype,
        "parameters": counts,
        "trainable_percent_of_llm": round(100 * counts["lora"] / counts["llm_base"], 3),
        "token_layout": {
            "image_size": cfg.vision.image_size,
            "patch_tokens": cfg.num_patch_tokens,
            "feature_tokens": cfg.num_features,
            "cls_tokens": 1,
            "visual_tokens_per_clip": cfg.num_visual_tokens,
            "order": "patches at <VideoHere>; local, temporal, audio features then CLS at <FeatureHere>",
        },
    }


def inspect_command(argv: list[str] | None = None) -> dict:
    """Parse `argv`, print the report as JSON and return it."""
    parser = argparse.ArgumentParser(description="Parameter counts and token layout of a model config.")
    parser.add_argument("--cfg-path", required=True, help="a model YAML, or a train/eval YAML with a model: section")
    parser.add_argument("--meta", action="store_true", help="build on the meta device (no weights, no memory)")
    parser.add_argument("--options", nargs="*", default=[], help="overrides, e.g. lora.r=8")
    args = parser.parse_args(argv)
    cfg = load_model_config(args.cfg_path, args.options)
    report = inspect(cfg, args.meta)
    print(json.dumps(report, indent=2))
    return report


def load_model_config(path: str, overrides: list[str]) -> ModelConfig:
    """A model config from a model YAML or from the `model:` section of a train / eval YAML."""
    return load_section(ModelConfig, path, "model", [o.removeprefix("model.") for o in overrides])


def main(argv: list[str] | None = None) -> int:
    """The command (console script `emotion-llama-inspect`): a user error is one `error:` line, exit 2."""
    result = run_cli(lambda: inspect_command(argv))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
