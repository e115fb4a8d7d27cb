"""EMER judges: an LLM over an OpenAI-compatible API, or an offline lexical stand-in.

The published EMER numbers (Clue Overlap, Label Overlap, 1-10) come from gpt-3.5-turbo-16k at
temperature 0; any other judge model gives a *different* number, so reports always carry the
judge model. `HTTPJudge` talks to any chat-completions endpoint (vLLM, Ollama, OpenAI) through the
shared `minigpt4.common.openai_client`, which retries transient failures with exponential backoff
and caches every reply in a JSONL file keyed by the request, so re-scoring costs nothing and a
judging run that was killed resumes where it stopped (a last line cut short by the kill is
dropped and that judgement asked again). Caches written by older versions, keyed by
``sha256(model + messages)``, are still read.

`OfflineJudge` needs no network and is deterministic, but it measures lexical overlap, not what
an LLM judges: its metrics are named ``clue_overlap_offline`` / ``label_overlap_offline`` and
must never be compared with published numbers.

Prompts (written in the spirit of the EMER / AffectGPT evaluation prompts):

- clue overlap: the judge reads a reference and a predicted explanation of a person's emotion
  (facial, vocal, lexical and contextual clues) and rates how much the emotion-related clues
  overlap, 1 (none) to 10 (all reference clues present, nothing contradictory).
- label overlap: the judge first lists the emotion words of each explanation, then rates the
  overlap of the two lists, counting synonyms as matches, 1 (disjoint) to 10 (identical).

Both ask for a last line ``Score: N``; `extract_score` also accepts ``N/10``, ``N out of 10``
and a lone number, and returns ``None`` for anything else (counted as a judge failure).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Callable, Mapping, Protocol

from minigpt4.common.openai_client import EndpointConfig, EndpointError, OpenAIClient
from minigpt4.eval.parsing import default_vocabulary, normalise_text
from minigpt4.run_config import JudgeConfig  # the schema of run.judge, with the other run configs

SYSTEM_PROMPT = "You are an expert in affective computing who evaluates emotion explanations strictly and consistently."

CLUE_OVERLAP_PROMPT = """Two descriptions explain the emotional state of the same person in a video, citing clues such as facial expressions, body movements, tone of voice, the words spoken and the context.

Reference description:
{reference}

Predicted description:
{prediction}

Compare the emotion-related clues of the predicted description with those of the reference. Rate their overlap on a scale from 1 to 10: 1 means the predicted description shares no emotion-related clue with the reference or contradicts it, 10 means it contains all emotion-related clues of the reference and nothing that contradicts them. Judge the clues, not the writing style or the length.

Explain your judgement in at most two sentences, then write the final line exactly as:
Score: <integer from 1 to 10>"""

LABEL_OVERLAP_PROMPT = """Two descriptions explain the emotional state of the same person in a video.

Reference description:
{reference}

Predicted description:
{prediction}

Step 1: list the emotion words (emotional states of the person, e.g. happy, anxious, angry) that each description attributes to the person.
Step 2: rate the overlap of the two lists on a scale from 1 to 10, counting synonyms (e.g. "joyful" and "happy") as matches: 1 means no emotion in common, 10 means the same emotions.

