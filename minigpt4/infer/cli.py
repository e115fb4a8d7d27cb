"""`python -m minigpt4.infer` (`emotion-llama-infer`): one clip on the command line (usage: minigpt4/infer/__init__.py)."""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Optional, Sequence

from transformers.utils import logging as hf_logging

from minigpt4.common.errors import run_cli
from minigpt4.data.labels import label_set
from minigpt4.data.prompts import PromptTemplate
from minigpt4.eval.generation import check_answer_mode
from minigpt4.infer.config import load_infer_config
from minigpt4.infer.inputs import check_video
from minigpt4.infer.predictor import INFER_TASKS, EmotionPredictor, Prediction

DESCRIPTION = "Emotion-LLaMA on one raw video: the emotion and its explanation from all four inputs."


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m minigpt4.infer", description=DESCRIPTION)
    parser.add_argument("--cfg-path", required=True, help="eval_configs/infer_tiny.yaml or eval_configs/infer_real.yaml")
    parser.add_argument("--video", required=True, help="the clip (.mp4 .avi .mkv .webm .mov)")
    parser.add_argument("--task", default="emotion", choices=INFER_TASKS,
                        help="emotion: the label; reason / reason_v2: an explanation that concludes with the label")
    parser.add_argument("--question", help="ask this instead of the task's standard instruction")
    parser.add_argument("--transcript", default="", help="what the person says (the text input)")
    parser.add_argument("--sample", action="store_true",
                        help="sample like the demo (temperature 0.2, top-p 0.9, repetition penalty 1.05) "
                             "instead of greedy decoding")
    parser.add_argument("--protocol", help="clean (default) or release: the released evaluation's prompt, first frame "
                        "and 500-token limit (sets `protocol` in the config; docs/release_protocol.md)")
    parser.add_argument("--answer-mode", choices=("generate", "score_labels", "both"),
                        help="generate: parse the generated answer; score_labels: the most likely label, with "
                             "probabilities; both: the generated answer and the probabilities (default: the "
                             "config's answer_mode)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. model.checkpoint=path device=cpu")
    return parser.parse_args(argv)


def quiet_libraries() -> None:
    """Keep the terminal for the answer: no weight-loading progress bars, and no warning that the
    repetition penalty skips the prompt (it is given as embeddings; the release's demo did the same)."""
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*repetition_penalty.*inputs_embeds")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit status 0 on an answer, 2 on a bad file or config (the message says which and why)."""
    args = parse_args(argv)
    quiet_libraries()

    def run() -> Prediction:
        cfg = load_infer_config(args.cfg_path, list(args.options) + ([f"protocol={args.protocol}"] if args.protocol else []))
        PromptTemplate.resolve(cfg.protocol, cfg.model.prompt_format)  # a bad protocol / format fails before loading
        check_answer_mode(args.answer_mode or cfg.answer_mode, label_set(cfg.label_set))
        check_video(args.video, cfg.limits)  # seconds, not the minutes a 7B model takes to load
        predictor = EmotionPredictor(cfg)
        return predictor.predict(args.video, args.task, args.question, args.transcript,
                                 sample=True if args.sample else None, answer_mode=args.answer_mode)

    prediction = run_cli(run)
    if isinstance(prediction, int):  # a user error, reported on stderr
        return prediction
    print(json.dumps(prediction.to_json(), ensure_ascii=False) if args.json else prediction.summary())
    return 0
