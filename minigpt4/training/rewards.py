"""Verifiable rewards for stage 3 (GRPO): named functions of one completion, weighted in the config.

    grpo:
      template: plain            # or think_answer, answer, or your own "...{answer}..."
      rewards: {accuracy: 1.0, format: 0.2, length: 0.1}

A reward function takes one `Completion` (the generated text, the answer the template found in
it, the gold label, the dataset's label set, the token counts) and returns a float. The built-in
ones:

- ``accuracy``: 1 if the label parsed from the answer (`eval.parsing.parse_label`, the parser
  evaluation uses, over the dataset's label set) equals the gold label, else 0. A malformed
  answer (the template does not match), an answer naming no label or two labels, or an empty
  one is 0. Needs a closed label set.
- ``format``: 1 if the whole completion matches the template, else 0 (R1-Omni's format reward).
- ``ov_f1``: the set F-score 2PR / (P + R) between the predicted and gold open-vocabulary labels,
  P = |G∩P| / |P|, R = |G∩P| / |G|, after grouping synonyms as the MER2024-OV scorer does
  (`eval.openset.group_map` of the clip's grouping when there is one, else the fixed table
  `eval.parsing.default_vocabulary` that the offline score uses). Empty or malformed: 0.
- ``length``: a soft over-length penalty (DAPO): 0 up to `soft_length` tokens, then falling
  linearly to -1 at `max_new_tokens`; a completion cut off at the limit gets -1.

Add your own by writing a function and naming it, in a module the config lists under
``grpo.reward_modules`` (it is imported before the rewards are looked up)::

    from minigpt4.training.rewards import REWARDS

    @REWARDS.register("mentions_face")
    def mentions_face(c):
        return float("face" in c.text.lower())
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

from minigpt4.common.config import ConfigError
from minigpt4.common.registry import Registry
from minigpt4.eval.openset import group_map
from minigpt4.eval.parsing import default_vocabulary, parse_label, parse_label_set


@dataclass(frozen=True)
class Completion:
    """One sampled answer and everything a reward may judge it by."""

    text: str  # the decoded completion (special tokens removed)
    answer: Optional[str]  # what the template's {answer} holds; None when the template does not match
    label: str | list[str] | None  # the gold label (a list for an open-vocabulary clip)
    labels: tuple[str, ...] = ()  # the dataset's label set; () = open vocabulary
    n_tokens: int = 0  # completion tokens, the end-of-turn token included
    max_new_tokens: int = 0
    truncated: bool = False  # generation hit max_new_tokens before the end-of-turn token
    soft_length: int = 0  # where the length penalty starts
    grouping: Optional[Sequence[Sequence[str]]] = field(default=None, compare=False)  # MER2024-OV synonym groups


RewardFn = Callable[[Completion], float]
REWARDS: Registry[RewardFn] = Registry("reward function")


@REWARDS.register("accuracy")
def accuracy(c: Completion) -> float:
    if not c.labels:
        raise ConfigError("reward 'accuracy' needs a closed label set; an open-vocabulary dataset is rewarded with 'ov_f1'")
    if c.answer is None or c.label is None or not c.answer.strip():
        return 0.0
    return float(parse_label(c.answer, c.labels) == c.label)


@REWARDS.register("format")
def format_reward(c: Completion) -> float:
    return float(c.answer is not None)


@REWARDS.register("ov_f1")
def ov_f1(c: Completion) -> float:
    if c.answer is None or c.label is None:
        return 0.0
    gold_words = [c.label] if isinstance(c.label, str) else list(c.label)
    if c.grouping is not None:  # the owners' rule: every word -> the first word of its clip's group
        mapping = group_map(c.grouping)
        gold = {mapping.get(w, w) for w in parse_label_set(gold_words, {})}
        pred = {mapping.get(w, w) for w in parse_label_set(c.answer, {})}
    else:
        vocabulary = default_vocabulary()
        gold, pred = parse_label_set(gold_words, vocabulary), parse_label_set(c.answer, vocabulary)
    hit = len(gold & pred)
    if not hit:
        return 0.0
    precision, recall = hit / len(pred), hit / len(gold)
    return 2 * precision * recall / (precision + recall)


@REWARDS.register("length")
def length_penalty(c: Completion) -> float:
    if c.truncated or c.n_tokens >= c.max_new_tokens > 0:
        return -1.0
    if c.n_tokens <= c.soft_length or c.max_new_tokens <= c.soft_length:
        return 0.0
    return -(c.n_tokens - c.soft_length) / (c.max_new_tokens - c.soft_length)


# --------------------------------------------------------------------------------- templates
TEMPLATES: dict[str, str] = {
    "plain": "{answer}",  # the whole completion is the answer (what stages 1-2 teach)
    "answer": "<answer>{answer}</answer>",
    "think_answer": "<think>{think}</think><answer>{answer}</answer>",  # R1-Omni
}
_PLACEHOLDER = re.compile(r"\{(\w*)\}")
_FIELDS = ("think", "answer")


def _literal(text: str) -> str:
    """Regex of a template's literal text: whitespace, and none, allowed between words and tags."""
    parts = [p for p in re.split(r"\s+|(?<=>)(?=<)", text) if p]
    return r"\s*".join(re.escape(p) for p in parts)


