"""Turn free-text model answers into labels, without ever guessing.

Single-label rule (`parse_label`), applied to the lower-cased answer:

1. The answer is cut into sentences (newlines and ``. ! ?``), and each sentence into clauses
   (``, ; :``). Words are mapped to labels: a word that *is* one of `labels` maps to itself,
   otherwise `synonyms` maps word forms to a label (``happiness -> happy``, ``surprised ->
   surprise``); a synonym whose target is not in `labels` is ignored.
2. A label mention preceded, within the same clause and at most three words earlier, by a
   negation (``not``, ``no``, ``never``, ``isn't`` ...) is dropped: ``happy, not sad`` -> happy.
3. The **last sentence that mentions any label decides** (reasoning answers conclude with
   the label; one-word answers are a one-sentence case). If that sentence mentions exactly one
   distinct label, that is the answer. If it mentions two or more different labels
   (``happy or sad``, or an echo of the whole label list) the answer is **ambiguous and
   invalid**: we never pick one for the model.
4. No label anywhere -> ``None``. Callers count ``None`` as an invalid answer (a reserved
   class that can never be correct); it is never mapped to a real class.

Multi-label rule (`parse_label_set`, MER2024-OV, open vocabulary): the answer (after the last
``:`` if it has one, e.g. ``Emotions: happy, excited``) is split on ``, ; / & and or`` and
newlines; filler words (``a bit``, ``very``, ``seems`` ...) are removed; every known emotion word
is mapped to its synonym group; an item with no known word is kept as its normalised text, so
unmatched predictions still count in |P| and lower accuracy instead of vanishing. A list-shaped
answer (``[happy, a bit sad]``) is not free text: scoring reads it with the owners' list rule
(`minigpt4.eval.owner_lists.string_to_list`); the official score uses those items as they are,
and only the offline synonym table passes them through this function.

Release rule (`parse_release` / `release_gold`, what the released evaluation script computed,
reported beside the strict parse as ``*_release_parse``):

- answer: first the release's clean-up of generated text (`release_clean_answer`: cut at the
  first ``</s>``, remove ``<s>``, keep what follows the last ``[/INST]``, strip), then the last
  ``split(" ")`` word as it is (no lower-casing, punctuation kept); a word that is not one of the
  dataset's labels counts as ``neutral`` -- so ``happy.``, an empty answer and a label after a
  newline instead of a space (the last word is then ``is<newline>happy``) all score as ``neutral``;
- gold: the release's caption normaliser (the text processor its dataset applies to every
  target; ours is `minigpt4.data.annotations.normalise_text`, which our training targets use too:
  lower-case, ``. ! " ( ) * # : ; ~`` -> spaces, whitespace collapsed, at most 200 words), then
  the last word: ``"Happy."`` -> ``happy``.

Synonyms: the annotation spellings of `minigpt4.data.labels.SYNONYMS` plus `ANSWER_WORD_FORMS`,
the extra word forms that appear in generated sentences (``happily``, ``afraid``, ``nervous``).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Mapping, Sequence

from minigpt4.data.annotations import normalise_text as normalise_caption
from minigpt4.data.labels import SYNONYMS as LABEL_SYNONYMS

# Word forms seen in generated answers, on top of the annotation spellings of
# `minigpt4.data.labels.SYNONYMS` (which are not repeated here). Inflections and close
# synonyms only: a loose table would credit wrong answers.
ANSWER_WORD_FORMS: Mapping[str, str] = {
    # happy
    "happily": "happy", "happier": "happy", "happiest": "happy",
    "joyful": "happy", "joyous": "happy", "glad": "happy",
    "cheerful": "happy", "delighted": "happy",
    # sad
    "sadly": "sad", "sadder": "sad", "saddest": "sad",
    "sorrow": "sad", "sorrowful": "sad", "unhappy": "sad",
    # angry
    "angrily": "angry", "angrier": "angry", "angriest": "angry",
    "furious": "angry", "rage": "angry", "enraged": "angry",
    # neutral
    "neutrality": "neutral", "neutrally": "neutral",
    # worried
    "worrying": "worried", "worriedly": "worried",
    "anxiety": "worried", "nervous": "worried",
    # surprise
    "surprising": "surprise", "surprisingly": "surprise",
    "astonished": "surprise", "amazed": "surprise",
    # fear
    "afraid": "fear", "frightened": "fear",
    "terrified": "fear", "fright": "fear",
    # disgust
    "disgusting": "disgust", "disgustful": "disgust",
    # contempt
    "disdain": "contempt", "scorn": "contempt",
    # doubt
    "doubts": "doubt", "doubting": "doubt",
    "skeptical": "doubt", "sceptical": "doubt",
    # IEMOCAP extras
    "frustrating": "frustrated",
    "exciting": "excited",
}

# Everything `parse_label` knows by default. A word that is itself a label of the dataset always
# wins over this table, so IEMOCAP-6's ``excited`` stays ``excited``.
EMOTION_SYNONYMS: Mapping[str, str] = {**LABEL_SYNONYMS, **ANSWER_WORD_FORMS}

NEGATIONS = frozenset(
    "not no never neither nor without isn't wasn't aren't weren't doesn't don't didn't "
    "hardly cannot can't won't".split()
)
_NEGATION_WINDOW = 3

# Words that carry no emotion in an open-vocabulary list item ("a bit nervous", "seems sad").
_FILLER = frozenset(
    "a an the bit little slightly very somewhat quite rather really extremely mildly mild "
    "some kind sort of also maybe possibly probably perhaps feeling feelings feels feel felt "
    "is are was were be being seems seem seemed looks look looked appears appear appeared "
    "person character speaker he she they him her them his their i think emotion emotions "
    "emotional state states label labels mixed with".split()
)

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SENTENCE_SPLIT = re.compile(r"[\n\r]+|(?<=[.!?])\s+|[.!?]+$")
_CLAUSE_SPLIT = re.compile(r"[,;:()\"]+|\s[-–—]\s")
_ITEM_SPLIT = re.compile(r"[,;/&\n\r]+|\band\b|\bor\b|\bplus\b")


def normalise_text(text: str) -> str:
    """Lower-case, NFKC, typographic apostrophes -> ``'``; the base of every comparison."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _build_lookup(labels: Sequence[str], synonyms: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Token tuple -> label as spelt in `labels`. Labels beat synonyms; multi-word labels work."""
    canonical = {normalise_text(lab).strip(): lab for lab in labels}
    if len(canonical) != len(labels):
        raise ValueError(f"labels contain duplicates after lower-casing: {list(labels)}")
    lookup: dict[tuple[str, ...], str] = {}
    for word, target in synonyms.items():
        target_key = normalise_text(target).strip()
        if target_key in canonical:
            lookup[tuple(_words(normalise_text(word)))] = canonical[target_key]
    for key, lab in canonical.items():  # after synonyms: a label always maps to itself
        lookup[tuple(_words(key))] = lab
    lookup.pop((), None)
    return lookup


