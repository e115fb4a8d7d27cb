"""Prompt layout, instruction pools and the question asked for each task.

Two protocols (docs/release_protocol.md explains both and why their numbers differ):

``clean`` (the default) -- the release's *training* layout, used for training and inference:

    [INST] <video><VideoHere></video> <feature><FeatureHere></feature> The person in video says:
    {transcript}. [{task}] {instruction} [/INST]

`<VideoHere>` receives the image patch tokens and `<FeatureHere>` the feature tokens followed
by the CLS token. The collator expands both markers into placeholder slots; the model fills the
slots with a single masked scatter.

``release`` -- the string the released evaluation script built, byte for byte (MiniGPT-v2's
chat template around the release's user text):

    <s>[INST] <video><VideoHere></video> <feature><FeatureHere></feature> The person in video
    says: {transcript}.  [{task}] {instruction}  [/INST]

(two spaces before ``[{task}]`` and before ``[/INST]``, the transcript as it is, so one ending in
``.`` gives ``..``). The collator puts *all* visual tokens at `<VideoHere>`; `<FeatureHere>`
stays ordinary text, and the literal ``<s>`` becomes a second BOS.

`PromptTemplate` holds every decision of one (protocol, prompt format, tokenizer), resolved once
(as LLaMA-Factory's ``Template`` does): the question of a task, the prompt string, where the
placeholder slots go, the end-of-answer token, the frame the release looked at and the token
limits. The collator, the model's callers, evaluation and `minigpt4.infer` carry one object
instead of re-deciding; the module-level functions below resolve one and ask it.

Two prompt formats (`model.prompt_format`) wrap the same user turn (`user_turn`) for the LLM:
``llama2_inst`` is the ``[INST] ... [/INST]`` above (Llama-2-chat, the release); ``chat_template``
renders it with the tokenizer's own chat template (Llama-3, Qwen2.5, ... instruct models), with
the markers inside, so the collator and the visual-token merge are the same for any backbone.
An answer ends with `PromptTemplate.end_id` (`models.prompt_format.end_of_answer_id`): ``</s>`` for ``llama2_inst``, the template's end-of-turn
token for ``chat_template`` (Llama-3 ``<|eot_id|>``, Qwen ``<|im_end|>``); training appends it to
the target and generation stops at it.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from minigpt4.common.config import ConfigError
from minigpt4.data.labels import MERR_LABELS
from minigpt4.models.prompt_format import PROMPT_FORMATS, end_of_answer_id, require_chat_template

VIDEO_MARKER = "<VideoHere>"
FEATURE_MARKER = "<FeatureHere>"
# Strings of the prompt's own structure that user text (a question, a transcript, an answer from
# the data) must not be able to write: the slot markers and Llama-2's turn and sequence markers.
# The tokenizer's special and added tokens join them (`PromptTemplate.user_text`).
PROMPT_MARKERS = (VIDEO_MARKER, FEATURE_MARKER, "<s>", "</s>", "[INST]", "[/INST]")

TASKS = ("emotion", "reason", "reason_v2", "unibench")
PROTOCOLS = ("clean", "release")

# Our pools (protocol clean): each starts with the release's question, followed by paraphrases in
# its style. One is drawn per sample at training time and the first is asked at evaluation time,
# so that evaluation is deterministic.
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


# MER-UniBench's zero-shot question (AffectGPT), asked as it is under both protocols: the answer is
# free text, turned into emotion labels by an LLM afterwards (minigpt4/eval/label_extraction.py).
UNIBENCH_QUESTION = "Please recognize all possible emotional states of the character."
INSTRUCTION_POOLS["unibench"] = (UNIBENCH_QUESTION,)


# The release's pools as trained (its dataset class): one emotion question naming the nine MERR
# labels, whatever the dataset's labels are, and one pool of five for both reasoning tasks.
RELEASE_EMOTION_INSTRUCTION = INSTRUCTION_POOLS["emotion"][0]
_RELEASE_REASON_POOL = (
    "Please analyze all the clues in the video and reason out the emotional label of the person in the video.",
    "What is the emotional state of the person in the video? Please tell me the reason.",
    "What are the facial expressions and vocal tone used in the video? What is the intended meaning behind his words? Which emotion does this reflect?",
    "Please integrate information from various modalities to infer the emotional category of the person in the video.",
    "Could you describe the emotion-related features of the individual in the video? What emotional category do they fall into?",
)
RELEASE_INSTRUCTION_POOLS: dict[str, tuple[str, ...]] = {
    "emotion": (RELEASE_EMOTION_INSTRUCTION,),
    "reason": _RELEASE_REASON_POOL,
    "reason_v2": _RELEASE_REASON_POOL,
    "unibench": (UNIBENCH_QUESTION,),
}

OPEN_VOCABULARY_INSTRUCTION = (
    "Please recognize all possible emotional states of the person in the video and list them, separated by commas."
)


def emotion_instruction(labels: tuple[str, ...] | list[str]) -> str:
    """The emotion question for a dataset's own label set (open vocabulary when `labels` is empty)."""
    if not labels:
        return OPEN_VOCABULARY_INSTRUCTION
    return f"Please determine which emotion label in the video represents: {', '.join(labels)}."


