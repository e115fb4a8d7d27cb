"""Chat-template backbones: tiny random Llama-3-style and Qwen2-style LLMs whose tokenizers carry
the real models' chat templates, through the very collator, model, train.py and eval_emotion.py
the Llama-2 model uses (`model.prompt_format: chat_template`)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import REPO, make_sample, tiny_model_section, tiny_train_config, write_tiny_corpus
from minigpt4.data.collator import IGNORE_INDEX, EmotionCollator
from minigpt4.data.prompts import FEATURE_MARKER, VIDEO_MARKER
from minigpt4.models.builder import build_model
from minigpt4.run_config import OptimConfig
from minigpt4.training.optim import build_optimizer

# style -> (folder, the text the template puts before the user turn, end-of-turn token)
BACKBONES = {
    "llama3": ("llm_llama3", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
    "qwen2": ("llm_qwen2", "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                           "assistant.<|im_end|>\n<|im_start|>user\n", "<|im_end|>"),
}


def chat_cfg(tiny_model_cfg, tiny_dir, style):
    llm = dataclasses.replace(tiny_model_cfg.llm, path=str(tiny_dir / BACKBONES[style][0]))
    return dataclasses.replace(tiny_model_cfg, llm=llm, prompt_format="chat_template")


@pytest.fixture(params=list(BACKBONES))
def chat_model(request, tiny_model_cfg, tiny_dir):
    torch.manual_seed(0)
    return request.param, build_model(chat_cfg(tiny_model_cfg, tiny_dir, request.param))


def test_prompt_is_the_chat_template_with_the_visual_slots_inside(chat_model):
    style, model = chat_model
    tok = model.tokenizer
    collator = EmotionCollator(tok, model.cfg.num_patch_tokens, train=True, prompt_format="chat_template")
    batch = collator([make_sample(target="happy", transcript="I won the game")])
    ids, mask, labels = batch["input_ids"][0], batch["visual_mask"][0], batch["labels"][0]
    assert mask.sum() == model.cfg.num_visual_tokens
    # Text around the slots is the template's rendering of the user turn, markers replaced by slots.
    user = ("<video>" + VIDEO_MARKER + "</video> <feature>" + FEATURE_MARKER + "</feature> The person in video says: "
            "I won the game. [emotion] Which emotion does the person show?")
    expected = tok.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False)
    before, rest = expected.split(VIDEO_MARKER)
    between, after = rest.split(FEATURE_MARKER)
    n_patch = model.cfg.num_patch_tokens
    expected_ids = (tok(before, add_special_tokens=False)["input_ids"] + [tok.pad_token_id] * n_patch
                    + tok(between, add_special_tokens=False)["input_ids"] + [tok.pad_token_id] * 4
                    + tok(after, add_special_tokens=False)["input_ids"])
    prompt_len = len(expected_ids)
    assert ids[:prompt_len].tolist() == expected_ids
    assert tok.decode(ids[: ids.tolist().index(tok.pad_token_id)]) == BACKBONES[style][1] + "<video>"
    if style == "llama3":
        assert ids.tolist().count(tok.bos_token_id) == 1  # the template's BOS only, no second one
    # Loss on the answer and the template's end-of-turn token only.
    end_id = tok.convert_tokens_to_ids(BACKBONES[style][2])
    assert labels[labels != IGNORE_INDEX].tolist() == tok("happy", add_special_tokens=False)["input_ids"] + [end_id]
    assert model.stop_ids()[0] == end_id


def test_a_chat_backbone_learns_and_stops_at_its_end_of_turn_token(chat_model):
    style, model = chat_model
    collate = EmotionCollator(model.tokenizer, model.cfg.num_patch_tokens, train=True, prompt_format="chat_template")
    samples = [make_sample(target="happy", seed=1), make_sample(target="sad", seed=2, image=False)]
    optimizer = build_optimizer(model, OptimConfig(warmup_lr=1e-2))
    model.train()
    for _ in range(25):
        model(collate(samples)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    generate = EmotionCollator(model.tokenizer, model.cfg.num_patch_tokens, train=False, prompt_format="chat_template")
    # Without the right stop token the answer would run on for all 8 new tokens.
    assert model.generate(generate(samples), max_new_tokens=8) == ["happy", "sad"]


def test_chat_template_errors_name_the_fix(tiny_model, tiny_model_cfg, tiny_dir):
    with pytest.raises(ValueError, match="has no chat template.*prompt_format=llama2_inst"):
        EmotionCollator(tiny_model.tokenizer, 4, train=True, prompt_format="chat_template")  # Llama-2 style: none
    qwen = build_model(chat_cfg(tiny_model_cfg, tiny_dir, "qwen2"))
    with pytest.raises(ValueError, match="protocol 'release'.*prompt_format=llama2_inst"):
        EmotionCollator(qwen.tokenizer, 4, train=False, protocol="release", prompt_format="chat_template")
    with pytest.raises(ValueError, match="model.prompt_format must be one of llama2_inst, chat_template"):
        dataclasses.replace(tiny_model_cfg, prompt_format="chatml")


@pytest.mark.parametrize("config, counts", [
    ("emotion_llama3.yaml", {"llm_base": 8_030_261_248, "lora": 27_262_976, "trainable": 68_702_208}),
    ("emotion_qwen2.yaml", {"llm_base": 7_615_616_512, "lora": 20_185_088, "trainable": 56_444_416}),
])
def test_real_size_chat_backbones_on_the_meta_device(config, counts):
    from minigpt4.tools.inspect_model import inspect_command

    report = inspect_command(["--cfg-path", str(REPO / "minigpt4/configs/models" / config), "--meta"])
    assert {k: report["parameters"][k] for k in counts} == counts
    assert report["token_layout"]["visual_tokens_per_clip"] == 260


@pytest.mark.slow
@pytest.mark.parametrize("style", ["qwen2"])  # the backbone furthest from Llama-2 (no BOS, system turn, biases)
def test_train_and_evaluate_a_chat_backbone_end_to_end(style, tiny_dir, tmp_path):
    """train.py then eval_emotion.py, as a user runs them. Five clips, one per label, told apart by
    their inputs: the model must memorise them and eval_emotion.py must read every label back from
    generated text that stops at the template's end-of-turn token. The DFEW label set is outside
    MERR, so training asks the evaluation's question too (`prompts.instruction_for`). Generalisation
    to unseen clips is measured by `python -m minigpt4.demo --backbone qwen2` (docs/results.md)."""
    corpus = write_tiny_corpus(tmp_path / "corpus", n=6)
    lines = sorted(line for split in ("train", "val", "test") for line in (corpus / f"{split}.txt").read_text().splitlines()
                   if not line.endswith("worried"))  # not a DFEW label
    for split in ("train", "val", "test"):
        (corpus / f"{split}.txt").write_text("\n".join(lines) + "\n")
    llm = [f"model.llm.path={tiny_dir / BACKBONES[style][0]}", "model.prompt_format=chat_template"]
    train_cfg = tiny_train_config(tmp_path / "train.yaml", tiny_dir, corpus, tmp_path / "run", tasks=["emotion"],
                                  max_epochs=1, iters_per_epoch=45, batch_size=5,
                                  optim={"init_lr": 1e-2, "min_lr": 1e-3, "warmup_lr": 1e-3, "warmup_steps": 2})
    dfew = ["datasets.tiny.label_set=dfew", "val_datasets.tiny_val.label_set=dfew",
            "run.drop_val_clips_from_train=false"]  # memorisation: it validates on its training clips
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "train.py", "--cfg-path", str(train_cfg), "--options", *llm, *dfew], cwd=REPO,
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    eval_cfg = tmp_path / "eval.yaml"
    eval_cfg.write_text(yaml.safe_dump({
        "model": {**tiny_model_section(tiny_dir), "checkpoint": str(tmp_path / "run/best/trainable.safetensors")},
        "datasets": {"tiny_test": {"reader": "merr", "annotation": str(corpus / "test.txt"), "label_set": "dfew",
                                   "transcripts": str(corpus / "transcripts.csv"), "frames": str(corpus / "frames"),
                                   "tasks": ["emotion"]}},
        "run": {"output_dir": str(tmp_path / "eval"), "device": "cpu", "num_workers": 0, "batch_size": 8},
    }))
    done = subprocess.run([sys.executable, "eval_emotion.py", "--cfg-path", str(eval_cfg), "--dataset", "tiny_test",
                           "--options", *llm], cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "eval/tiny_test/predictions.jsonl").read_text().splitlines()]
    assert len(records) == 5 and sum(r["answer"] == r["label"] for r in records) >= 4, records  # bare labels: stopped
    metrics = json.loads((tmp_path / "eval/tiny_test/metrics.json").read_text())["metrics"]
    assert metrics["n"] == 5 and metrics["weighted_f1"] >= 0.7, metrics
