"""Free-text answer -> emotion-label string, as MER-UniBench's owners extract it (stage 1 and 2).

The owners score a model's free-text answer by first asking an LLM (Qwen2.5-7B-Instruct on vLLM)
for the list of emotions it names (stage 1, e.g. ``[anxious, tense]``) and, for the sentiment
sets, then for one word ``positive|negative|neutral`` (stage 2). `LLMLabelExtractor` sends their
exact prompts as one user message through our OpenAI-compatible client (vLLM, Ollama, hosted
APIs) and cleans the reply as they do (`clean_reply`).

Sampling: ``greedy`` (temperature 0, the default: reproducible) or ``owners`` (their temperature
0.7, top_p 0.8, repetition_penalty 1.05, no seed: scores move from run to run). Every reply is
cached on disk (the client's JSONL cache, keyed by the whole request), so a killed run resumes
where it stopped and a re-run costs nothing.

`LexiconExtractor` needs no server: it lists the emotion-wheel word forms found in the answer.
It is a different measurement, so results extracted with it are named ``*_offline_lexicon``.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from tqdm import tqdm

from minigpt4.common.errors import UserError
from minigpt4.common.openai_client import EndpointConfig, EndpointConfigError, EndpointError, OpenAIClient
from minigpt4.data.prompts import UNIBENCH_QUESTION
from minigpt4.eval.emotion_wheel import EmotionWheels
from minigpt4.eval.owner_lists import string_to_list

ZERO_SHOT_QUESTION = UNIBENCH_QUESTION  # the question the model is asked (minigpt4/data/prompts.py)

STAGE1_PROMPT = (
    "Please assume the role of an expert in the field of emotions. We provide clues that may be related to the "
    "emotions of the characters. Based on the provided clues, please identify the emotional states of the main "
    "character. The main character is the one with the most detailed clues. Please separate different emotional "
    "categories with commas and output only the clearly identifiable emotional categories in a list format. If none "
    "are identified, please output an empty list. Input: We cannot recognize his emotional state; Output: [] "
    "Input: His emotional state is happy, sad, and angry; Output: [happy, sad, angry] Input: {reason}; Output: "
)
_GAP = " " * 13  # the owners' prompt keeps the indentation of their source lines
STAGE2_PROMPT = _GAP.join([
    "Please act as an expert in the field of emotions.",
    "We provide a few words to describe the emotions of a character.",
    "Please choose the most likely sentiment from the given candidates: [positive, negative, neutral]",
    "Please direct output answer without analyzing process.",
    "Input: [joyful]; Output: positive",
    "Input: []; Output: neutral",
    "Input: {reason}; Output: ",
])

SAMPLING = {
    "greedy": {"temperature": 0.0},
    "owners": {"temperature": 0.7, "top_p": 0.8, "repetition_penalty": 1.05},
}
MAX_TOKENS = 512
REPLY_PREFIXES = ("输入", "输出", "翻译", "让我们来翻译一下：", "output", "Output", "input", "Input")


def clean_reply(reply: str) -> str:
    """The owners' clean-up of an LLM reply: each known prefix dropped in turn, a colon, newlines."""
    text = reply.strip()
    for prefix in REPLY_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text.strip()
    for colon in (":", "："):
        if text.startswith(colon):
            text = text[len(colon):]
    return text.strip().replace("\n", "").strip()


def stage1_prompt(answer: str) -> str:
    return STAGE1_PROMPT.replace("{reason}", answer)


def stage2_prompt(openset: str) -> str:
    return STAGE2_PROMPT.replace("{reason}", openset)


class LabelExtractor(Protocol):
    name: str
    offline: bool

    def openset(self, answer: str) -> str: ...

    def sentiment(self, openset: str) -> str: ...


@dataclass
class ExtractionConfig:
    """Where the extraction LLM is and how to sample it (config: ``unibench.extraction``)."""

    kind: str = "llm"  # llm | offline_lexicon
    url: str = ""  # OpenAI-compatible base URL, e.g. http://localhost:8000/v1
    model: str = ""  # e.g. Qwen/Qwen2.5-7B-Instruct (the owners' model)
    api_key_env: str = "OPENAI_API_KEY"
    sampling: str = "greedy"  # greedy | owners
    cache_path: str = ""  # JSONL reply cache (default: beside the outputs)
    timeout_s: float = 120.0
    max_retries: int = 4
    concurrency: int = 4


