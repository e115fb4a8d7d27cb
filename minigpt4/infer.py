"""Emotion-LLaMA on one raw video: the emotion and its explanation from all four inputs.

    python -m minigpt4.infer --cfg-path eval_configs/infer_tiny.yaml --video clip.mp4
    python -m minigpt4.infer --cfg-path eval_configs/infer_real.yaml --video clip.mp4 \\
        --task reason --transcript "I can't believe you did that" --json

The release's demo looked at the first frame only and fed zeros for the local and temporal
features. Here a clip goes through exactly what batch extraction (`minigpt4.features.extract`)
does to the training clips: decode, crop faces, choose the frame (first / middle / peak), load
the audio, run HuBERT / ViT-MAE / VideoMAE; then the chosen frame goes to EVA inside the model
and the prompt is built in the training layout by the training collator. Nothing is written
to disk.

A clip without an audio track is still answered: the audio feature is marked absent (as in
training data without one) and the result says so. `--answer-mode score_labels` answers the
emotion by scoring every label of the label set (`EmotionLLaMA.score_labels`): the answer is then
always a valid label, and `--json` carries the probability of each label (``label_probs``). A file that cannot be read is an error that
names the file; the command line then exits with status 2.

`EmotionPredictor` loads the encoders and the model once; `app.py` (the web demo) uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from minigpt4.common.config import ConfigError, load_config
from minigpt4.common.errors import run_cli
from minigpt4.data.prompts import check_protocol
from minigpt4.features.config import FeatureConfig
from minigpt4.common.media import MediaError, video_info
from minigpt4.models.config import ModelConfig
from minigpt4.models.feature_layout import FEATURE_ORDER

INFER_TASKS = ("emotion", "reason", "reason_v2")
INPUT_NAMES = ("image", "local", "temporal", "audio", "text")


# ------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------

@dataclass
class GenerationConfig:
    """Decoding settings (docs/model.md, "Answers"). Greedy with one beam unless sampling is asked
    for; sampling uses the release demo's temperature / top-p / repetition penalty."""

    max_new_tokens: dict[str, int] = field(
        default_factory=lambda: {"emotion": 16, "reason": 200, "reason_v2": 200})
    sample: bool = False  # the command line's --sample; the web demo turns it on
    temperature: float = 0.2
    top_p: float = 0.9
    repetition_penalty: float = 1.05
    seed: int = 0  # makes sampled answers repeatable for the same clip

    def kwargs(self, sample: bool) -> dict[str, Any]:
        """Keyword arguments for `EmotionLLaMA.generate` (on top of max_new_tokens)."""
        if not sample:
            return {"do_sample": False, "num_beams": 1}
        return {"do_sample": True, "num_beams": 1, "temperature": self.temperature, "top_p": self.top_p,
                "repetition_penalty": self.repetition_penalty}


@dataclass
class LimitsConfig:
    """What one request may ask for: decoding keeps every frame in memory, so a feature-length
    film would exhaust it; the web demo also caps the upload size."""

    max_seconds: float = 60.0  # clip duration
    max_upload_mb: float = 50.0  # file size


@dataclass
class AppConfig:
    """The web demo (`app.py`)."""

    examples: Optional[str] = None  # folder of example clips offered in the page; missing = none
    examples_list: Optional[str] = None  # only the clips named in this file (an annotation list works)
    max_examples: int = 6
    title: str = "Emotion-LLaMA"


