"""The release's evaluation protocol (`protocol: release`): prompt, token ids, slots, generation.

Expected ids are written from the released evaluation's facts (docs/release_protocol.md), not
by calling the code under test: a BOS, then the literal "<s>" (a second BOS), the text up to
<VideoHere>, every visual slot there, then the rest -- <FeatureHere> as text, two spaces before
[emotion] and before [/INST], the transcript as it is.
"""

from __future__ import annotations

import random

import pytest
import torch

from conftest import make_sample
from minigpt4.data.collator import EmotionCollator
from minigpt4.data.labels import LABEL_SETS
from minigpt4.data.prompts import (
    INSTRUCTION_POOLS,
    RELEASE_EMOTION_INSTRUCTION,
    RELEASE_INSTRUCTION_POOLS,
    instruction_for,
    max_new_tokens_for,
    prompt_text,
)

NINE = "Please determine which emotion label in the video represents: happy, sad, neutral, angry, worried, surprise, fear, contempt, doubt."


def _text_ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_release_prompt_string_exact():
    text = prompt_text("I won the game.", "emotion", NINE, "release")
    assert text == (
        "<s>[INST] <video><VideoHere></video> <feature><FeatureHere></feature> The person in video says: "
        "I won the game..  [emotion] " + NINE + "  [/INST]"
    )
    # clean is unchanged: one '.', single spaces, no literal <s>
    assert prompt_text("I won the game.", "emotion", NINE) == (
        "[INST] <video><VideoHere></video> <feature><FeatureHere></feature> The person in video says: "
        "I won the game. [emotion] " + NINE + " [/INST]"
    )


@pytest.mark.parametrize("num_patch_tokens", [4, 256])
def test_release_token_ids(tiny_model, num_patch_tokens):
    tok = tiny_model.tokenizer
    bos, slot = tok.bos_token_id, tok.pad_token_id
    sample = make_sample(transcript="I won the game.")
    sample["instruction"] = NINE
    batch = EmotionCollator(tok, num_patch_tokens, train=False, protocol="release")([sample])
    n_slots = num_patch_tokens + 3 + 1  # patches, MAE, VideoMAE, HuBERT, CLS: 260 at real size
    expected = (
        [bos]
        + _text_ids(tok, "<s>[INST] <video>")
        + [slot] * n_slots
        + _text_ids(tok, "</video> <feature><FeatureHere></feature> The person in video says: I won the game..  [emotion] "
                    + NINE + "  [/INST]")
    )
    ids = batch["input_ids"][0].tolist()
    assert ids == expected
    assert ids[:2] == [bos, bos]
    mask = batch["visual_mask"][0]
    first = 2 + len(_text_ids(tok, "[INST] <video>"))
    assert mask.sum() == n_slots and mask[first:first + n_slots].all()  # one block, at <VideoHere>
    assert n_slots != 260 or num_patch_tokens == 256


def test_release_slots_in_model_order(tiny_model):
    """The model fills the single block with [patches, local, temporal, audio, CLS]."""
    tok = tiny_model.tokenizer
    batch = EmotionCollator(tok, tiny_model.cfg.num_patch_tokens, train=False, protocol="release")([make_sample()])
    tokens, present = tiny_model.encode_visual(batch)
    with torch.no_grad():
        embeds = tiny_model.embed_inputs(batch)
    placed = embeds[0][batch["visual_mask"][0]]
    torch.testing.assert_close(placed, tokens[0][present[0]])
    assert tokens.shape[1] == tiny_model.cfg.num_patch_tokens + 4
    cls = tiny_model.cls_tk_llama_proj(tiny_model.ln_vision(tiny_model.encode_image(batch["images"]))[:, 0])
    torch.testing.assert_close(placed[-1], cls[0])  # the CLS token closes the block


def test_release_missing_feature_has_no_slot(tiny_model):
    tok = tiny_model.tokenizer
    collate = EmotionCollator(tok, 4, train=False, protocol="release")
    batch = collate([make_sample(feature_present=(True, False, True))])
    assert int(batch["visual_mask"].sum()) == 4 + 2 + 1


