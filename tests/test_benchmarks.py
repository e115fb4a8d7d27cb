"""The benchmark scripts run end to end at tiny size and write well-formed results.

Structure and sanity only (positive, finite numbers): no timing thresholds, which would be flaky.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_script(script: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_header(result: dict) -> None:
    assert result["command"].startswith("python benchmarks/")
    assert result["machine"]["torch"] == torch.__version__
    assert result["machine"]["cpu"]
    assert isinstance(result["settings"], dict)


@pytest.mark.slow
def test_bench_gpu_tiny_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = run_script("bench_gpu.py", "--tiny", "--device", "cpu", "--batch-sizes", "1", "2", "--steps", "1",
                      "--warmup", "1", "--gen-tokens", "2", "--matmul-iters", "2", "--peak-tflops", "0.5",
                      "--json", str(out))
    assert "MFU" in proc.stdout and "samples/s" in proc.stdout
    result = json.loads(out.read_text())
    check_header(result)
    assert result["settings"]["tiny"] is True and result["settings"]["text_tokens"] == [24]
    assert positive(result["matmul_peak"]["tflops"])
    assert result["published_peak_tflops"] == 0.5  # --peak-tflops: the MFU denominator, never the measured matmul
    assert result["parameters"]["trainable"] < result["parameters"]["total"]
    train = result["train"]
    # batch sizes x checkpointing (off, on) x EVA (cached, live), every one measured
    assert len(train) == 2 * 2 * 2 and all(r["status"] == "ok" for r in train)
    assert {(r["gradient_checkpointing"], r["eva"]) for r in train} == {(g, e) for g in (False, True)
                                                                        for e in ("cached", "live")}
    for row in train:
        for key in ("seconds_per_step", "samples_per_s", "tokens_per_s", "model_tflops_per_step", "mfu", "hfu",
                    "fraction_of_measured_matmul",
                    "loss", "estimated_memory_gib"):
            assert positive(row[key]), (key, row)
        assert row["peak_memory_gib"] is None  # measured on CUDA only
        assert row["seq_len"] == 1 + result["settings"]["visual_tokens"] + row["text_tokens"]
        assert row["hfu"] >= row["mfu"]
        assert row["mfu"] == pytest.approx(row["achieved_tflops"] / 0.5)
    live = {r["batch_size"]: r["model_tflops_per_step"] for r in train if r["eva"] == "live"}
    cached = {r["batch_size"]: r["model_tflops_per_step"] for r in train if r["eva"] == "cached"}
    assert all(live[b] > cached[b] for b in cached)  # the live EVA forward is counted
    assert len(result["eval"]) == 2 * 2 * 2  # batch sizes x EVA x generation path (the release's, ours)
    assert {r["gen_mode"] for r in result["eval"]} == {"dynamic", "fast"}
    for row in result["eval"]:
        assert row["status"] == "ok" and row["new_tokens"] == 2
        assert positive(row["samples_per_s"]) and positive(row["new_tokens_per_s"])


def test_bench_gpu_estimate_only_real_size(capsys):
    from benchmarks.bench_gpu import main

    result = main(["--estimate-only", "--text-tokens", "1024", "--batch-sizes", "1"])
    assert "COMPUTED, NOT MEASURED" in capsys.readouterr().out
    rows = result["memory_estimate"]
    assert len(rows) == 4 and all(r["seq_len"] == 1 + 260 + 1024 for r in rows)
    assert all(positive(r["total"]) for r in rows)


@pytest.mark.slow
def test_bench_train_step_small(tmp_path):
    out = tmp_path / "train_step.json"
    proc = run_script("bench_train_step.py", "--clips", "6", "--steps", "1", "--warmup", "1", "--batch-size", "2",
                      "--json", str(out))
    assert "bottleneck" in proc.stdout
    result = json.loads(out.read_text())
    check_header(result)
    assert result["settings"]["batch_size"] == 2 and result["settings"]["train_samples"] > 0
    modes = {m["eva"]: m for m in result["modes"]}
    assert set(modes) == {"live", "cached"}
    for name, mode in modes.items():
        stages = mode["seconds_per_step"]
        # forward = the one `model(batch)` call train.py makes; EVA and decoder timed inside it by hooks
        expected = {"load", "collate", "forward", "llm_decoder", "backward", "optimizer"}
        assert set(stages) == expected | ({"eva_encode"} if name == "live" else set())
        assert stages["forward"] > stages["llm_decoder"] + stages.get("eva_encode", 0.0)
        assert all(positive(v) for v in stages.values()), stages
        assert all(positive(v) for v in mode["samples_per_s"].values()), mode["samples_per_s"]
        assert isinstance(mode["loader_is_bottleneck"], bool)
        assert math.isfinite(mode["final_loss"])


def test_bench_eva_cache_small(tmp_path):
    out = tmp_path / "eva_cache.json"
    run_script("bench_eva_cache.py", "--clips", "6", "--max-per-shard", "4", "--tokens", "17", "--width", "32",
               "--passes", "1", "--json", str(out))
    result = json.loads(out.read_text())
    check_header(result)
    rows = {(r["layout"], r["dtype"]): r for r in result["rows"]}
    assert len(rows) == 5 and all(positive(r["read_ms_per_clip"]) and positive(r["mib_per_clip"]) for r in rows.values())
    assert rows[("shards", "bf16")]["files"] == 2 + 1 and rows[("per-clip .npy", "fp32")]["files"] == 6  # 2 tars + manifest
    assert rows[("per-clip .npy", "fp16")]["mib_per_clip"] < rows[("per-clip .npy", "fp32")]["mib_per_clip"]


def test_oom_is_reported_not_raised():
    from benchmarks.bench_gpu import run_guarded

    freed = []

    def out_of_memory() -> dict:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    result = run_guarded(out_of_memory, lambda: freed.append(True))
    assert result["status"] == "oom" and "out of memory" in result["error"] and freed == [True]
    assert run_guarded(lambda: {"x": 1.0}, lambda: None) == {"status": "ok", "x": 1.0}
    with pytest.raises(RuntimeError, match="shape"):
        run_guarded(lambda: (_ for _ in ()).throw(RuntimeError("bad shape")), lambda: None)


def test_memory_estimate_orders_the_options():
    """Checkpointing and 4-bit weights each lower the computed estimate; 4-bit only touches weights."""
    from benchmarks.bench_gpu import FlopModel, estimate_table
    from minigpt4.models.builder import build_model
    from minigpt4.models.config import ModelConfig

    model = build_model(ModelConfig(), meta=True)
    rows = estimate_table(model, FlopModel.of(model), batch=1, seq=1285)
    by = {(r["weights"], r["gradient_checkpointing"]): r for r in rows}
    assert by[("bf16", True)]["total"] < by[("bf16", False)]["total"]
    assert by[("nf4 (QLoRA)", True)]["total"] < by[("bf16", True)]["total"]
    assert by[("nf4 (QLoRA)", True)]["activations"] == by[("bf16", True)]["activations"]
    assert 12 < by[("bf16", True)]["llm_weights"] < 13  # 6.74 B parameters x 2 bytes
    assert by[("bf16", True)]["fits_24gb"]
    # logits at the target positions only (964 of 1285 here) cost less than at every position
    target_only = {(r["weights"], r["gradient_checkpointing"]): r
                   for r in estimate_table(model, FlopModel.of(model), batch=1, seq=1285, targets=964)}
    assert target_only[("bf16", True)]["logits_and_loss"] * 1285 == pytest.approx(by[("bf16", True)]["logits_and_loss"] * 964)


@pytest.mark.slow
def test_bench_real_size_tiny(tmp_path):
    """The real-size script's code path at tiny size: every phase runs and records time and peak memory."""
    out = tmp_path / "real_size.json"
    proc = run_script("bench_real_size.py", "--tiny", "--gen-tokens", "3", "--json", str(out))
    assert "train_step_ckpt_on" in proc.stdout
    result = json.loads(out.read_text())
    check_header(result)
    assert result["settings"]["seq_len"] == 1 + result["settings"]["visual_tokens"] + 24
    phases = {p["phase"]: p for p in result["phases"]}
    assert list(phases) == ["build", "train_step_ckpt_on", "train_step_ckpt_off", "answer"]
    for phase in phases.values():
        assert phase["status"] == "ok"
        assert positive(phase["seconds"]) and positive(phase["peak_memory_gib"])
        assert phase["peak_memory_gib"] >= phase["rss_gib"] * 0.99  # a peak, not below the current RSS
    assert phases["build"]["dtypes"] == ["bfloat16", "float32"]  # frozen bf16, trainables fp32, nothing else
    assert phases["train_step_ckpt_on"]["gradient_checkpointing"] is True
    for name in ("train_step_ckpt_on", "train_step_ckpt_off"):
        assert math.isfinite(phases[name]["loss"]) and positive(phases[name]["grad_norm"])
        assert positive(phases[name]["estimated_gib"])
    assert 1 <= phases["answer"]["new_tokens"] <= 3  # generate from embeddings returns the new tokens only
    assert result["memory_check"]["available_gib"] > result["memory_check"]["estimate_gib"]["on"]["total"]


