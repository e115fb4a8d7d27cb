"""The swappable backends of the MERR stages and the published prompts they use.

Each stage has an offline default and external backends (`MERR/README.md` lists them):

| stage | offline | external |
|---|---|---|
| visual objective description | ``geometry``: framing, head turn, eyes, mouth from the landmarks | ``openai`` (chat with an image), ``model`` (our checkpoint) |
| audio tone | ``prosody`` (`minigpt4.merr.prosody`) | ``openai`` (chat with audio input) |
| transcript | ``csv`` (``name,sentence``) | ``openai`` (``/v1/audio/transcriptions``) |
| fine reasoning | ``clues``: the clues in a fixed order, no LLM | ``openai`` (chat), ``model`` (our checkpoint) |
| pseudo-label check | -- | ``model``: our checkpoint's answer and its probability |

Endpoint replies are cached by `minigpt4.common.openai_client`; model answers are cached by
the builder (per clip, keyed by the inputs, the prompt and the checkpoint).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from minigpt4.common.openai_client import EndpointConfig, OpenAIClient, audio_part, image_part, wav_bytes
from minigpt4.data.annotations import read_transcripts
from minigpt4.eval.parsing import label_mentions
from minigpt4.infer import EmotionPredictor, load_infer_config
from minigpt4.merr.prosody import TONE_WORDS

# Published prompts (MERR construction, section "how the dataset was built" of the paper's release).
VISUAL_PROMPTS = ("What do you see in the image? Please describe it using words only.",
                  "Please describe the content of the image.")
TONE_PROMPT = ("You are a voice emotion expert. Please analyze the input audio and determine the tone of the "
               "speaker in the video from the following options: [joyful, sad, shocked, fearful, angry, positive, "
               "negative, calm, doubtful, dismissive].")
REASON_SYSTEM = "You are an emotion analysis expert. Please infer emotion label based on the given the emotional features."
REASON_QUESTION = "Please sort out the correct emotional clues and infer why the person in the video feels {label}."
COARSE_TEMPLATE = ("This person in the video is {visual}. The person's expression and actions include {expression}, "
                   "and the person's tone is {tone}. Saying: {subtitle}")


class BackendError(ValueError):
    """A backend name or setting that does not exist; names the config key and the choices."""


def check_choice(key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise BackendError(f"{key}: unknown backend {value!r}; choose one of {', '.join(choices)}")


def make_client(cfg: EndpointConfig, cache: Path, stage: str) -> OpenAIClient:
    return OpenAIClient(cfg, cache_path=cache, name=f"{stage} endpoint",
                        hint=f"check {stage}.endpoint.url / model and the variable named by {stage}.endpoint.api_key_env")


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------
# visual objective description
# ------------------------------------------------------------------------------------------

def geometry_description(points: np.ndarray | None, box: Sequence[int] | None, frame_shape: Sequence[int],
                         eyes_closed: bool = False) -> str:
    """What the landmarks of the peak frame say objectively: shot size, position, head turn, eyes, mouth.

    Shot: face height over frame height >= 0.4 close-up, >= 0.15 medium shot, else wide shot.
    Head turn: nose tip off the eye midpoint by more than 0.15 inter-ocular distances. Mouth open:
    inner lips more than 0.1 inter-ocular distances apart.
    """
    if points is None or box is None or not np.isfinite(points).all():
        return "not clearly visible, as no face was found in the frame"
    height, width = frame_shape[:2]
    x, y, w, h = box
    shot = "a close-up" if h / height >= 0.4 else "a medium shot" if h / height >= 0.15 else "a wide shot"
    centre = (x + w / 2) / width
    where = "on the left of the frame" if centre < 1 / 3 else "on the right of the frame" if centre > 2 / 3 else "in the centre of the frame"
    left_eye, right_eye = points[36:42].mean(0), points[42:48].mean(0)
    iod = max(float(np.linalg.norm(right_eye - left_eye)), 1e-3)
    offset = (points[30, 0] - (left_eye[0] + right_eye[0]) / 2) / iod
    facing = ("facing the camera" if abs(offset) <= 0.15 else
              "with the head turned to the person's right" if offset < 0 else "with the head turned to the person's left")
    mouth = "an open mouth" if (points[66, 1] - points[62, 1]) / iod > 0.1 else "a closed mouth"
    eyes = "closed eyes" if eyes_closed else "open eyes"
    return f"seen in {shot} {where}, {facing}, with {eyes} and {mouth}"


def openai_visual(client: OpenAIClient, frame: np.ndarray, prompt: str) -> str:
    content = [{"type": "text", "text": prompt}, image_part(jpeg_bytes(frame))]
    return " ".join(client.chat([{"role": "user", "content": content}]).split())


# ------------------------------------------------------------------------------------------
# tone and transcript
# ------------------------------------------------------------------------------------------

def tone_from_reply(reply: str) -> str | None:
    """The first of the ten tone words in a reply (None when it names none)."""
    words = [w.strip(".,;:!?\"'()[]").lower() for w in reply.split()]
    return next((w for w in words if w in TONE_WORDS), None)


def openai_tone(client: OpenAIClient, audio: np.ndarray, sample_rate: int) -> str | None:
    content = [{"type": "text", "text": TONE_PROMPT}, audio_part(wav_bytes(audio, sample_rate))]
    return tone_from_reply(client.chat([{"role": "user", "content": content}]))


def read_transcripts_csv(path: str, column: str) -> dict[str, str]:
    return read_transcripts(path, column)


# ------------------------------------------------------------------------------------------
# reasoning
# ------------------------------------------------------------------------------------------

def reason_messages(coarse: str, label: str) -> list[dict[str, str]]:
    """The published system prompt; the user turn is the coarse description and the question."""
    return [{"role": "system", "content": REASON_SYSTEM},
            {"role": "user", "content": f"{coarse} {REASON_QUESTION.format(label=label)}"}]


def clues_reasoning(clip: dict[str, Any], label: str) -> str:
    """The offline reasoning: the clip's clues, face then voice then words, then the label.

    It states what the pipeline measured and is not an inference by a language model.
    """
    parts = []
    if clip.get("expression_phrases"):
        parts.append(f"The facial expression shows {', '.join(clip['expression_phrases'])}")
    if clip.get("tone"):
        parts.append(f"the tone of voice is {clip['tone']}")
    if clip.get("subtitle"):
        parts.append(f'the person says "{clip["subtitle"]}"')
    if not parts:
        return f"There are few clear clues, which fits the person feeling {label}."
    text = "; ".join(parts)
    return f"{text[0].upper()}{text[1:]}. Taken together, these clues suggest that the person feels {label}."


def check_reasoning(text: str, label: str, labels: Sequence[str]) -> str:
    """"" when `text` supports `label` and asserts no other label, else the reason to drop it.

    Uses the evaluation parser's label mentions (synonyms and negations handled), so a
    reasoning passes here exactly when an evaluator would read `label` from it.
    """
    if not text.strip():
        return "empty reasoning"
    mentioned = {m for sentence in label_mentions(text, labels) for m in sentence}
    if label not in mentioned:
        return "reasoning does not support the label"
    if mentioned - {label}:
        return "reasoning asserts another label"
    return ""


# ------------------------------------------------------------------------------------------
# our own model (EmotionPredictor)
# ------------------------------------------------------------------------------------------

class ModelBackend:
    """Our Emotion-LLaMA checkpoint through `minigpt4.infer.EmotionPredictor`, loaded once: it answers
    through the one answering function evaluation uses (`minigpt4.eval.generation.answer_batch`)."""

    def __init__(self, infer_cfg: str, device: str | None = None):
        overrides = [f"device={device}"] if device else []
        cfg = load_infer_config(infer_cfg, overrides)
        self.name = f"{infer_cfg}:{cfg.model.checkpoint or 'untrained'}"
        self.predictor = EmotionPredictor(cfg)
        self._inputs: dict[str, Any] = {}

    def inputs(self, video: Path):
        key = str(video)
        if key not in self._inputs:
            self._inputs = {key: self.predictor.prepare(video)}  # keep one clip: its stages run back to back
        return self._inputs[key]

    def ask(self, video: Path, task: str, question: str, transcript: str = "") -> str:
        return self.predictor.answer(self.inputs(video), task, question, transcript, sample=False).answer

    def label_probabilities(self, video: Path, transcript: str) -> dict[str, float]:
        """P(label | clip) over the model's label set: the softmax of each label's answer
        log-likelihood, computed as inference and evaluation do (`EmotionPredictor.label_probabilities`)."""
        return self.predictor.label_probabilities(self.inputs(video), " ".join(transcript.split()))
