"""Fast generation gives today's answers: the preallocated KV cache and LoRA merged for evaluation
(tiny random weights, long answers so every decode step and cache position is exercised)."""

from __future__ import annotations

import pytest
import torch

from conftest import make_sample
from minigpt4.data.collator import EmotionCollator
from minigpt4.models.builder import merged_lora


def generation_batch(model, samples):
    return EmotionCollator(model.tokenizer, model.cfg.num_patch_tokens, train=False)(samples)


SAMPLES = [
    dict(seed=7, transcript="a much longer transcript that makes this prompt the longest of all"),
    dict(seed=8, image=False),
    dict(seed=9, feature_present=(False, False, False), transcript=""),
]


@pytest.fixture()
def model_with_lora(tiny_model):
    """The tiny model with a non-zero LoRA update (peft initialises B to zero, which would merge nothing)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in tiny_model.llama_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return tiny_model.eval()


@pytest.mark.parametrize("rows", [[0, 1, 2], [0], [2]])
def test_preallocated_cache_answers_equal_the_dynamic_cache(model_with_lora, rows):
    batch = generation_batch(model_with_lora, [make_sample(**SAMPLES[r]) for r in rows])
    dynamic = model_with_lora.generate(batch, max_new_tokens=60, kv_cache="dynamic")
    preallocated = model_with_lora.generate(batch, max_new_tokens=60, kv_cache="preallocated")
    assert preallocated == dynamic
    assert all(len(a.split()) > 5 for a in dynamic)  # long answers: the cache fills well past the prompt


def test_preallocated_cache_with_beams(model_with_lora):
    batch = generation_batch(model_with_lora, [make_sample(**s) for s in SAMPLES[:2]])
    kw = dict(max_new_tokens=12, num_beams=3)
    assert model_with_lora.generate(batch, kv_cache="preallocated", **kw) == model_with_lora.generate(
        batch, kv_cache="dynamic", **kw)


def test_unknown_kv_cache_is_refused(model_with_lora):
    batch = generation_batch(model_with_lora, [make_sample(seed=1)])
    with pytest.raises(ValueError, match="kv_cache 'dynamc' is unknown"):
        model_with_lora.generate(batch, kv_cache="dynamc")


def test_merged_lora_gives_the_same_answers_and_restores_the_weights(model_with_lora):
    batch = generation_batch(model_with_lora, [make_sample(**s) for s in SAMPLES])
    before = {k: v.clone() for k, v in model_with_lora.llama_model.state_dict().items()}
    unmerged = model_with_lora.generate(batch, max_new_tokens=40)
    with merged_lora(model_with_lora):
        q = model_with_lora.llama_model.get_base_model().model.layers[0].self_attn.q_proj
        assert not torch.equal(q.base_layer.weight, before[next(k for k in before if "layers.0.self_attn.q_proj.base_layer.weight" in k)])
        merged = model_with_lora.generate(batch, max_new_tokens=40)
    assert merged == unmerged
    after = model_with_lora.llama_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-exact: training can go on
    # and the LoRA path is live again (not merged twice): the same answers once more
    assert model_with_lora.generate(batch, max_new_tokens=40) == unmerged


def test_static_cache_runs_through_generate(model_with_lora):
    """HF's StaticCache (the shape torch.compile needs on a GPU) through the same generate call; in fp32 on
    the tiny model its answers match too (masked unused positions add exact zeros to the softmax)."""
    batch = generation_batch(model_with_lora, [make_sample(**s) for s in SAMPLES])
    assert model_with_lora.generate(batch, max_new_tokens=20, kv_cache="static") == model_with_lora.generate(
        batch, max_new_tokens=20, kv_cache="dynamic")


def test_kv_cache_is_a_checked_config_key():
    from minigpt4.common.config import ConfigError
    from minigpt4.run_config import EvalRunConfig, load_config

    cfg = load_config(EvalRunConfig, None, ["run.kv_cache=dynamic", "run.merge_lora=false"])
    assert cfg.run.kwargs(False)["kv_cache"] == "dynamic" and cfg.run.merge_lora is False
    with pytest.raises(ConfigError, match="kv_cache 'dynamc' is unknown; choose one of preallocated"):
        load_config(EvalRunConfig, None, ["run.kv_cache=dynamc"])
