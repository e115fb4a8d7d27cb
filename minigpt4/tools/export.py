"""Export trained weights in standard formats: a PEFT adapter, the projections, the config, a model card.

    python -m minigpt4.tools.export --checkpoint outputs/demo/stage2/best/trainable.safetensors \\
        --cfg-path eval_configs/demo_tiny.yaml --out exports/demo_tiny [--metrics outputs/demo/eval/metrics.json] [--merge]

Writes into `--out`:

    adapter_config.json, adapter_model.safetensors   the LoRA adapter, as `peft` saves it: loads with
                                                     `PeftModel.from_pretrained(base_llm, OUT)`
    projections.safetensors   llama_proj, cls_tk_llama_proj, feats_llama_proj{1,2,3} (our names)
    model_config.yaml         the resolved model config, with `checkpoint: OUT`
    README.md                 model card: base LLM, LoRA settings, parameter counts, the metrics
    merged/                   with --merge: the LLM with the LoRA update merged into its weights
                              (`merge_and_unload`), its tokenizer, projections.safetensors and
                              model_config.yaml (`lora.r: 0`), for serving without peft

`model.checkpoint: OUT` loads the folder back (projections + adapter); `model.checkpoint:
OUT/merged` with `model.llm.path: OUT/merged` and `model.lora.r: 0` loads the merged one.
Without --merge the base LLM is never loaded (the model is built on the meta device), so
exporting a 7B adapter takes seconds and no memory. `--metrics` defaults to the
`metrics.json` beside the checkpoint (train.py writes one into `best/`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from minigpt4.common.config import ConfigError, to_yaml
from minigpt4.common.io import file_sha256
from minigpt4.common.threads import configure_threads
from minigpt4.models.builder import build_model, count_parameters
from minigpt4.models.checkpoint import (
    LLM_PREFIX,
    PROJECTIONS,
    CheckpointError,
    match_trainable,
    read_trainable,
    write_safetensors,
)
from minigpt4.models.config import ModelConfig
from minigpt4.tools.inspect_model import load_model_config


def export(cfg: ModelConfig, checkpoint: str | Path, out: str | Path, *, metrics: Optional[str | Path] = None,
           merge: bool = False) -> dict[str, Any]:
    """Write the folder described in the module doc; returns a summary (what the command prints)."""
    out = Path(out)
    state = read_trainable(checkpoint)
    model = build_model(dataclasses.replace(cfg, checkpoint=None), meta=True)
    match_trainable(model.trainable_state_dict(), state, str(checkpoint))  # names, shapes, finite values
    model.load_state_dict(state, strict=False, assign=True)  # real tensors where the file has them

    out.mkdir(parents=True, exist_ok=True)
    projections = {k: v.contiguous() for k, v in state.items() if not k.startswith(LLM_PREFIX)}
    write_safetensors(projections, out / PROJECTIONS)
    if cfg.lora.r:
        model.llama_model.peft_config["default"].base_model_name_or_path = cfg.llm.path
        model.llama_model.save_pretrained(out)  # adapter_config.json + adapter_model.safetensors
    (out / "model_config.yaml").write_text(to_yaml(dataclasses.replace(cfg, checkpoint=str(out))))

    metrics_path = Path(metrics) if metrics else Path(checkpoint).parent / "metrics.json"
    if metrics and not metrics_path.is_file():
        raise FileNotFoundError(f"--metrics {metrics_path} does not exist; pass the metrics.json of an evaluation")
    metrics_data = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    counts = count_parameters(model)
    (out / "README.md").write_text(model_card(cfg, Path(checkpoint), counts, metrics_data, metrics_path, merge))

    summary = {"out": str(out), "projections": len(projections), "adapter_tensors": len(state) - len(projections),
               "metrics": str(metrics_path) if metrics_data is not None else None, "merged": None}
    if merge:
        summary["merged"] = str(write_merged(cfg, Path(checkpoint), out / "merged", projections))
    return summary


def write_merged(cfg: ModelConfig, checkpoint: Path, out: Path, projections: dict[str, torch.Tensor]) -> Path:
    """The LLM with LoRA merged in (real weights: loads the base LLM), plus what the rest of the model needs."""
    if not cfg.lora.r:
        raise ValueError("--merge needs a LoRA adapter to merge, but model.lora.r is 0")
    if cfg.llm.load_in_4bit:
        raise ValueError("--merge needs the full-precision base: set model.llm.load_in_4bit=false for the export")
    model = build_model(dataclasses.replace(cfg, checkpoint=str(checkpoint)))
    merged = model.llama_model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    write_safetensors(projections, out / PROJECTIONS)
    served = dataclasses.replace(cfg, checkpoint=str(out), llm=dataclasses.replace(cfg.llm, path=str(out)),
                                 lora=dataclasses.replace(cfg.lora, r=0))
    (out / "model_config.yaml").write_text(to_yaml(served))
    return out


def model_card(cfg: ModelConfig, checkpoint: Path, counts: dict[str, int], metrics: Optional[dict],
               metrics_path: Path, merged: bool) -> str:
    """README.md of the export: what it is, how to load it, what it scored."""
    base = cfg.llm.path or "(architecture only: model.llm.architecture)"
    lines = [
        "---", "library_name: peft", f"base_model: {base}", "tags: [emotion-recognition, multimodal, lora]", "---", "",
        "# Emotion-LLaMA weights (exported)", "",
        f"Exported from `{checkpoint}` (sha256 `{file_sha256(checkpoint)[:16]}...`).", "",
        "Frozen encoders (EVA ViT-g on a frame; MAE, VideoMAE, HuBERT utterance features) -> linear projections "
        "-> visual tokens merged into the prompt of a LoRA-tuned causal LM.", "",
        "| part | value |", "|---|---|",
        f"| base LLM | `{base}` |",
        f"| prompt format | `{cfg.prompt_format}` |",
        f"| LoRA | r={cfg.lora.r}, alpha={cfg.lora.alpha}, dropout={cfg.lora.dropout}, "
        f"targets {', '.join(cfg.lora.target_modules)} |",
        f"| LoRA parameters | {counts['lora']:,} |",
        f"| projection parameters | {counts['trainable'] - counts['lora']:,} |",
        f"| visual tokens per clip | {cfg.num_visual_tokens} ({cfg.vision.image_size} px) |",
        f"| frame encoder | {cfg.vision.arch} |",
        f"| feature encoders (tokens x width) | {cfg.feature_layout.describe()} |", "",
        "## Files", "",
        "- `adapter_config.json`, `adapter_model.safetensors`: the LoRA adapter (PEFT format)",
        "- `projections.safetensors`: `llama_proj`, `cls_tk_llama_proj`, `feats_llama_proj{1,2,3}`",
        "- `model_config.yaml`: the resolved model config",
    ]
    if merged:
        lines.append("- `merged/`: the LLM with the adapter merged in, its tokenizer, the projections and its config")
    lines += [
        "", "## Load", "", "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f"llm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({base!r}), 'THIS_FOLDER')",
        "```", "",
        "The whole model (encoders, projections and LLM), with the Emotion-LLaMA code: `model.checkpoint: "
        "THIS_FOLDER` in any config, or the exported model section itself "
        "(`model: {includes: [THIS_FOLDER/model_config.yaml]}`), e.g.", "",
        "```bash",
        "python -m minigpt4.infer --cfg-path eval_configs/infer_real.yaml --video clip.mp4 --options model.checkpoint=THIS_FOLDER",
        "```", "",
        "## Metrics", "",
    ]
    lines += metrics_table(metrics, metrics_path) if metrics is not None else ["No metrics.json was given."]
    return "\n".join(lines) + "\n"


# What produced the numbers (eval_emotion.py writes them into metrics.json): the same weights score
# differently under the release protocol, the release parse or another answer mode.
RUN_LABELS = (("protocol", "protocol"), ("answer parse", "parse"), ("answer mode", "answer_mode"),
              ("checkpoint", "checkpoint"), ("config", "config"), ("dataset entry", "config_key"))


def metrics_table(metrics: dict, source: Path) -> list[str]:
    """A markdown table of an evaluation's `metrics.json` (its `metrics` entry) or of train.py's `best/metrics.json`."""
    scores = metrics.get("metrics") if isinstance(metrics.get("metrics"), dict) else metrics
    lines = [f"From `{source}`" + (f" (dataset: {metrics['dataset']})" if metrics.get("dataset") else "") + ".", ""]
    lines += [f"- {what}: {metrics.get(key) if metrics.get(key) is not None else 'not recorded'}"
              for what, key in RUN_LABELS] + [""]
    lines += ["| metric | value |", "|---|---|"]
    for key, value in scores.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        lines.append(f"| {key} | {value if isinstance(value, int) else f'{value:.4f}'} |")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    configure_threads()
    parser = argparse.ArgumentParser(prog="python -m minigpt4.tools.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="trained weights: trainable.safetensors, a release .pth, "
                                                            "or a checkpoint folder")
    parser.add_argument("--cfg-path", required=True, help="the model YAML, or the train / eval YAML, it was trained with")
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--metrics", help="metrics.json for the model card (default: the one beside --checkpoint)")
    parser.add_argument("--merge", action="store_true", help="also write merged/: the LLM with LoRA merged in "
                                                             "(loads the base LLM)")
    parser.add_argument("--options", nargs="*", default=[], help="model config overrides, e.g. llm.path=...")
    args = parser.parse_args(argv)
    try:
        cfg = load_model_config(args.cfg_path, args.options)
        summary = export(cfg, args.checkpoint, args.out, metrics=args.metrics, merge=args.merge)
    except (CheckpointError, ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