def test_bench_real_size_refuses_without_memory(tmp_path, capsys):
    """Short of memory (here: an impossible margin) it stops with one error line before building anything.
    In-process through the script's main: SystemExit(message) is what Python prints to stderr, exit status 1."""
    from benchmarks.bench_real_size import main

    out = tmp_path / "real_size.json"
    with pytest.raises(SystemExit) as stopped:
        main(["--tiny", "--margin-gib", "1000000", "--json", str(out)])
    assert str(stopped.value.code).startswith("error: not enough memory for the tiny model")
    assert "peak" not in capsys.readouterr().out and not out.exists()  # no phase ran


def test_forward_under_bf16_autocast_with_bf16_weights():
    """The GPU training setting (bf16 frozen weights, fp32 projections, bf16 autocast) runs; here on a CPU."""
    from benchmarks.bench_gpu import build_random_model, synthetic_batch
    from benchmarks.bench_real_size import model_config, parse_args

    cfg = model_config(parse_args(["--tiny"]))
    torch.manual_seed(0)
    model = build_random_model(cfg, torch.device("cpu")).train()
    batch = synthetic_batch(cfg, model.llama_model.config.vocab_size, 2, 24, 12, True, torch.device("cpu"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert model.llama_proj.weight.dtype == torch.float32 and model.llama_proj.weight.grad is not None
    assert model.llama_proj.weight.grad.abs().sum() > 0