def test_clean_layout_unchanged(tiny_model):
    tok = tiny_model.tokenizer
    sample = make_sample(transcript="I won the game.")
    ids = EmotionCollator(tok, 4, train=False)([sample])["input_ids"][0].tolist()
    expected = (
        [tok.bos_token_id] + _text_ids(tok, "[INST] <video>") + [tok.pad_token_id] * 4
        + _text_ids(tok, "</video> <feature>") + [tok.pad_token_id] * 4
        + _text_ids(tok, "</feature> The person in video says: I won the game. [emotion] Which emotion does the person show? [/INST]")
    )
    assert ids == expected


def test_release_collator_refuses_training_and_bad_names(tiny_model):
    tok = tiny_model.tokenizer
    with pytest.raises(ValueError, match="clean layout"):
        EmotionCollator(tok, 4, train=True, protocol="release")
    with pytest.raises(ValueError, match="choose one of clean, release"):
        EmotionCollator(tok, 4, train=False, protocol="paper")


def test_one_question_per_task_and_protocol():
    mer, dfew = LABEL_SETS["mer2023"], LABEL_SETS["dfew"]
    assert instruction_for("emotion", mer) == NINE
    assert instruction_for("emotion", dfew).endswith("happy, sad, neutral, angry, surprise, disgust, fear.")
    assert "all possible emotional states" in instruction_for("emotion", ())
    # release: the one nine-label question, whatever the dataset
    for labels in (mer, dfew, ()):
        assert instruction_for("emotion", labels, "release") == NINE == RELEASE_EMOTION_INSTRUCTION
    assert len(RELEASE_INSTRUCTION_POOLS["reason"]) == 5 and RELEASE_INSTRUCTION_POOLS["reason_v2"] == RELEASE_INSTRUCTION_POOLS["reason"]
    assert RELEASE_INSTRUCTION_POOLS["reason"][4].startswith("Could you describe the emotion-related features")
    drawn = {instruction_for("reason_v2", mer, "release", random.Random(i)) for i in range(60)}
    assert drawn == set(RELEASE_INSTRUCTION_POOLS["reason"])
    assert {instruction_for("reason_v2", mer, "clean", random.Random(i)) for i in range(60)} == set(INSTRUCTION_POOLS["reason_v2"])


def test_release_generation_limit():
    assert max_new_tokens_for("release", {"emotion": 16}) == {"emotion": 500, "reason": 500, "reason_v2": 500, "unibench": 500}
    assert max_new_tokens_for("clean", {"emotion": 16}) == {"emotion": 16}


def test_release_generation_stops_at_eos(tiny_model):
    """Greedy with the 500-token limit ends as soon as EOS is produced (forced here at step 3)."""
    from transformers import LogitsProcessor, LogitsProcessorList

    tok = tiny_model.tokenizer
    steps = []

    class EosAtThirdStep(LogitsProcessor):
        def __call__(self, input_ids, scores):
            steps.append(input_ids.shape[1])
            if len(steps) == 3:
                scores[:, tok.eos_token_id] = scores.max() + 100.0
            else:
                scores[:, tok.eos_token_id] = scores.min() - 100.0
            return scores

    batch = EmotionCollator(tok, tiny_model.cfg.num_patch_tokens, train=False, protocol="release")([make_sample()])
    tiny_model.eval()
    limit = max_new_tokens_for("release", {})["emotion"]
    tiny_model.generate(batch, max_new_tokens=limit, logits_processor=LogitsProcessorList([EosAtThirdStep()]))
    assert limit == 500 and len(steps) == 3  # stopped at EOS, far below the limit