@dataclass(frozen=True)
class AnswerTemplate:
    """A completion layout, e.g. ``<think>{think}</think><answer>{answer}</answer>``: literal text,
    with whitespace allowed around it, and the ``{think}`` / ``{answer}`` fields (``{answer}`` once).
    `parse` returns the answer field, or None when the completion does not match as a whole."""

    spec: str
    pattern: re.Pattern

    @classmethod
    def from_config(cls, spec: str, key: str = "grpo.template") -> "AnswerTemplate":
        text = TEMPLATES.get(spec, spec)
        fields = _PLACEHOLDER.findall(text)
        choices = f"one of {', '.join(TEMPLATES)}, or text with {{answer}} once (and optionally {{think}})"
        if fields.count("answer") != 1 or any(f not in _FIELDS for f in fields) or len(set(fields)) != len(fields):
            raise ConfigError(f"{key}={spec!r} is not a template the answer parser can match; use {choices}")
        regex, last = [r"^\s*"], 0
        for match in _PLACEHOLDER.finditer(text):
            literal = text[last : match.start()].strip()
            regex += [_literal(literal), r"\s*"] if literal else []
            regex += [rf"(?P<{match.group(1)}>.*?)", r"\s*"]
            last = match.end()
        tail = text[last:].strip()
        regex += [_literal(tail), r"\s*"] if tail else []
        return cls(spec, re.compile("".join(regex) + "$", re.S))

    def parse(self, text: str) -> Optional[str]:
        match = self.pattern.match(text)
        if match is None:
            return None
        answer = match.group("answer").strip()
        return answer if answer else None


# --------------------------------------------------------------------------------- scoring
def check_rewards(rewards: Mapping[str, object], key: str = "grpo.rewards") -> dict[str, float]:
    """{name: weight} with every name registered and every weight a number, else a ConfigError."""
    if not rewards:
        raise ConfigError(f"{key} is empty; list at least one reward with its weight, from: {', '.join(REWARDS.names())}")
    checked = {}
    for name, weight in rewards.items():
        if name not in REWARDS:
            raise ConfigError(f"{key}: unknown reward {name!r}; choose from {', '.join(REWARDS.names())} "
                              "(or register your own in a module listed in grpo.reward_modules)")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ConfigError(f"{key}.{name}: weight {weight!r} is not a number (e.g. {name}: 1.0)")
        checked[str(name)] = float(weight)
    return checked


def score(completions: Sequence[Completion], weights: Mapping[str, float]) -> tuple[list[float], dict[str, list[float]]]:
    """(total reward per completion, each reward function's values per completion)."""
    per_function = {name: [float(REWARDS.get(name)(c)) for c in completions] for name in weights}
    totals = [sum(weights[name] * per_function[name][i] for name in weights) for i in range(len(completions))]
    return totals, per_function