def _mentions(clause: str, lookup: Mapping[tuple[str, ...], str], max_len: int) -> list[str]:
    """Labels mentioned in one clause, in order, skipping negated mentions."""
    words = _words(clause)
    found: list[str] = []
    i = 0
    while i < len(words):
        for n in range(min(max_len, len(words) - i), 0, -1):
            label = lookup.get(tuple(words[i : i + n]))
            if label is not None:
                negated = any(w in NEGATIONS for w in words[max(0, i - _NEGATION_WINDOW) : i])
                if not negated:
                    found.append(label)
                i += n
                break
        else:
            i += 1
    return found


def label_mentions(answer: str, labels: Sequence[str], synonyms: Mapping[str, str] | None = None) -> list[list[str]]:
    """Non-negated label mentions per sentence (the raw material of `parse_label`, for debugging)."""
    lookup = _build_lookup(labels, EMOTION_SYNONYMS if synonyms is None else synonyms)
    max_len = max((len(k) for k in lookup), default=1)
    sentences = [s for s in _SENTENCE_SPLIT.split(normalise_text(answer)) if s and s.strip()]
    return [
        [lab for clause in _CLAUSE_SPLIT.split(sentence) for lab in _mentions(clause, lookup, max_len)]
        for sentence in sentences
    ]