class LLMLabelExtractor:
    """Stage 1 / stage 2 through an OpenAI-compatible chat endpoint (module docstring)."""

    offline = False

    def __init__(self, cfg: ExtractionConfig, sleep: Callable[[float], None] | None = None):
        if cfg.sampling not in SAMPLING:
            raise UserError(f"unknown extraction sampling {cfg.sampling!r}; expected one of {', '.join(SAMPLING)}")
        if not cfg.url or not cfg.model:
            raise UserError("label extraction needs an LLM: give its url (e.g. http://localhost:8000/v1) and model "
                            "(e.g. Qwen/Qwen2.5-7B-Instruct), or use the offline lexicon extractor (a different metric)")
        endpoint = EndpointConfig(url=cfg.url, model=cfg.model, api_key_env=cfg.api_key_env, timeout_s=cfg.timeout_s,
                                  max_retries=cfg.max_retries, concurrency=cfg.concurrency, max_tokens=MAX_TOKENS)
        extra = {"sleep": sleep} if sleep is not None else {}
        self.client = OpenAIClient(endpoint, cache_path=cfg.cache_path or None, name="label extractor",
                                   hint="check the extraction url, model and API key variable", **extra)
        self.sampling = SAMPLING[cfg.sampling]
        self.name = f"{cfg.model} ({cfg.sampling})"
        self.concurrency = max(1, cfg.concurrency)

    def _ask(self, prompt: str) -> str:
        return clean_reply(self.client.chat([{"role": "user", "content": prompt}], sampling=self.sampling))

    def openset(self, answer: str) -> str:
        return self._ask(stage1_prompt(answer))

    def sentiment(self, openset: str) -> str:
        return self._ask(stage2_prompt(openset))


_POSITIVE_CLUSTERS = {"happy", "joy", "joyful", "powerful", "peaceful", "genius"}
_NEUTRAL_CLUSTERS = {"surprised"}


class LexiconExtractor:
    """Offline stand-in: the wheel word forms found in the answer, in order (NOT the owners' LLM).

    Stage 2 reads the wheel-1 clusters of the words: any happy-side cluster -> positive, only
    surprise or nothing -> neutral, else negative.
    """

    offline = True
    name = "offline-lexicon-v1"

    def __init__(self, wheels: EmotionWheels):
        self.wheels = wheels
        forms = sorted((f for f in wheels.format_map if f and re.fullmatch(r"[a-z][a-z' -]*", f)), key=len, reverse=True)
        self._pattern = re.compile(r"\b(" + "|".join(re.escape(f) for f in forms) + r")\b")

    def openset(self, answer: str) -> str:
        found = list(dict.fromkeys(self._pattern.findall(answer.lower())))
        return "[" + ", ".join(found) + "]"

    def sentiment(self, openset: str) -> str:
        clusters = {self.wheels.cluster(w, "wheel1") for w in string_to_list(openset)} - {None}
        if clusters & _POSITIVE_CLUSTERS:
            return "positive"
        return "negative" if clusters - _NEUTRAL_CLUSTERS else "neutral"


def make_extractor(cfg: ExtractionConfig | Mapping[str, Any], wheels: EmotionWheels | None = None) -> LabelExtractor:
    if isinstance(cfg, Mapping):
        unknown = set(cfg) - set(ExtractionConfig.__dataclass_fields__)
        if unknown:
            raise UserError(f"unknown extraction config key(s) {sorted(unknown)}; valid: {sorted(ExtractionConfig.__dataclass_fields__)}")
        cfg = ExtractionConfig(**cfg)
    if cfg.kind == "offline_lexicon":
        if wheels is None:
            raise UserError("the offline lexicon extractor needs the emotion-wheel folder")
        return LexiconExtractor(wheels)
    if cfg.kind != "llm":
        raise UserError(f"extraction kind {cfg.kind!r} unknown; use 'llm' or 'offline_lexicon'")
    return LLMLabelExtractor(cfg)


class ExtractionRefused(UserError):
    """The extraction endpoint refuses every request (bad URL, model or key): fix the config."""


@dataclass
class Extraction:
    """Per-clip stage outputs; clips whose request kept failing are in `failed` (name -> reason)."""

    labels: dict[str, str]
    failed: dict[str, str]


def extract_all(items: Mapping[str, str], stage: Callable[[str], str], desc: str, concurrency: int = 1) -> Extraction:
    """Run one stage over ``{name: text}``; a clip whose request fails is counted, the rest finish.

    A refused request (bad URL, model or key) stops the run: every clip would fail the same way.
    """
    labels: dict[str, str] = {}
    failed: dict[str, str] = {}

    def one(name: str) -> tuple[str, str | None, str | None]:
        try:
            return name, stage(items[name]), None
        except EndpointConfigError:
            raise
        except EndpointError as err:
            return name, None, str(err)

    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            for name, label, error in tqdm(pool.map(one, list(items)), total=len(items), desc=desc, disable=None):
                if error is None:
                    labels[name] = label
                else:
                    failed[name] = error
    except EndpointConfigError as err:
        raise ExtractionRefused(str(err)) from None
    return Extraction(labels, failed)
