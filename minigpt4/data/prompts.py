"""Prompt layout and instruction pools (docs/model.md, "Prompt").

The layout is the training layout of the release, used for training *and* inference:

    [INST] <video><VideoHere></video> <feature><FeatureHere></feature> The person in video says:
    {transcript}. [{task}] {instruction} [/INST]

`<VideoHere>` receives the image patch tokens and `<FeatureHere>` the feature tokens followed
by the CLS token. The collator expands both markers into placeholder slots; the model fills the
slots with a single masked scatter.
"""

from __future__ import annotations

import random

VIDEO_MARKER = "<VideoHere>"
FEATURE_MARKER = "<FeatureHere>"

TASKS = ("emotion", "reason", "reason_v2")

# Pools follow the wording of the release; one is drawn per sample at training time and the first
# is used at evaluation time so that evaluation is deterministic.
INSTRUCTION_POOLS: dict[str, tuple[str, ...]] = {
    "emotion": (
        "Please determine which emotion label in the video represents: happy, sad, neutral, angry, worried, surprise, fear, contempt, doubt.",
        "What is the emotion expressed in this video? Choose one label from: happy, sad, neutral, angry, worried, surprise, fear, contempt, doubt.",
        "Identify the displayed emotion in the video: is it happy, sad, neutral, angry, worried, surprise, fear, contempt or doubt?",
        "Which emotion does the person in the video show: happy, sad, neutral, angry, worried, surprise, fear, contempt or doubt?",
    ),
    "reason": (
        "Please analyze all the clues in the video and reason out the emotional label of the person in the video.",
        "What is the emotional state of the person in the video? Please tell me the reason.",
        "What are the facial expressions and vocal tone used in the video? What is the intended meaning behind his words? Which emotion does this reflect?",
        "Please integrate information from various modalities to infer the emotional category of the person in the video.",
    ),
    "reason_v2": (
        "Please analyze all the clues in the video and reason out the emotional label of the person in the video.",
        "Combining the facial expression, the voice and the words, explain which emotion the person shows and why.",
        "Describe the clues in the video step by step and conclude with the emotion of the person.",
    ),
}


OPEN_VOCABULARY_INSTRUCTION = (
    "Please recognize all possible emotional states of the person in the video and list them, separated by commas."
)


def emotion_instruction(labels: tuple[str, ...] | list[str]) -> str:
    """The emotion question for a dataset's own label set (open vocabulary when `labels` is empty)."""
    if not labels:
        return OPEN_VOCABULARY_INSTRUCTION
    return f"Please determine which emotion label in the video represents: {', '.join(labels)}."


def pick_instruction(task: str, rng: random.Random | None) -> str:
    """A random instruction of `task` (training) or the first one when `rng` is None (evaluation)."""
    try:
        pool = INSTRUCTION_POOLS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}") from None
    return pool[0] if rng is None else rng.choice(pool)


def prompt_text(transcript: str, task: str, instruction: str) -> str:
    """The user turn with both markers still in place (the collator expands them)."""
    transcript = (transcript or "").strip()
    said = f" The person in video says: {transcript.rstrip('.')}." if transcript else ""
    return (
        f"[INST] <video>{VIDEO_MARKER}</video> <feature>{FEATURE_MARKER}</feature>"
        f"{said} [{task}] {instruction} [/INST]"
    )
