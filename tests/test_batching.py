"""Issue 24: length-grouped micro-batches and selective activation checkpointing change the speed and
memory of a step, never its loss or gradients; a length-grouped run resumes exactly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_sample, tiny_train_config, write_tiny_corpus
from minigpt4.cli.train import main as train_main
from minigpt4.common.config import ConfigError, load_config
from minigpt4.common.distributed import DistInfo
from minigpt4.data.collator import EmotionCollator
from minigpt4.models.builder import build_model, set_activation_checkpointing
from minigpt4.models.config import ModelConfig
from minigpt4.run_config import load_train_config
from minigpt4.training.batching import LengthTable, padding_counts
from minigpt4.training.recipe import build_train_set
from minigpt4.training.sampling import EpochSampler, LengthGroupedBatchSampler, group_by_length
from minigpt4.training.step import forward_backward

CPU = DistInfo(0, 1, 0, torch.device("cpu"))
WORDS = "the person frowns and speaks slowly because the news about the job was bad".split()


def varied_samples(n: int) -> list[dict]:
    """Samples whose prompts and targets differ in length (1 to 14 target words, 0 to 9 transcript words)."""
    return [make_sample(name=f"c{i}", seed=i, target=" ".join(WORDS[: 1 + (5 * i) % 14]),
                        transcript=" ".join(WORDS[: (3 * i) % 10]), image=i % 5 != 0,
                        feature_present=(True, i % 3 != 0, True)) for i in range(n)]


def grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def assert_same_grads(a: dict, b: dict, atol: float) -> None:
    assert a and set(a) == set(b)
    for name in a:
        assert torch.allclose(a[name], b[name], atol=atol, rtol=0), (name, float((a[name] - b[name]).abs().max()))


# ------------------------------------------------------------------------------------- the sampler
def test_length_grouping_keeps_the_epoch_stream_and_shards_it_across_ranks():
    lengths = [(i * 37) % 101 for i in range(50)]
    kwargs = dict(seed=5, epoch=2, group_size=3)
    two = [LengthGroupedBatchSampler(50, 9, 4, lambda idx: [lengths[i] for i in idx], rank=r, world_size=2, **kwargs)
           for r in range(2)]
    batches = [list(s) for s in two]
    assert [len(b) for b in batches] == [9, 9] and all(len(x) == 4 for b in batches for x in b)
    # the multiset of samples is the fixed sampler's epoch stream (the same 72 draws, here chaining 2 permutations)
    stream = EpochSampler(50, 36, seed=5, epoch=2, world_size=2).global_stream().tolist()
    assert sorted(i for b in batches for x in b for i in x) == sorted(stream)
    # within a chunk of 3 micro-batches per rank (24 samples), micro-batches hold neighbours in length order
    chunk = stream[:24]
    ranked = sorted(lengths[i] for i in chunk)
    first = two[0].global_batches()[:6]
    assert sorted(tuple(sorted(lengths[i] for i in b)) for b in first) == sorted(
        tuple(ranked[j:j + 4]) for j in range(0, 24, 4))
    # deterministic per (seed, epoch); another epoch or seed is another order
    assert [list(s) for s in two] == batches
    other = LengthGroupedBatchSampler(50, 9, 4, lambda idx: [lengths[i] for i in idx], seed=5, epoch=3, group_size=3)
    assert other.global_batches() != two[0].global_batches()
    # resuming at micro-batch 4 gives the rest of the same list
    resumed = LengthGroupedBatchSampler(50, 9, 4, lambda idx: [lengths[i] for i in idx], rank=1, world_size=2,
                                        start=4, **kwargs)
    assert list(resumed) == batches[1][4:] and len(resumed) == 5


def test_a_token_budget_caps_the_positions_of_every_micro_batch():
    lengths = [10 + (i * 53) % 90 for i in range(40)]
    sampler = LengthGroupedBatchSampler(40, 12, 4, lambda idx: [lengths[i] for i in idx], seed=1, epoch=0,
                                        group_size=2, token_budget=200, rank=0, world_size=2)
    batches = sampler.global_batches()
    assert len(batches) == 24 and len(list(sampler)) == 12
    assert all(len(b) * max(lengths[i] for i in b) <= 200 for b in batches)
    assert any(len(b) < 4 for b in batches) and any(len(b) == 4 for b in batches)  # long samples go fewer at a time
    assert sampler.global_batches() == batches


def test_grouping_cuts_padding_of_a_wide_length_distribution():
    g = torch.Generator().manual_seed(0)
    lengths = (300 + torch.randint(0, 250, (4096,), generator=g)).tolist()
    stream = torch.randperm(4096, generator=g).tolist()

    def waste(batches):
        positions = sum(len(b) * max(lengths[i] for i in b) for b in batches)
        return 1 - sum(lengths[i] for b in batches for i in b) / positions

    fixed = [stream[i:i + 16] for i in range(0, 4096, 16)]
    grouped = group_by_length(stream, [lengths[i] for i in stream], 16, 64 * 16, g)
    assert waste(fixed) > 0.2 and waste(grouped) < 0.01, (waste(fixed), waste(grouped))


def test_length_table_gives_each_items_collated_length(tiny_dir, tiny_model, tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus", n=24)
    cfg = load_train_config(str(tiny_train_config(tmp_path / "t.yaml", tiny_dir, corpus, tmp_path / "out")))
    train_set, _ = build_train_set(cfg, cfg.model.vision.image_size)
    collator = EmotionCollator(tiny_model.tokenizer, cfg.model.num_patch_tokens, train=True, max_txt_len=64)
    table = LengthTable(train_set, collator)
    lengths = table(list(range(len(train_set))))
    real = [int(collator([train_set[i]])["attention_mask"].sum()) for i in range(len(train_set))]
    assert lengths == real and len(set(lengths)) > 3  # emotion and reason items: different lengths
    assert table.cache  # texts tokenised once


# ------------------------------------------------------------------------------------- equal gradients
def test_length_grouped_micro_batches_give_the_loss_and_gradients_of_one_padded_batch(tiny_model):
    collate = EmotionCollator(tiny_model.tokenizer, tiny_model.cfg.num_patch_tokens, train=True)
    samples = varied_samples(12)
    tiny_model.train()
    big_sum, big_count = forward_backward(tiny_model, [collate(samples)], CPU, reduction="token")
    big = grads(tiny_model)
    lengths = [collate.length(s) for s in samples]
    grouped = group_by_length(list(range(12)), lengths, 3, 12, torch.Generator().manual_seed(0))
    micro = [collate([samples[i] for i in b]) for b in grouped]
    real, positions = padding_counts(micro)
    assert real == sum(lengths) and positions < collate(samples)["attention_mask"].numel()
    acc_sum, acc_count = forward_backward(tiny_model, micro, CPU, reduction="token")
    assert int(acc_count) == int(big_count) and torch.allclose(acc_sum, big_sum, rtol=1e-6)
    assert_same_grads(grads(tiny_model), big, atol=1e-6)


def test_batch_16_equals_16_accumulated_micro_batches_of_1(tiny_model):
    collate = EmotionCollator(tiny_model.tokenizer, tiny_model.cfg.num_patch_tokens, train=True)
    samples = varied_samples(16)
    tiny_model.train()
    big_sum, big_count = forward_backward(tiny_model, [collate(samples)], CPU, reduction="token")
    big = grads(tiny_model)
    one_sum, one_count = forward_backward(tiny_model, [collate([s]) for s in samples], CPU, reduction="token")
    assert int(one_count) == int(big_count) and torch.allclose(one_sum, big_sum, rtol=1e-6)
    assert_same_grads(grads(tiny_model), big, atol=1e-6)


@pytest.mark.parametrize("mode,recomputed", [("every_layer", (0, 1)), ("every_k", (0,)), ("mlp_only", (0, 1))])
def test_activation_checkpointing_recomputes_and_keeps_loss_and_gradients(tiny_model, mode, recomputed):
    collate = EmotionCollator(tiny_model.tokenizer, tiny_model.cfg.num_patch_tokens, train=True)
    batch = collate(varied_samples(4))
    tiny_model.train()
    out = forward_backward(tiny_model, [batch], CPU, reduction="token")
    reference = grads(tiny_model)

    layers = tiny_model.llama_model.get_base_model().get_decoder().layers
    calls: dict[str, int] = {}
    # pre-hooks: the recompute stops as soon as the tensors the backward needs exist again (torch's early stop)
    handles = [module.register_forward_pre_hook(lambda *_, key=key: calls.__setitem__(key, calls.get(key, 0) + 1))
               for i, layer in enumerate(layers)
               for key, module in ((f"attn{i}", layer.self_attn.q_proj), (f"mlp{i}", layer.mlp.gate_proj))]
    set_activation_checkpointing(tiny_model.llama_model, mode, k=2)
    try:
        checkpointed = forward_backward(tiny_model, [batch], CPU, reduction="token")
    finally:
        set_activation_checkpointing(tiny_model.llama_model, "none")
        for handle in handles:
            handle.remove()
    # a checkpointed module runs its forward twice (forward, then again in the backward pass)
    expected = {f"mlp{i}": 2 if i in recomputed else 1 for i in range(len(layers))}
    expected.update({f"attn{i}": 2 if i in recomputed and mode != "mlp_only" else 1 for i in range(len(layers))})
    assert calls == expected
    assert torch.equal(checkpointed[0], out[0])
    assert_same_grads(grads(tiny_model), reference, atol=1e-7)
    with torch.no_grad():  # the wrappers are gone: one forward per module again
        assert not any("forward" in vars(m) for m in tiny_model.llama_model.modules())


def test_checkpointing_keys_old_and_new(tiny_model_cfg):
    assert tiny_model_cfg.activation_checkpointing == "none"
    old = dataclasses.replace(tiny_model_cfg, gradient_checkpointing=True)
    assert old.activation_checkpointing == "every_layer"
    with pytest.raises(ValueError, match="contradicts model.activation_checkpointing: mlp_only"):
        dataclasses.replace(tiny_model_cfg, gradient_checkpointing=True, activation_checkpointing="mlp_only")
    with pytest.raises(ValueError, match="must be one of none, every_layer, every_k, mlp_only"):
        dataclasses.replace(tiny_model_cfg, activation_checkpointing="some")
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(tiny_model_cfg, activation_checkpointing="every_k",
                                            activation_checkpointing_k=2))
    wrapped = [m for m in model.llama_model.modules() if "forward" in vars(m)]
    assert wrapped == [model.llama_model.get_base_model().get_decoder().layers[0]]
    assert set(model.trainable_state_dict()) == set(build_model(tiny_model_cfg).trainable_state_dict())


def test_stage_configs_load_with_their_batching_and_checkpointing():
    for name in ("emotion_llama_stage1_coarse", "emotion_llama_stage2_fine", "emotion_llama_mer2023"):
        cfg = load_train_config(f"train_configs/{name}.yaml")
        assert cfg.run.batching == "length_grouped" and cfg.model.activation_checkpointing == "every_layer", name
    with pytest.raises(ConfigError, match="run.batching='sorted' is unknown"):
        load_train_config("train_configs/emotion_llama_stage2_fine.yaml", ["run.batching=sorted"])
    assert load_config(ModelConfig, "minigpt4/configs/models/emotion_llama.yaml").activation_checkpointing == "none"


# ------------------------------------------------------------------------------------- resume
def test_a_length_grouped_run_resumes_exactly_and_logs_its_padding(tiny_dir, tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus", n=24)
    common = dict(max_epochs=2, iters_per_epoch=3, batch_size=3, grad_accum_steps=2, batching="length_grouped",
                  group_size=2, save_every_steps=2, log_every=1, val_every_epochs=5)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert train_main(["--cfg-path", str(tiny_train_config(tmp_path / "a.yaml", tiny_dir, corpus, straight, **common))]) == 0
    cfg = tiny_train_config(tmp_path / "b.yaml", tiny_dir, corpus, stopped, max_steps=4, **common)
    assert train_main(["--cfg-path", str(cfg)]) == 0
    assert train_main(["--cfg-path", str(cfg), "--resume", "--options", "run.max_steps=null"]) == 0
    lines = {name: [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
             for name, run in (("straight", straight), ("stopped", stopped))}
    assert [r["step"] for r in lines["stopped"]] == [r["step"] for r in lines["straight"]] == list(range(1, 7))
    assert [r["loss"] for r in lines["stopped"]] == pytest.approx([r["loss"] for r in lines["straight"]], abs=1e-6)
    assert [r["padding"] for r in lines["stopped"]] == [r["padding"] for r in lines["straight"]]
    assert all(0.0 <= r["padding"] < 0.5 for r in lines["straight"])
    weights = [load_file(run / "checkpoints" / "step_0000006" / "trainable.safetensors") for run in (straight, stopped)]
    assert set(weights[0]) == set(weights[1])
    for name, value in weights[0].items():  # the same up to float rounding (the checkpoint round trip)
        assert torch.allclose(value, weights[1][name], atol=1e-6, rtol=0), name


def test_bench_batching_reports_less_padding_grouped_and_shipped_configs_that_fit(tmp_path):
    from benchmarks.bench_batching import main as bench_main

    result = bench_main(["--clips", "40", "--items", "800", "--batches", "40", "--tiny-batches", "2",
                         "--json", str(tmp_path / "b.json")])
    by = {(r["lengths"], r["batching"]): r["padding"] for r in result["padding"]}
    for lengths in {key[0] for key in by}:
        assert by[(lengths, "length_grouped")] < 0.05 < by[(lengths, "fixed")], lengths
    assert all(r["fits_24gb"] and r["estimated_gib"] > 15 for r in result["shipped_configs"])
    fixed, grouped = result["tiny_model_epoch"]
    assert grouped["positions"] < fixed["positions"]  # the same samples in fewer positions, the same loss
    assert grouped["epoch_loss"] == pytest.approx(fixed["epoch_loss"], rel=1e-5)
    assert json.loads((tmp_path / "b.json").read_text())["benchmark"] == "batching"


@pytest.mark.slow
def test_two_processes_take_the_length_grouped_micro_batches_of_one_process_with_accumulation(tiny_dir, tmp_path):
    """Rank r takes every other micro-batch of one global list: 2 processes x batch 2 = 1 process
    accumulating 2 micro-batches of 2 (the same chunks of 8 samples when group_size x world_size agree),
    so the logged losses and the all-reduced padding are the same."""
    import subprocess
    import sys

    from conftest import ENV, REPO, free_port

    corpus = write_tiny_corpus(tmp_path / "corpus", n=24)

    def config(name, **run):
        return tiny_train_config(tmp_path / f"{name}.yaml", tiny_dir, corpus, tmp_path / name, max_epochs=1,
                                 iters_per_epoch=3, log_every=1, batch_size=2, batching="length_grouped", **run)

    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                          str(free_port()), "train.py", "--cfg-path", str(config("two", group_size=2))],
                         cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert train_main(["--cfg-path", str(config("one", group_size=4, grad_accum_steps=2))]) == 0
    logs = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("two", "one")}
    assert [r["step"] for r in logs["two"]] == [r["step"] for r in logs["one"]] == [1, 2, 3]
    assert [r["padding"] for r in logs["two"]] == pytest.approx([r["padding"] for r in logs["one"]], abs=1e-6)
    assert [r["loss"] for r in logs["two"]] == pytest.approx([r["loss"] for r in logs["one"]], rel=1e-4)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2 and len(set(summary["rank_weight_checksums"])) == 1