Answer in this format:
Reference emotions: <comma-separated words>
Predicted emotions: <comma-separated words>
Score: <integer from 1 to 10>"""

PROMPTS: Mapping[str, str] = {"clue_overlap": CLUE_OVERLAP_PROMPT, "label_overlap": LABEL_OVERLAP_PROMPT}


class JudgeError(RuntimeError):
    """The judge cannot be used at all (bad URL, key or model): fix the config, do not retry."""


class Judge(Protocol):
    offline: bool
    name: str

    def score(self, metric: str, prediction: str, reference: str) -> float | None: ...


_SCORE_PATTERNS = (
    re.compile(r"score[\s*:=_-]*(?:is|of)?[\s*:=_-]*(\d+(?:\.\d+)?)", re.I),
    re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b", re.I),
)
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])")


def extract_score(reply: str) -> float | None:
    """The 1-10 score in a judge reply, or ``None`` if there is no single clear one.

    Order: the last ``Score: N``; else the last ``N/10`` / ``N out of 10``; else the only number
    in the reply. Values outside 1-10 are rejected rather than clipped.
    """
    for pattern in _SCORE_PATTERNS:
        hits = pattern.findall(reply or "")
        if hits:
            value = float(hits[-1])
            return value if 1.0 <= value <= 10.0 else None
    numbers = _NUMBER.findall(reply or "")
    if len(numbers) == 1 and 1.0 <= float(numbers[0]) <= 10.0:
        return float(numbers[0])
    return None


def build_messages(metric: str, prediction: str, reference: str) -> list[dict[str, str]]:
    """The chat messages for one judgement (also the cache key material)."""
    try:
        template = PROMPTS[metric]
    except KeyError:
        raise ValueError(f"unknown EMER metric {metric!r}; expected one of {', '.join(PROMPTS)}") from None
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": template.format(reference=reference.strip(), prediction=prediction.strip())},
    ]


def cache_key(model: str, messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps([model, messages], sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _chat_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class HTTPJudge:
    """LLM judge over ``POST {url}/chat/completions`` with retries and an on-disk reply cache."""

    offline = False

    def __init__(self, cfg: JudgeConfig, sleep: Callable[[float], None] = time.sleep,
                 env: Mapping[str, str] | None = None):
        if not cfg.url or not cfg.model:
            raise JudgeError(
                "the EMER LLM judge needs a URL and a model: set EMER_JUDGE_URL (e.g. "
                "http://localhost:8000/v1) and EMER_JUDGE_MODEL, or pass --judge-url/--judge-model, "
                "or use --judge offline for the (different) offline metric"
            )
        if not cfg.cache_path:
            raise JudgeError("HTTPJudge needs cfg.cache_path (a JSONL file for cached replies)")
        self.cfg = cfg
        self.name = cfg.model
        self.url = _chat_url(cfg.url)
        self.cache_path = Path(cfg.cache_path)
        try:  # the shared client keeps the cache: a last line cut short by a killed run is asked again
            self._client = OpenAIClient(
                EndpointConfig(url=cfg.url, model=cfg.model, api_key_env=cfg.api_key_env, timeout_s=cfg.timeout_s,
                               max_retries=cfg.max_retries, backoff_s=cfg.backoff_s, max_tokens=cfg.max_tokens,
                               temperature=0.0),
                cache_path=self.cache_path, name="judge",
                hint=f"check the URL, the model and the key in ${cfg.api_key_env or '(api_key_env is empty)'}",
                env=env, sleep=sleep)
        except EndpointError as err:  # a whole line that is not an entry: the user decides what to do
            raise ValueError(f"{err} to re-judge") from None

    @property
    def n_requests(self) -> int:
        """HTTP requests actually sent (retries included), for reports and tests."""
        return self._client.n_requests

    def _post(self, messages: list[dict[str, str]]) -> str:
        try:
            return self._client.chat(messages)
        except EndpointError as err:
            raise JudgeError(str(err)) from None

    def chat(self, messages: list[dict[str, str]], tag: str = "") -> str:
        """The reply to `messages`, from the cache when this exact request was made before
        (MER2024-OV grouping uses this client too; `tag` is kept for callers, the cache is keyed
        by the request). Caches written before the judge used the shared client keyed a reply by
        `cache_key` (model and messages): such entries are still read."""
        legacy = self._client.cached_reply(cache_key(self.cfg.model, messages))
        if legacy is not None:
            return legacy
        return self._post(messages)

    def reply(self, metric: str, prediction: str, reference: str) -> str:
        """The judge's raw reply to one EMER judgement."""
        return self.chat(build_messages(metric, prediction, reference), metric)

    def score(self, metric: str, prediction: str, reference: str) -> float | None:
        return extract_score(self.reply(metric, prediction, reference))


_STOPWORDS = frozenset(
    "a an the and or but of to in on at by for with from as is are was were be been being it its "
    "this that these those he she they his her their him them i you we my your our me us "
    "has have had do does did not no so very also just than then there here which who whom what "
    "when while where how can could would should will may might into about over after before "
    "person video speaker character".split()
)


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", normalise_text(text)) if w not in _STOPWORDS and len(w) > 2}


def _f1_to_score(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0:
        return 1.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 1.0 + 9.0 * (2 * precision * recall / (precision + recall))


class OfflineJudge:
    """Deterministic lexical judge: overlap F1 of words, mapped linearly to 1-10.

    clue: content words (stopwords removed) of prediction vs reference. label: emotion words
    found by the synonym vocabulary (grouped), ``None`` when the reference names no emotion.
    """

    offline = True
    name = "offline-lexical-v1"

    def __init__(self, vocabulary: Mapping[str, str] | None = None):
        self.vocabulary = dict(vocabulary or default_vocabulary())

    def _emotions(self, text: str) -> set[str]:
        words = re.findall(r"[a-z]+", normalise_text(text))
        return {self.vocabulary[w] for w in words if w in self.vocabulary}

    def score(self, metric: str, prediction: str, reference: str) -> float | None:
        if metric == "clue_overlap":
            pred, ref = _content_words(prediction), _content_words(reference)
        elif metric == "label_overlap":
            pred, ref = self._emotions(prediction), self._emotions(reference)
        else:
            raise ValueError(f"unknown EMER metric {metric!r}; expected one of {', '.join(PROMPTS)}")
        if not ref:
            return None
        return _f1_to_score(len(pred & ref), len(pred), len(ref))


def make_judge(cfg: JudgeConfig | Mapping | None, default_cache: str | Path = "emer_judge_cache.jsonl") -> Judge:
    """`HTTPJudge` or `OfflineJudge` from a config (dataclass or dict); env fills empty fields."""
    if cfg is None:
        cfg = JudgeConfig()
    elif isinstance(cfg, Mapping):
        unknown = set(cfg) - set(JudgeConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown judge config keys {sorted(unknown)}; valid: {sorted(JudgeConfig.__dataclass_fields__)}")
        cfg = JudgeConfig(**cfg)
    if cfg.kind == "offline":
        return OfflineJudge()
    cfg = cfg.resolved()
    if not cfg.cache_path:
        cfg.cache_path = str(default_cache)
    return HTTPJudge(cfg)

