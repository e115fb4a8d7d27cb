"""`EmotionPredictor`: the encoders and the model loaded once; one clip in, a `Prediction` out.

The clip goes through `ClipEncoder` (minigpt4/infer/inputs.py: the batch extraction steps, in
memory), then a dataset-style sample through the training collator, then `answer_batch`
(minigpt4/eval/generation.py), the answering function evaluation uses. The prompt template
(`PromptTemplate`) is resolved once here, from the config's protocol, the model's prompt format
and its tokenizer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from minigpt4.common.distributed import pick_device
from minigpt4.data.collator import EmotionCollator
from minigpt4.data.datasets import FEATURE_ORDER
from minigpt4.data.labels import label_set
from minigpt4.data.prompts import PromptTemplate
from minigpt4.eval.generation import answer_batch, check_answer_mode
from minigpt4.eval.parsing import parse_label
from minigpt4.infer.config import InferConfig
from minigpt4.infer.inputs import ClipEncoder, ClipInputs, RequestRejected, check_text
from minigpt4.models.builder import build_model
from minigpt4.processors import EvaImageTransform

INFER_TASKS = ("emotion", "reason", "reason_v2")
INPUT_NAMES = ("image", "local", "temporal", "audio", "text")


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


class EmotionPredictor:
    """Loads the feature encoders and the model once; `predict` answers for one clip.

    A web server's worker threads share one predictor: decoding and encoding a clip is serialised
    by one lock, the model by another, so one request can decode while another generates. A
    `deadline` (`time.monotonic()` value) bounds a request: waiting for either lock, the stages
    and generation (`max_time`) stop there with `RequestRejected`.
    """

    def __init__(self, cfg: InferConfig):
        layout = PromptTemplate.resolve(cfg.protocol, cfg.model.prompt_format)  # checked before anything loads
        # the frame the model sees: the configured one, or the release's first frame
        cfg = dataclasses.replace(cfg, features=dataclasses.replace(
            cfg.features, frame_choice=layout.frame_choice(cfg.features.frame_choice)))
        self.cfg = cfg
        self.labels = label_set(cfg.label_set)
        self.device = pick_device(cfg.device)
        checkpoint = cfg.model.checkpoint
        if checkpoint and not Path(checkpoint).exists():
            raise FileNotFoundError(
                f"model.checkpoint {checkpoint} does not exist. Train it first (the tiny demo: `make demo`), "
                f"point model.checkpoint at your trained weights, or pass --options model.checkpoint=null "
                f"to try the untrained model")
        self.clips = ClipEncoder(cfg, self.device)
        torch.manual_seed(cfg.generation.seed)  # projections a checkpoint does not cover start the same every run
        self.model = build_model(cfg.model).to(self.device).eval()
        self.template = layout.with_tokenizer(self.model.tokenizer)
        self.collator = EmotionCollator(self.model.tokenizer, cfg.model.num_patch_tokens, train=False,
                                        max_txt_len=cfg.model.max_txt_len, template=self.template)
        self.image_transform = EvaImageTransform(cfg.model.vision.image_size)
        self._lock = threading.Lock()  # the model
        self._inputs_lock = threading.Lock()  # the feature encoders and the face detector

    @property
    def extractor(self):
        """The feature extractor `prepare` runs (`ClipEncoder.extractor`)."""
        return self.clips.extractor

    # ---- one clip -> inputs ---------------------------------------------------------------

    def prepare(self, video_path: str | Path, deadline: Optional[float] = None) -> ClipInputs:
        """Decode, crop faces, choose the frame, encode: the batch extraction steps, in memory."""
        with self._hold(self._inputs_lock, deadline, "decoding"):
            inputs = self.clips.prepare(video_path)
        self._check_deadline(deadline, "after decoding the clip")
        return inputs

    # ---- the request's deadline -----------------------------------------------------------

    def _remaining(self, deadline: Optional[float]) -> Optional[float]:
        return None if deadline is None else deadline - time.monotonic()

    def _check_deadline(self, deadline: Optional[float], where: str) -> None:
        remaining = self._remaining(deadline)
        if remaining is not None and remaining <= 0:
            raise RequestRejected(f"the request ran past its deadline of {self.cfg.limits.request_seconds:g} s ({where}); "
                                  "try a shorter clip, or again when the server is less busy "
                                  "(limits.request_seconds in the config)")

    @contextlib.contextmanager
    def _hold(self, lock: threading.Lock, deadline: Optional[float], stage: str):
        """`lock` for the stage, waiting no longer than the deadline allows."""
        self._check_deadline(deadline, f"before {stage}")
        remaining = self._remaining(deadline)
        if not lock.acquire(timeout=-1 if remaining is None else max(remaining, 0.0)):
            self._check_deadline(time.monotonic(), f"waiting for other requests before {stage}")
        try:
            yield
        finally:
            lock.release()

    # ---- inputs -> answer -----------------------------------------------------------------

    def instruction(self, task: str, question: Optional[str] = None) -> str:
        """`question`, or the question evaluation asks: `PromptTemplate.instruction`, the one
        decision `EmotionDataset.instruction` also makes (same labels, same protocol)."""
        if task not in INFER_TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(INFER_TASKS)}")
        if question and question.strip():
            return question.strip()
        return self.template.instruction(task, self.labels)

    def build_batch(self, inputs: ClipInputs, task: str = "emotion", question: Optional[str] = None,
                    transcript: str = "") -> dict[str, Any]:
        """The generation batch of one clip: a dataset sample (contract of
        minigpt4/data/datasets.py) through the training collator, so the prompt layout and the
        placeholder slots are exactly those of training and evaluation."""
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

    def _scored(self, inputs: ClipInputs, transcript: str, deadline: Optional[float] = None):
        """`answer_batch` in score_labels mode on the emotion question of the clip."""
        batch = self.collator.to_device(self.build_batch(inputs, "emotion", None, transcript), self.device)
        with self._hold(self._lock, deadline, "scoring the labels"), torch.inference_mode():
            return answer_batch(self.model, batch, answer_mode="score_labels", labels=self.labels)[0]

    def label_probabilities(self, inputs: ClipInputs, transcript: str = "") -> dict[str, float]:
        """P(label) for every label of the set: the emotion question, each label scored by the
        model's likelihood of answering it (`EmotionLLaMA.score_labels`, as evaluation does)."""
        return self._scored(inputs, transcript).label_probs

    def answer(self, inputs: ClipInputs, task: str = "emotion", question: Optional[str] = None,
               transcript: str = "", sample: Optional[bool] = None, answer_mode: Optional[str] = None,
               deadline: Optional[float] = None) -> Prediction:
        """Answer for already prepared inputs (ask several questions about one clip cheaply)."""
        check_text(question, transcript, self.cfg.limits)
        gen = self.cfg.generation
        sample = gen.sample if sample is None else sample
        mode = answer_mode or self.cfg.answer_mode
        check_answer_mode(mode, self.labels)
        transcript = " ".join((transcript or "").split())
        instruction = self.instruction(task, question)
        start = time.perf_counter()
        scored = self._scored(inputs, transcript, deadline) if mode != "generate" else None
        text = None
        if mode != "score_labels" or task != "emotion":
            batch = self.collator.to_device(self.build_batch(inputs, task, question, transcript), self.device)
            with self._hold(self._lock, deadline, "generating"):
                self._check_deadline(deadline, "before generating")
                kwargs = gen.kwargs(sample)
                if deadline is not None:  # generation stops at the deadline (the answer so far is kept)
                    kwargs["max_time"] = max(self._remaining(deadline), 0.01)
                if sample:
                    torch.manual_seed(gen.seed)
                text = answer_batch(self.model, batch, max_new_tokens=self.template.max_new_tokens(gen.max_new_tokens),
                                    generation=kwargs)[0].text
        best = scored.scored if scored else None
        seconds = dict(inputs.seconds)
        seconds["generate"] = time.perf_counter() - start
        return self._prediction(inputs, task, instruction, best if text is None else text, transcript, seconds,
                                mode, scored.label_probs if scored else None, best if mode == "score_labels" else None)

    def _prediction(self, inputs: ClipInputs, task: str, instruction: str, text: str, transcript: str,
                    seconds: dict[str, float], mode: str = "generate", probs: Optional[dict[str, float]] = None,
                    scored: Optional[str] = None) -> Prediction:
        label = scored or parse_label(text, self.labels)
        notes = list(inputs.notes)
        if not transcript:
            notes.append("no transcript given: the text input is empty (pass what the person says)")
        if label is None:
            notes.append(f"the answer names no single label of {self.cfg.label_set} ({', '.join(self.labels)})")
        used = {"image": True, **{kind: bool(p) for kind, p in zip(FEATURE_ORDER, inputs.present)},
                "text": bool(transcript)}
        total = seconds.get("total_inputs", 0.0) + seconds["generate"]
        return Prediction(inputs.video, task, instruction, text, label, list(self.labels), used, notes, total,
                          seconds, inputs.frame, inputs.face, mode, probs)

    def predict(self, video_path: str | Path, task: str = "emotion", question: Optional[str] = None,
                transcript: str = "", sample: Optional[bool] = None, answer_mode: Optional[str] = None,
                deadline: Optional[float] = None) -> Prediction:
        """Everything for one clip: `prepare` then `answer`. A bad task, an over-long question or
        transcript and a clip over the limits are refused before anything is decoded."""
        self.instruction(task, question)  # reject a bad task before decoding the clip
        check_text(question, transcript, self.cfg.limits)
        return self.answer(self.prepare(video_path, deadline), task, question, transcript, sample, answer_mode, deadline)