def parse_label(answer: str, labels: Sequence[str], synonyms: Mapping[str, str] | None = None) -> str | None:
    """The single label an answer commits to, or ``None`` (invalid). Rule: module docstring.

    `labels` is the dataset's label set (returned spelt as given); `synonyms` maps word forms to
    labels and defaults to `EMOTION_SYNONYMS`.
    """
    if not labels:
        raise ValueError("parse_label needs a non-empty label set")
    for mentioned in reversed(label_mentions(answer, labels, synonyms)):
        if mentioned:
            distinct = set(mentioned)
            return mentioned[0] if len(distinct) == 1 else None
    return None


PARSES = ("strict", "release", "both")
RELEASE_FALLBACK = "neutral"


def check_parse(parse: str) -> str:
    """`parse` if it is one of PARSES, else a ValueError naming the choices."""
    if parse not in PARSES:
        raise ValueError(f"unknown parse {parse!r}; choose one of {', '.join(PARSES)}")
    return parse


def release_clean_answer(text: str) -> str:
    """The release's clean-up of a generated text, in its order: cut at the first ``</s>``,
    remove ``<s>``, keep what follows the last ``[/INST]``, strip surrounding whitespace."""
    text = (text or "").split("</s>")[0].replace("<s>", "")
    return text.split("[/INST]")[-1].strip()


def release_gold(label: str) -> str:
    """The gold label as the release scored it: the last word of the target as its dataset
    normalised it (`minigpt4.data.annotations.normalise_text`, the same normaliser as our targets)."""
    return normalise_caption(str(label)).split(" ")[-1]


def parse_release(answer: str, labels: Sequence[str]) -> str | None:
    """The release's answer parse (module docstring): clean the generated text, then its last
    word if that is a label, else ``neutral``.

    A label set without ``neutral`` has nothing to fall back on: such answers are invalid (None).
    """
    word = release_clean_answer(answer).split(" ")[-1]
    if word in labels:
        return word
    return RELEASE_FALLBACK if RELEASE_FALLBACK in labels else None


def default_vocabulary() -> dict[str, str]:
    """Open-vocabulary synonym groups for MER2024-OV: every known form -> its group name."""
    vocab = {word: target for word, target in EMOTION_SYNONYMS.items()}
    for target in set(EMOTION_SYNONYMS.values()):
        vocab[target] = target
    return vocab


def parse_label_set(answer: str | Iterable[str], vocabulary: Mapping[str, str] | None = None) -> set[str]:
    """The set of emotion groups in an open-vocabulary answer (or a gold list). Rule: module docstring.

    `vocabulary` maps surface words to their synonym group (default: `default_vocabulary()`; ``{}``
    keeps every item as its own words, the raw open set MER2024-OV's per-clip grouping needs).
    Words outside it are kept as their normalised text so they still count as predictions.
    """
    vocab = {normalise_text(k).strip(): v for k, v in (default_vocabulary() if vocabulary is None else vocabulary).items()}
    if isinstance(answer, str):
        text = normalise_text(answer)
        if ":" in text:
            text = text.rsplit(":", 1)[1]
        items = _ITEM_SPLIT.split(text)
    else:
        items = [normalise_text(str(a)) for a in answer]
    groups: set[str] = set()
    for item in items:
        words = _words(item)
        if any(w in NEGATIONS for w in words):
            continue  # "not angry" is not a prediction of anger
        known = [vocab[w] for w in words if w in vocab]
        if known:
            groups.update(known)
            continue
        content = [w for w in words if w not in _FILLER]
        if content:
            groups.add(" ".join(content))
    return groups