def test_release_schedule_hand_values():
    """MiniGPT-v2's scheduler: warm-up, then a cosine whose phase counts from step 0 over all steps."""
    import math

    from minigpt4.run_config import OptimConfig
    from minigpt4.training.optim import learning_rate

    cfg = OptimConfig(init_lr=1e-5, min_lr=1e-6, warmup_lr=1e-6, warmup_steps=1000, schedule="release")
    assert learning_rate(0, 30_000, cfg) == pytest.approx(1e-6)
    assert learning_rate(500, 30_000, cfg) == pytest.approx(5.5e-6)
    assert learning_rate(1000, 30_000, cfg) == pytest.approx(1e-6 + 9e-6 * 0.5 * (1 + math.cos(math.pi / 30)))
    assert learning_rate(15_000, 30_000, cfg) == pytest.approx(5.5e-6)
    assert learning_rate(1000, 30_000, OptimConfig(init_lr=1e-5, min_lr=1e-6, warmup_lr=1e-6)) == pytest.approx(1e-5)


@pytest.mark.parametrize("stage", ["stage1_coarse", "stage2_fine"])
def test_release_train_configs_load(stage):
    from minigpt4.run_config import load_train_config

    cfg = load_train_config(f"train_configs/release/emotion_llama_{stage}.yaml")
    assert cfg.run.optim.max_grad_norm == 0.0 and cfg.run.optim.schedule == "release"
    assert all(d.protocol == "release" for d in cfg.datasets.values())
    assert cfg.run.batch_size == 1 and cfg.model.dtype == "fp16"
    tasks = next(iter(cfg.datasets.values())).tasks
    assert tasks == (["emotion", "reason"] if stage == "stage1_coarse" else ["reason_v2"])


def test_bad_protocol_and_schedule_names_are_config_errors():
    from minigpt4.common.config import ConfigError
    from minigpt4.run_config import load_train_config

    with pytest.raises(ConfigError, match="choose one of cosine_after_warmup, release"):
        load_train_config("train_configs/release/emotion_llama_stage1_coarse.yaml", ["run.optim.schedule=step"])


def test_release_dataset_uses_release_pools(tmp_path):
    from conftest import write_tiny_corpus
    from minigpt4.data.config import DatasetConfig
    from minigpt4.data.datasets import build_dataset

    corpus = write_tiny_corpus(tmp_path / "c", dim=32)
    base = dict(reader="merr", annotation=str(corpus / "train.txt"), captions=str(corpus / "coarse.json"),
                transcripts=str(corpus / "transcripts.csv"), frames=str(corpus / "frames"), label_set="mer2023",
                tasks=["emotion", "reason"])
    release = build_dataset(DatasetConfig(**base, protocol="release"), train=True)
    assert {release.instruction("reason", i) for i in range(200)} == set(RELEASE_INSTRUCTION_POOLS["reason"])
    assert {release[i]["instruction"] for i in range(0, len(release), 2)} == {NINE}
    with pytest.raises(ValueError, match="choose one of clean, release"):
        build_dataset(DatasetConfig(**base, protocol="paper"), train=True)


@pytest.mark.slow
def test_eval_emotion_release_protocol_end_to_end(tiny_dir, tmp_path):
    """`eval_emotion.py --protocol release`: release questions, 500-token limit, both parses reported."""
    import json

    from test_eval_emotion import run_script, write_config, write_tiny_dataset

    data = write_tiny_dataset(tmp_path / "data", n=4)
    cfg = write_config(tmp_path / "eval.yaml", tiny_dir, data, tmp_path / "out")
    proc = run_script("--cfg-path", str(cfg), "--dataset", "synthetic", "--protocol", "release", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out/synthetic"
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert "weighted_f1" in metrics and "weighted_f1_release_parse" in metrics
    assert "accuracy_release_parse" in proc.stdout  # the printed summary shows both parses
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert {r["instruction"] for r in records} == {NINE}
    assert "protocol: release" in (out / "config.yaml").read_text()

    bad = run_script("--cfg-path", str(cfg), "--dataset", "synthetic", "--protocol", "paper")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: unknown protocol 'paper'; choose one of clean, release"]
