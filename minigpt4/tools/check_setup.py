"""List every file, folder and package a config needs, present or missing, without building a model.

    python -m minigpt4.tools.check_setup --cfg-path train_configs/emotion_llama_stage1_coarse.yaml
    python -m minigpt4.tools.check_setup --cfg-path eval_configs/emotion_llama_mer2023.yaml [--dataset mer2023]
    python -m minigpt4.tools.check_setup --cfg-path eval_configs/infer_real.yaml --sha256

Train, eval and inference configs are told apart by their keys (the first schema that accepts the
file). Exit status 0 when everything is there, 2 when anything is missing or of the wrong shape
(or the config itself is wrong). The same check runs as ``--check`` on train.py, eval_emotion.py,
``python -m minigpt4.infer`` and app.py. Where each file comes from: docs/getting_started.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from minigpt4.common.config import ConfigError, load_section
from minigpt4.common.errors import run_cli
from minigpt4.features.config import FeatureConfig
from minigpt4.models.config import ModelConfig
from minigpt4.run_config import load_eval_config, load_train_config
from minigpt4.setup_check import Need, check_config, eval_needs, infer_needs, train_needs


def config_needs(path: str, overrides: Sequence[str] = (), dataset: Optional[str] = None) -> tuple[str, list[Need]]:
    """(the kind of config, what it needs); a file no schema accepts raises the train schema's error."""
    errors: dict[str, ConfigError] = {}
    for kind in ("train", "eval", "infer"):
        try:
            if kind == "train":
                cfg = load_train_config(path, overrides)
                if cfg.datasets or cfg.val_datasets:
                    return kind, train_needs(cfg)
            elif kind == "eval":
                cfg = load_eval_config(path, overrides)
                if dataset is not None and dataset not in cfg.datasets:
                    raise ConfigError(f"{path}: no dataset {dataset!r} under `datasets:`; configured: {', '.join(cfg.datasets)}")
                return kind, eval_needs(cfg, [dataset] if dataset else None)
            else:  # an inference config: only its model and features sections name files (this keeps torch unimported)
                section = {name: [o.split(".", 1)[1] for o in overrides if o.startswith(name + ".")] for name in ("model", "features")}
                model = load_section(ModelConfig, path, "model", section["model"])
                features = load_section(FeatureConfig, path, "features", section["features"])
                return kind, infer_needs(model, features)
        except ConfigError as err:
            errors[kind] = err
    raise errors.get("eval") or errors["train"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minigpt4.tools.check_setup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cfg-path", required=True, help="a train, eval or inference config")
    parser.add_argument("--dataset", help="eval configs: check only this `datasets:` entry")
    parser.add_argument("--options", nargs="*", default=[], help="config overrides, e.g. model.llm.path=/data/llama")
    parser.add_argument("--sha256", action="store_true", help="also print the sha256 of every file found (slow on large files)")
    args = parser.parse_args(argv)

    def body() -> int:
        kind, needs = config_needs(args.cfg_path, args.options, args.dataset)
        return check_config(needs, f"{args.cfg_path} ({kind} config)", args.sha256)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
