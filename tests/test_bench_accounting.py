"""Benchmark accounting: the MFU denominator is the published peak; FLOPs and parameters from logical shapes and
target-only logits (hand-computed cases on the tiny architecture)."""

import types

import pytest
import torch

from benchmarks.bench_gpu import TINY_OPTIONS, FlopModel, estimate_memory
from benchmarks.common import published_peak_tflops
from minigpt4.common.config import load_config
from minigpt4.models.builder import build_model, count_parameters, logical_numel
from minigpt4.models.config import ModelConfig


@pytest.mark.parametrize("name, tflops", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0),
    ("NVIDIA GeForce RTX 4090", 165.2), ("NVIDIA A10G", None), ("cpu", None),
])
def test_published_peak_table(name, tflops):
    assert published_peak_tflops(name) == tflops


@pytest.fixture(scope="module")
def tiny_meta_model():
    cfg = load_config(ModelConfig, None, ["llm.path=null", "vision.weights=null", *TINY_OPTIONS])
    return build_model(cfg, meta=True)


def test_flop_model_counts_decoder_head_and_lora_apart(tiny_meta_model):
    flops = FlopModel.of(tiny_meta_model)
    # 2 layers x (q, k, v, o: 64x64 each; gate, up, down: 64x128 each); lm_head 512 x 64; LoRA r=8 on q, v: 2 x (64x8 + 8x64)
    assert flops.llm_linear == 2 * (4 * 64 * 64 + 3 * 64 * 128)
    assert flops.lm_head == 512 * 64
    assert flops.lora == 2 * 2 * (64 * 8 + 8 * 64)
    # one more target token per sample costs the LM head forward + its activation gradient, per sample
    base = flops.train_step(batch=3, seq=40, targets=10, live_eva=False)
    more = flops.train_step(batch=3, seq=40, targets=11, live_eva=False)
    assert more["model"] - base["model"] == 3 * 4 * 512 * 64
    assert more["recompute"] == base["recompute"]  # the head is outside the checkpointed layers


def test_logits_memory_from_target_positions(tiny_meta_model):
    flops = FlopModel.of(tiny_meta_model)
    params = count_parameters(tiny_meta_model)
    every = estimate_memory(params, flops, 128, batch=2, seq=40, checkpointing=True, four_bit=False)
    target = estimate_memory(params, flops, 128, batch=2, seq=40, checkpointing=True, four_bit=False, targets=5)
    assert every["logits_and_loss"] * 2**30 == 2 * 40 * 512 * 14
    assert target["logits_and_loss"] * 2**30 == 2 * 5 * 512 * 14


def test_logical_numel_of_a_packed_4bit_weight():
    packed = torch.zeros(64 * 32 // 2, 1, dtype=torch.uint8)  # how bitsandbytes stores a 64 x 32 nf4 weight
    packed.quant_state = types.SimpleNamespace(shape=torch.Size([64, 32]))
    assert logical_numel(packed) == 64 * 32
    assert logical_numel(torch.zeros(3, 5)) == 15