@dataclass
class InferConfig:
    """`eval_configs/infer_*.yaml`. `features` must match the extraction config the model was
    trained on (same encoders, frame choice, face detector), or the inputs differ from training."""

    model: ModelConfig = field(default_factory=ModelConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    label_set: str = "merr"  # the labels the model was trained to name (minigpt4.data.labels)
    protocol: str = "clean"  # clean | release: the release's evaluation prompt, first frame, 500 tokens (--protocol)
    device: str = "auto"  # auto | cpu | cuda, for the model and the encoders (features.device is ignored)
    # generate: the label is parsed from generated text (it may name none); score_labels: the most
    # likely label of the set, with probabilities; both: generated text plus the probabilities
    answer_mode: str = "generate"
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    app: AppConfig = field(default_factory=AppConfig)


def load_infer_config(path: str | Path | None, overrides: Sequence[str] = ()) -> InferConfig:
    return load_config(InferConfig, path, overrides)


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------

@dataclass
class ClipInputs:
    """One clip turned into model inputs, plus what the page shows about them."""

    video: str
    frame: np.ndarray  # uint8 [H,W,3], the chosen frame (the global view for EVA)
    frame_index: int
    face: np.ndarray  # uint8 [S,S,3], the face crop of the chosen frame
    features: np.ndarray  # float32 [F, D]: the rows of model.feature_layout (local, temporal, audio)
    present: np.ndarray  # bool [F]: one per feature row (model.feature_layout)
    notes: list[str]
    seconds: dict[str, float]


@dataclass
class Prediction:
    video: str
    task: str
    question: str  # the instruction the model was given
    answer: str
    label: Optional[str]  # parsed from the answer; None = it names no label, or several
    label_set: list[str]
    inputs_used: dict[str, bool]  # image, local, temporal, audio, text
    notes: list[str]  # why an input is missing, faces not found, invalid label ...
    seconds: float
    timings: dict[str, float]
    frame: np.ndarray = field(repr=False)
    face: np.ndarray = field(repr=False)
    answer_mode: str = "generate"
    label_probs: Optional[dict[str, float]] = None  # score_labels / both: P(label) over the label set

    def to_json(self) -> dict[str, Any]:
        """The --json object (the images are left out)."""
        return {
            "video": self.video, "task": self.task, "question": self.question, "answer": self.answer,
            "label": self.label, "label_set": self.label_set, "answer_mode": self.answer_mode,
            "label_probs": self.label_probs, "inputs_used": self.inputs_used,
            "notes": self.notes, "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }

    def summary(self) -> str:
        """Human-readable lines for the terminal."""
        used = ", ".join(name for name in INPUT_NAMES if self.inputs_used[name]) or "none"
        absent = ", ".join(name for name in INPUT_NAMES if not self.inputs_used[name])
        label = self.label if self.label is not None else "(none: the answer names no single label of the set)"
        lines = [f"video:   {self.video}", f"task:    {self.task}", f"label:   {label}"]
        if self.task != "emotion":
            lines.append(f"explanation: {self.answer}")
        else:
            lines.append(f"answer:  {self.answer}")
        if self.label_probs:
            ranked = sorted(self.label_probs.items(), key=lambda kv: -kv[1])
            lines.append("probs:   " + ", ".join(f"{name} {p:.3f}" for name, p in ranked))
        lines.append(f"inputs:  {used}" + (f" (absent: {absent})" if absent else ""))
        lines += [f"note:    {note}" for note in self.notes]
        lines.append(f"time:    {self.seconds:.2f} s")
        return "\n".join(lines)


class VideoRejected(MediaError):
    """A readable video that breaks a configured limit (too long, too large)."""


def check_video(path: str | Path, limits: LimitsConfig) -> float:
    """Fail fast, before any model is loaded: the file must be a readable video within the
    limits. Returns its duration in seconds (0 when the container does not say)."""
    path = Path(path)
    if path.is_file():
        megabytes = path.stat().st_size / 2**20
        if megabytes > limits.max_upload_mb:
            raise VideoRejected(path, f"the file is {megabytes:.1f} MB, over the limit of {limits.max_upload_mb:g} MB",
                                "cut or re-encode the clip, or raise limits.max_upload_mb in the config")
    info = video_info(path)  # MediaError naming the file when it is missing, empty or corrupt
    seconds = info.num_frames / info.fps if info.fps > 0 else 0.0
    if seconds > limits.max_seconds:
        raise VideoRejected(path, f"the clip lasts {seconds:.1f} s, over the limit of {limits.max_seconds:g} s",
                            "cut the utterance out of the video (the model expects one utterance), "
                            "or raise limits.max_seconds in the config")
    return seconds


# ------------------------------------------------------------------------------------------
# the predictor
# ------------------------------------------------------------------------------------------

class EmotionPredictor:
    """Loads the feature encoders and the model once; `predict` answers for one clip.

    Calls are serialised by a lock held by the instance, so a web server's worker threads can
    share one predictor without interleaving generation on the same model.
    """

    def __init__(self, cfg: InferConfig):
        import torch

        from minigpt4.data.collator import EmotionCollator
        from minigpt4.data.labels import label_set
        from minigpt4.features.extract import FeatureExtractor
        from minigpt4.models.builder import build_model
        from minigpt4.processors import EvaImageTransform
        from minigpt4.common.distributed import pick_device

        from minigpt4.data.prompts import RELEASE_FRAME_CHOICE

        if check_protocol(cfg.protocol) == "release":
            cfg = dataclasses.replace(cfg, features=dataclasses.replace(cfg.features, frame_choice=RELEASE_FRAME_CHOICE))
        self.cfg = cfg
        self.labels = label_set(cfg.label_set)
        self.device = pick_device(cfg.device)
        checkpoint = cfg.model.checkpoint
        if checkpoint and not Path(checkpoint).exists():
            raise FileNotFoundError(
                f"model.checkpoint {checkpoint} does not exist. Train it first (the tiny demo: `make demo`), "
                f"point model.checkpoint at your trained weights, or pass --options model.checkpoint=null "
                f"to try the untrained model")
        self.extractor = FeatureExtractor(dataclasses.replace(cfg.features, device=str(self.device), save_frames=False,
                                                              eva_cache=False))
        self._check_feature_dims()
        torch.manual_seed(cfg.generation.seed)  # projections a checkpoint does not cover start the same every run
        self.model = build_model(cfg.model).to(self.device).eval()
        self.collator = EmotionCollator(self.model.tokenizer, cfg.model.num_patch_tokens, train=False,
                                        max_txt_len=cfg.model.max_txt_len, protocol=cfg.protocol,
                                        prompt_format=cfg.model.prompt_format)
        self.image_transform = EvaImageTransform(cfg.model.vision.image_size)
        self._lock = threading.Lock()
        self._torch = torch

    def _check_feature_dims(self) -> None:
        """Each configured encoder must give what the model's slot for its kind takes (width, tokens)."""
        layout = self.cfg.model.feature_layout
        for i, name in enumerate(FEATURE_ORDER):
            encoder = getattr(self.extractor, name)
            if encoder is not None and (encoder.dim, encoder.tokens) != (layout.widths[i], layout.tokens[i]):
                raise ConfigError(
                    f"the {name} encoder (features.encoders.{name}: {self.cfg.features.encoder(name).name}, weights "
                    f"{self.cfg.features.weights(name)}) gives {encoder.tokens} token(s) of width {encoder.dim}, but the "
                    f"model's {name} slot (model.feature_slots.{name}: {layout.encoders[i]}) takes {layout.tokens[i]} of "
                    f"width {layout.widths[i]}; use the encoders the model was trained with")

    # ---- one clip -> inputs ---------------------------------------------------------------

    def prepare(self, video_path: str | Path) -> ClipInputs:
        """Decode, crop faces, choose the frame, encode: the batch extraction steps, in memory."""
        from minigpt4.data.datasets import FEATURE_ORDER

        path = Path(video_path)
        check_video(path, self.cfg.limits)
        start = time.perf_counter()
        clip = self.extractor.prepare(path)  # MediaError for unreadable files
        seconds = dict(clip.seconds)
        vectors = self.extractor.encode(clip, seconds)
        frame_index = clip.chosen_index

        # the same rows a dataset builds from the extracted files
        features, present = self.cfg.model.feature_layout.stack(vectors, f"clip {path.name}")

        notes = []
        if "audio" in self.cfg.features.features and clip.waveform is None:
            notes.append(f"{path.name} has no audio track: the audio feature is marked absent")
        disabled = [k for k in FEATURE_ORDER if k not in self.cfg.features.features]
        if disabled:
            notes.append(f"features disabled in the config (features.features): {', '.join(disabled)}")
        if clip.no_face_frames:
            notes.append(f"no face detected in {clip.no_face_frames} of {clip.num_frames} frames: "
                         "those use the nearest detected face (or a centred square when none is found)")
        seconds["total_inputs"] = time.perf_counter() - start
        return ClipInputs(str(path), clip.chosen_frame, frame_index, clip.chosen_face, features, present,
                          notes, seconds)

    # ---- inputs -> answer -----------------------------------------------------------------

    def instruction(self, task: str, question: Optional[str] = None) -> str:
        """`question`, or the question evaluation asks: `prompts.instruction_for`, the one
        decision `EmotionDataset.instruction` also makes (same labels, same protocol)."""
        from minigpt4.data.prompts import instruction_for

        if task not in INFER_TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(INFER_TASKS)}")
        if question and question.strip():
            return question.strip()
        return instruction_for(task, self.labels, self.cfg.protocol)

    def build_batch(self, inputs: ClipInputs, task: str = "emotion", question: Optional[str] = None,
                    transcript: str = "") -> dict[str, Any]:
        """The generation batch of one clip: a dataset sample (contract of
        minigpt4/data/datasets.py) through the training collator, so the prompt layout and the
        placeholder slots are exactly those of training and evaluation."""
        torch = self._torch
        item = {
            "name": Path(inputs.video).stem,
            "image": self.image_transform(inputs.frame),
            "features": torch.from_numpy(inputs.features),
            "feature_present": torch.from_numpy(inputs.present),
            "transcript": " ".join((transcript or "").split()),
            "task": task,
            "instruction": self.instruction(task, question),
            "target": "",
            "label": None,
            "valence": None,
        }
        return self.collator([item])

    def label_probabilities(self, inputs: ClipInputs, transcript: str = "") -> dict[str, float]:
        """P(label) for every label of the set: the emotion question, each label scored by the
        model's likelihood of answering it (`EmotionLLaMA.score_labels`, as evaluation does)."""
        batch = self.collator.to_device(self.build_batch(inputs, "emotion", None, transcript), self.device)
        with self._lock, self._torch.inference_mode():
            probs = self.model.score_labels(batch, list(self.labels)).softmax(-1)[0].tolist()
        return {label: round(p, 6) for label, p in zip(self.labels, probs)}

    def answer(self, inputs: ClipInputs, task: str = "emotion", question: Optional[str] = None,
               transcript: str = "", sample: Optional[bool] = None, answer_mode: Optional[str] = None) -> Prediction:
        """Answer for already prepared inputs (ask several questions about one clip cheaply)."""
        from minigpt4.data.prompts import max_new_tokens_for
        from minigpt4.eval.generation import check_answer_mode

        gen = self.cfg.generation
        sample = gen.sample if sample is None else sample
        mode = answer_mode or self.cfg.answer_mode
        check_answer_mode(mode, self.labels)
        transcript = " ".join((transcript or "").split())
        instruction = self.instruction(task, question)
        start = time.perf_counter()
        probs = self.label_probabilities(inputs, transcript) if mode != "generate" else None
        text = None
        if mode != "score_labels" or task != "emotion":
            batch = self.build_batch(inputs, task, question, transcript)
            limit = max_new_tokens_for(self.cfg.protocol, gen.max_new_tokens).get(task, 200)
            with self._lock:
                if sample:
                    self._torch.manual_seed(gen.seed)
                text = self.model.generate(self.collator.to_device(batch, self.device), max_new_tokens=limit,
                                           **gen.kwargs(sample))[0]
        best = max(probs, key=probs.get) if probs else None
        seconds = dict(inputs.seconds)
        seconds["generate"] = time.perf_counter() - start
        return self._prediction(inputs, task, instruction, best if text is None else text, transcript, seconds,
                                mode, probs, best if mode == "score_labels" else None)

    def _prediction(self, inputs: ClipInputs, task: str, instruction: str, text: str, transcript: str,
                    seconds: dict[str, float], mode: str = "generate", probs: Optional[dict[str, float]] = None,
                    scored: Optional[str] = None) -> Prediction:
        from minigpt4.data.datasets import FEATURE_ORDER
        from minigpt4.eval.parsing import parse_label

        label = scored or parse_label(text, self.labels)
        notes = list(inputs.notes)
        if not transcript:
            notes.append("no transcript given: the text input is empty (pass what the person says)")
        if label is None:
            notes.append(f"the answer names no single label of {self.cfg.label_set} ({', '.join(self.labels)})")
        layout = self.cfg.model.feature_layout
        used = {"image": True, **{kind: bool(inputs.present[layout.slice(kind)].any()) for kind in FEATURE_ORDER},
                "text": bool(transcript)}
        total = seconds.get("total_inputs", 0.0) + seconds["generate"]
        return Prediction(inputs.video, task, instruction, text, label, list(self.labels), used, notes, total,
                          seconds, inputs.frame, inputs.face, mode, probs)

    def predict(self, video_path: str | Path, task: str = "emotion", question: Optional[str] = None,
                transcript: str = "", sample: Optional[bool] = None, answer_mode: Optional[str] = None) -> Prediction:
        """Everything for one clip: `prepare` then `answer`."""
        self.instruction(task, question)  # reject a bad task before decoding the clip
        return self.answer(self.prepare(video_path), task, question, transcript, sample, answer_mode)


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m minigpt4.infer", description=__doc__.split("\n\n")[0])
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
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*repetition_penalty.*inputs_embeds")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit status 0 on an answer, 2 on a bad file or config (the message says which and why)."""
    args = parse_args(argv)
    quiet_libraries()

    def run() -> Prediction:
        from minigpt4.data.labels import label_set
        from minigpt4.eval.generation import check_answer_mode

        cfg = load_infer_config(args.cfg_path, list(args.options) + ([f"protocol={args.protocol}"] if args.protocol else []))
        check_protocol(cfg.protocol)
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


if __name__ == "__main__":
    sys.exit(main())