# What else the release's evaluation fixed: the first frame of the clip, and up to 500 new tokens
# for every task (greedy, stopping at EOS) even when the answer is one word.
RELEASE_FRAME_CHOICE = "first"
RELEASE_MAX_NEW_TOKENS = 500


def check_protocol(protocol: str) -> str:
    """`protocol` if it is one of PROTOCOLS, else a ConfigError naming the choices."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return protocol


def check_prompt_format(prompt_format: str, protocol: str = "clean") -> str:
    """`prompt_format` if it is one of PROMPT_FORMATS and fits `protocol`, else a ConfigError."""
    if prompt_format not in PROMPT_FORMATS:
        raise ConfigError(f"unknown prompt format {prompt_format!r}; choose one of {', '.join(PROMPT_FORMATS)}")
    if prompt_format != "llama2_inst" and protocol == "release":
        raise ConfigError("protocol 'release' reproduces the released Llama-2 evaluation prompt; it needs "
                         "model.prompt_format=llama2_inst (use protocol clean with chat_template backbones)")
    return prompt_format


@dataclass(frozen=True)
class PromptTemplate:
    """Every decision of one prompt layout, made once by `resolve` and carried by the collator,
    evaluation and inference.

    `tokenizer` may be None for what needs no tokens (a dataset asks only for instructions);
    the prompt of a ``chat_template`` format and `end_id` need it.
    """

    protocol: str = "clean"
    prompt_format: str = "llama2_inst"
    tokenizer: Any = field(default=None, repr=False, compare=False)
    end_id: Optional[int] = None  # the token ending an answer (None without a tokenizer)

    @classmethod
    def resolve(cls, protocol: str = "clean", prompt_format: str = "llama2_inst", tokenizer=None) -> "PromptTemplate":
        """The template of (`protocol`, `prompt_format`, `tokenizer`); a ConfigError naming the fix
        when they do not fit together. The only place the protocol and the format are checked."""
        check_prompt_format(prompt_format, check_protocol(protocol))
        end_id = end_of_answer_id(tokenizer, prompt_format) if tokenizer is not None else None
        if protocol == "release" and tokenizer is not None:
            bos = tokenizer(tokenizer.bos_token, add_special_tokens=False)["input_ids"] if tokenizer.bos_token else []
            if bos != [tokenizer.bos_token_id]:
                raise ConfigError(f"protocol 'release' needs a tokenizer that reads the literal {tokenizer.bos_token!r} "
                                 "as its BOS token (Llama's does); this one splits it into ordinary tokens")
        return cls(protocol, prompt_format, tokenizer, end_id)

    def with_tokenizer(self, tokenizer) -> "PromptTemplate":
        """This template resolved for `tokenizer` (its end-of-answer id and, for chat_template, its template)."""
        return PromptTemplate.resolve(self.protocol, self.prompt_format, tokenizer)

    @property
    def is_release(self) -> bool:
        return self.protocol == "release"

    # ---- the question ------------------------------------------------------------------------

    def pick_instruction(self, task: str, rng: random.Random | None = None) -> str:
        """A random instruction of `task` (training) or the first one when `rng` is None (evaluation)."""
        pools = RELEASE_INSTRUCTION_POOLS if self.is_release else INSTRUCTION_POOLS
        try:
            pool = pools[task]
        except KeyError:
            raise ConfigError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}") from None
        return pool[0] if rng is None else rng.choice(pool)

    def instruction(self, task: str, labels: tuple[str, ...] | list[str], rng: random.Random | None = None) -> str:
        """The question asked for `task` on a dataset with label set `labels` (empty = open vocabulary).

        The single decision used by training (`rng` draws from the pool), evaluation and inference
        (`rng=None`: the first of the pool), so a model is never asked at test time a question it
        was not trained with. ``clean``: the emotion pool lists the MERR labels, so another label
        set (DFEW, IEMOCAP) or an open vocabulary (MER2024-OV) gets its own question.
        ``release``: the release's pools; its one emotion question names the nine MERR labels on
        every dataset, as the released evaluation did.
        """
        if not self.is_release and task == "emotion" and (not labels or not set(labels) <= set(MERR_LABELS)):
            return emotion_instruction(labels)
        return self.pick_instruction(task, rng)

    # ---- the prompt --------------------------------------------------------------------------

    @functools.cached_property
    def markers(self) -> tuple[str, ...]:
        """What user text may not contain as such: `PROMPT_MARKERS` and the tokenizer's special
        and added tokens (``<|eot_id|>``, ``<|im_start|>`` ...)."""
        extra: list[str] = []
        if self.tokenizer is not None:
            extra = [*self.tokenizer.all_special_tokens, *getattr(self.tokenizer, "added_tokens_encoder", {})]
        return tuple(dict.fromkeys(m for m in (*PROMPT_MARKERS, *extra) if m))

    def user_text(self, text: str) -> str:
        """`text` with every marker escaped, so it is read (and tokenised) as plain text.

        A question, a transcript or an answer comes from users or data files: a `<VideoHere>`
        in it would add a slot, a typed ``</s>`` would end the text, an ``[/INST]`` would close
        the turn. Each occurrence gets a space after its first character (``<VideoHere>`` ->
        ``< VideoHere>``, ``</s>`` -> ``< /s>``): still readable, no longer the marker. Text
        without markers is unchanged, so every prompt the release built stays byte for byte.
        """
        pattern = self._marker_pattern
        for _ in range(8):  # an escape can only expose a marker that straddled another; a few passes settle it
            escaped = pattern.sub(lambda found: found.group(0)[0] + " " + found.group(0)[1:], text)
            if escaped == text:
                break
            text = escaped
        return text

    @functools.cached_property
    def _marker_pattern(self) -> re.Pattern:
        return re.compile("|".join(re.escape(m) for m in sorted(self.markers, key=len, reverse=True)))

    def prompt(self, transcript: str, task: str, instruction: str) -> str:
        """The whole prompt with both markers still in place (the collator expands them); the
        transcript and the instruction enter as user text (`user_text`)."""
        transcript, instruction = self.user_text(transcript or ""), self.user_text(instruction)
        if self.is_release:
            user = (
                f"<video>{VIDEO_MARKER}</video> <feature>{FEATURE_MARKER}</feature> "
                f"The person in video says: {transcript or ''}. "
                f" [{task}] {instruction} "
            )
            return f"<s>[INST] {user} [/INST]"
        user = user_turn(transcript, task, instruction)
        if self.prompt_format == "chat_template":
            return chat_prompt(self.tokenizer, user)
        return f"[INST] {user} [/INST]"

    @property
    def leading_bos(self) -> bool:
        """``llama2_inst`` puts a BOS in front of the prompt; a chat template writes its own."""
        return self.prompt_format == "llama2_inst"

    def slot_segments(self, text: str, n_video: int, n_feature: int) -> tuple[tuple[str, int], ...]:
        """The prompt cut at its markers: (text, placeholder slots after it) pairs.

        ``clean``: the image slots at `<VideoHere>`, the feature and CLS slots at `<FeatureHere>`.
        ``release``: every slot at `<VideoHere>`; `<FeatureHere>` stays ordinary text.
        """
        before_video, rest = text.split(VIDEO_MARKER)
        if self.is_release:
            return ((before_video, n_video + n_feature), (rest, 0))
        between, after = rest.split(FEATURE_MARKER)
        return ((before_video, n_video), (between, n_feature), (after, 0))

    # ---- what evaluation and inference fix ---------------------------------------------------

    def frame_choice(self, configured: str) -> str:
        """The frame the model sees: `configured`, or the first frame under ``release``."""
        return RELEASE_FRAME_CHOICE if self.is_release else configured

    def max_new_tokens(self, configured: Mapping[str, int]) -> dict[str, int]:
        """Per-task generation limits: `configured` under ``clean``, 500 for every task under ``release``."""
        if self.is_release:
            return {task: RELEASE_MAX_NEW_TOKENS for task in set(TASKS) | set(configured)}
        return dict(configured)

    @property
    def stop_ids(self) -> list[int]:
        """Generation stops at the end-of-answer token (and at EOS, if different)."""
        eos = self.tokenizer.eos_token_id
        return [self.end_id] + [i for i in (eos,) if i is not None and i != self.end_id]


# The module-level functions: one template resolved from their arguments, asked once.

def max_new_tokens_for(protocol: str, configured: Mapping[str, int]) -> dict[str, int]:
    """Per-task generation limits: `configured` under ``clean``, 500 for every task under ``release``."""
    return PromptTemplate.resolve(protocol).max_new_tokens(configured)


def pick_instruction(task: str, rng: random.Random | None, protocol: str = "clean") -> str:
    """A random instruction of `task` (training) or the first one when `rng` is None (evaluation)."""
    return PromptTemplate.resolve(protocol).pick_instruction(task, rng)


def instruction_for(
    task: str, labels: tuple[str, ...] | list[str], protocol: str = "clean", rng: random.Random | None = None
) -> str:
    """The question asked for `task` (`PromptTemplate.instruction`)."""
    return PromptTemplate.resolve(protocol).instruction(task, labels, rng)


def prompt_text(transcript: str, task: str, instruction: str, protocol: str = "clean",
                prompt_format: str = "llama2_inst", tokenizer=None) -> str:
    """The whole prompt with both markers still in place (`PromptTemplate.prompt`).

    `tokenizer` is needed for ``chat_template`` only: its chat template wraps the user turn.
    """
    template = PromptTemplate(check_protocol(protocol), check_prompt_format(prompt_format, protocol), tokenizer)
    return template.prompt(transcript, task, instruction)


def user_turn(transcript: str, task: str, instruction: str) -> str:
    """What the user says in the clean layout, both markers in place (any prompt format wraps it)."""
    transcript = (transcript or "").strip()
    said = f" The person in video says: {transcript.rstrip('.')}." if transcript else ""
    return f"<video>{VIDEO_MARKER}</video> <feature>{FEATURE_MARKER}</feature>{said} [{task}] {instruction}"


def chat_prompt(tokenizer, user: str) -> str:
    """`user` as the one user turn of the tokenizer's chat template, ready for the answer."""
    require_chat_template(tokenizer)
    text = tokenizer.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False)
    if text.count(VIDEO_MARKER) != 1 or text.count(FEATURE_MARKER) != 1:
        raise ConfigError(f"the chat template of {tokenizer.name_or_path} does not keep the user text as it is "
                         f"({VIDEO_MARKER} / {FEATURE_MARKER} lost or repeated); use prompt_format=llama2_inst")
    return text
