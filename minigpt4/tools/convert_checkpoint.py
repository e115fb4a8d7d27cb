"""Convert a released Emotion-LLaMA (or MiniGPT-v2) checkpoint to our safetensors format.

    python -m minigpt4.tools.convert_checkpoint --src Emotion_LLaMA.pth --dst checkpoints/emotion_llama.safetensors \
        [--cfg-path minigpt4/configs/models/emotion_llama.yaml] [--partial]

The source is read with weights-only unpickling (no code runs). With `--cfg-path`, names and
shapes are checked against the model that config builds (on the meta device, so no weights are
needed); missing and unexpected tensors are reported by name. MiniGPT-v2 checkpoints lack the
feature and CLS projections: pass `--partial` to accept that.
"""

from __future__ import annotations

import argparse
import json
import sys

from minigpt4.common.errors import run_cli
from minigpt4.models.builder import build_model
from minigpt4.models.checkpoint import LoadReport, match_trainable, read_trainable, write_safetensors
from minigpt4.tools.inspect_model import load_model_config


def convert(src: str, dst: str, cfg_path: str | None = None, partial: bool = False) -> LoadReport:
    state = read_trainable(src)
    report = LoadReport(loaded=sorted(state))
    if cfg_path is not None:
        model = build_model(load_model_config(cfg_path, []), meta=True)
        report = match_trainable(model.trainable_state_dict(), state, src, partial=partial)
        state = {k: state[k] for k in report.loaded}
    write_safetensors({k: v.contiguous() for k, v in state.items()}, dst)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Released .pth -> our .safetensors (trainable weights only).")
    parser.add_argument("--src", required=True)
    parser.add_argument("--dst", required=True)
    parser.add_argument("--cfg-path", help="model or run YAML to check names and shapes against")
    parser.add_argument("--partial", action="store_true", help="accept missing tensors (MiniGPT-v2 weights)")
    args = parser.parse_args(argv)
    report = run_cli(lambda: convert(args.src, args.dst, args.cfg_path, args.partial))
    if isinstance(report, int):  # a user error, reported on stderr
        return report
    print(
        json.dumps(
            {"dst": args.dst, "tensors": len(report.loaded), "missing": report.missing, "unexpected": report.unexpected},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
