"""The EVA token cache (`python -m minigpt4.features eva-cache`): the tiny model's loss with cached
tokens equals its loss with the live tower, the shards round-trip bf16 bit for bit, two ranks
write together what one writes alone, a re-run resumes, and bad input is one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml

from conftest import free_port, tiny_model_section, tiny_train_config, write_tiny_corpus
from minigpt4.cli.train import main as train_main
from minigpt4.common.distributed import DistInfo
from minigpt4.common.media import load_frame
from minigpt4.data.annotations import AnnotationError
from minigpt4.data.collator import EmotionCollator
from minigpt4.data.config import DatasetConfig
from minigpt4.data.datasets import build_dataset
from minigpt4.data.shards import write_shards
from minigpt4.features import eva_cache as eva_cache_module
from minigpt4.features.__main__ import main as features_main
from minigpt4.features.eva_cache import build_eva_cache, find_frames, load_frame_tower
from minigpt4.models.builder import build_model
from minigpt4.models.eva_cache import (MANIFEST_NAME, EvaCacheError, EvaTokenShards, decode_tokens, encode_tokens,
                                       shard_files)
from minigpt4.models.vision_towers import frame_tokens, frozen_frame_tower
from minigpt4.processors import EvaImageTransform
from minigpt4.setup_check import Need, check_need

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_tiny_corpus(tmp_path_factory.mktemp("eva_corpus"), n=12)


@pytest.fixture(scope="module")
def model_yaml(tiny_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("eva_cfg") / "model.yaml"
    path.write_text(yaml.safe_dump(tiny_model_section(tiny_dir)))
    return path


def _cache(corpus, model_yaml, out, *extra) -> Path:
    code = features_main(["eva-cache", "--frames", str(corpus / "frames"), "--out", str(out),
                          "--cfg-path", str(model_yaml), "--batch-size", "3", *extra])
    assert code == 0
    return out


def _dataset_cfg(corpus, **changes) -> DatasetConfig:
    return DatasetConfig(reader="merr", annotation=str(corpus / "train.txt"), frames=str(corpus / "frames"),
                         transcripts=str(corpus / "transcripts.csv"), captions=str(corpus / "coarse.json"),
                         label_set="mer2023", tasks=["emotion", "reason"], **changes)


def _loss(model, cfg, dataset_cfg) -> float:
    """The training loss of the dataset's first 6 items in one batch (live EVA when the dataset
    gives pixels, cached tokens when it gives image_embeds)."""
    dataset = build_dataset(dataset_cfg, EvaImageTransform(cfg.vision.image_size), train=True, seed=1,
                            feature_layout=cfg.feature_layout, vision=cfg.vision)
    collate = EmotionCollator(model.tokenizer, cfg.num_patch_tokens, train=True, max_txt_len=64)
    batch = collate([dataset[i] for i in range(6)])
    with torch.no_grad():
        return float(model(batch).loss)


def test_cached_and_live_eva_give_the_same_loss(corpus, model_yaml, tiny_model_cfg, tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_model_cfg).eval()
    live = _loss(model, tiny_model_cfg, _dataset_cfg(corpus))
    exact = _cache(corpus, model_yaml, tmp_path / "fp32", "--dtype", "fp32")
    bf16 = _cache(corpus, model_yaml, tmp_path / "bf16")  # the default
    fp16 = _cache(corpus, model_yaml, tmp_path / "fp16", "--dtype", "fp16")
    # fp32: the very tokens the model computes (the cache ran 3 frames a batch, the live pass 6 at once)
    assert _loss(model, tiny_model_cfg, _dataset_cfg(corpus, eva_cache=str(exact))) == live
    # bf16 rounds each token value by up to 2^-9 relative, fp16 by 2^-12; measured on this batch:
    # 1.9e-5 and 1.8e-6 relative change of the loss (2026-12-02), asserted with a 50x margin. Not
    # equal: the cache really holds rounded values.
    cached_bf16 = _loss(model, tiny_model_cfg, _dataset_cfg(corpus, eva_cache=str(bf16)))
    cached_fp16 = _loss(model, tiny_model_cfg, _dataset_cfg(corpus, eva_cache=str(fp16)))
    assert cached_bf16 == pytest.approx(live, rel=1e-3) and cached_fp16 == pytest.approx(live, rel=1e-4)
    assert cached_bf16 != live and cached_fp16 != live

    # a cache of the wrong frames (each clip's tokens under another clip's name) is far off
    wrong = tmp_path / "wrong_frames"
    wrong.mkdir()
    names = sorted(p.name for p in (corpus / "frames").iterdir())
    for name, other in zip(names, names[3:] + names[:3]):  # clip_0000 gets clip_0003's face (another label)
        (wrong / name).write_bytes((corpus / "frames" / other).read_bytes())
    bad = tmp_path / "bad"
    features_main(["eva-cache", "--frames", str(wrong), "--out", str(bad), "--cfg-path", str(model_yaml)])
    wrong_loss = _loss(model, tiny_model_cfg, _dataset_cfg(corpus, eva_cache=str(bad)))
    assert abs(wrong_loss - live) > 10 * abs(cached_bf16 - live)  # measured: 0.054 against 0.00018


def test_bf16_tokens_round_trip_bit_for_bit(corpus, model_yaml, tiny_model_cfg, tmp_path):
    values = torch.randn(17, 32) * torch.logspace(-30, 30, 32)  # tiny to huge magnitudes
    values[0, :4] = torch.tensor([float("inf"), -0.0, 1e-40, float("nan")])  # what the format must not mangle
    for dtype, torch_dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        stored = decode_tokens(encode_tokens(values, dtype), "test")
        assert stored.dtype == torch_dtype
        assert torch.equal(stored.view(torch.int16 if dtype != "fp32" else torch.int32),
                           values.to(torch_dtype).view(torch.int16 if dtype != "fp32" else torch.int32))

    cache = EvaTokenShards(_cache(corpus, model_yaml, tmp_path / "bf16", "--max-per-shard", "5"))
    assert len(cache) == 12 and len(cache.manifest["shards"]) == 3 and cache.manifest["token_shape"] == [17, 32]
    tower = frozen_frame_tower(tiny_model_cfg.vision, torch.float32)
    transform = EvaImageTransform(tiny_model_cfg.vision.image_size)
    frames, _ = find_frames(corpus / "frames")
    for name in ("clip_0000", "clip_0007"):
        pixels = transform(load_frame(frames[name], "first"))
        live = frame_tokens(tower, pixels[None])[0].to(torch.bfloat16)
        assert torch.equal(cache.read(name).view(torch.int16), live.view(torch.int16))

    # the whole-clip shards of a dataset carry the bf16 tokens unchanged too
    dataset = build_dataset(_dataset_cfg(corpus, eva_cache=str(tmp_path / "bf16")), None)
    write_shards(dataset, tmp_path / "clips", max_per_shard=4)
    sharded = build_dataset(DatasetConfig(reader="shards", shards=str(tmp_path / "clips"), tasks=["emotion", "reason"],
                                          label_set="mer2023"), None)
    assert torch.equal(sharded[0]["image_embeds"].view(torch.int16), dataset[0]["image_embeds"].view(torch.int16))


def test_two_ranks_write_together_what_one_writes_alone(corpus, model_yaml, monkeypatch, tmp_path):
    """Two ranks as two threads meeting at a thread barrier (torchrun itself: the slow test below)."""
    meet = threading.Barrier(2, timeout=120)
    monkeypatch.setattr(eva_cache_module, "barrier", lambda info: meet.wait())
    tower = load_frame_tower(model_yaml)
    frames, _ = find_frames(corpus / "frames")
    single = build_eva_cache(frames, tmp_path / "one", tower, max_per_shard=4, progress=False)
    reports = {}

    def run(rank: int) -> None:
        info = DistInfo(rank, 2, rank, torch.device("cpu"))
        reports[rank] = build_eva_cache(frames, tmp_path / "two", tower, max_per_shard=4, info=info, progress=False)

    threads = [threading.Thread(target=run, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(reports) == [0, 1]
    one, two = EvaTokenShards(tmp_path / "one"), EvaTokenShards(tmp_path / "two")
    assert sorted(one.index) == sorted(two.index) == sorted(frames) and sorted(single.written) == sorted(frames)
    assert sorted(reports[0].written) == sorted(frames)  # rank 0's is the merged report
    assert 0 < len(reports[1].written) < len(frames)
    assert {p.name.split("-")[1] for p in shard_files(tmp_path / "two")} == {"r0of2", "r1of2"}  # rank in the name
    for name in frames:
        assert torch.equal(one.read(name).view(torch.int16), two.read(name).view(torch.int16))
    merged = json.loads((tmp_path / "two" / "eva_cache_report.json").read_text())
    assert sorted(merged["written"]) == sorted(frames)
    assert not list((tmp_path / "two" / ".ranks").glob("*.json"))  # the parts were merged and removed


def test_rerun_keeps_finished_shards_and_encodes_only_new_clips(corpus, model_yaml, tmp_path):
    frames, _ = find_frames(corpus / "frames")
    tower = load_frame_tower(model_yaml)
    first = dict(list(frames.items())[:7])
    out = tmp_path / "cache"
    build_eva_cache(first, out, tower, max_per_shard=3, progress=False)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in shard_files(out)}
    (out / ".eva-000009.tar.killed.tmp").write_bytes(b"half a shard")  # what a killed run leaves
    again = build_eva_cache(frames, out, tower, max_per_shard=3, progress=False)
    assert sorted(again.skipped_existing) == sorted(first) and sorted(again.written) == sorted(set(frames) - set(first))
    assert again.shards == ["eva-000003.tar", "eva-000004.tar"]  # appended after the 3 finished ones
    for name, (mtime, data) in before.items():
        assert (out / name).stat().st_mtime_ns == mtime and (out / name).read_bytes() == data
    assert len(EvaTokenShards(out)) == 12
    nothing = build_eva_cache(frames, out, tower, max_per_shard=3, progress=False)
    assert nothing.written == [] and len(nothing.skipped_existing) == 12


def test_bad_input_is_one_error_line(corpus, model_yaml, tiny_model_cfg, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("clip_0000.jpg", "clip_0001.jpg"):
        (frames / name).write_bytes((corpus / "frames" / name).read_bytes())
    (frames / "clip_0002.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "cache"
    code = features_main(["eva-cache", "--frames", str(frames), "--out", str(out), "--cfg-path", str(model_yaml)])
    assert code == 1  # the bad frame is skipped and counted, the others are cached
    report = json.loads((out / "eva_cache_report.json").read_text())
    assert sorted(report["written"]) == ["clip_0000", "clip_0001"] and list(report["failed"]) == ["clip_0002"]

    cases = [
        (["--frames", str(tmp_path / "nowhere")], "is not a folder"),
        (["--cfg-path", str(corpus / "coarse.json")], "not a model, train or eval config"),
        (["--max-per-shard", "0"], "--max-per-shard"),
        (["--options", "vision.image_size=28"], "holds a cache made differently: image_size 56"),
    ]
    for change, message in cases:
        args = {"--frames": str(frames), "--out": str(out), "--cfg-path": str(model_yaml)}
        extra = []
        for i in range(0, len(change), 2):
            if change[i] in args:
                args[change[i]] = change[i + 1]
            else:
                extra += change[i:i + 2]
        capsys.readouterr()
        argv = ["eva-cache", *[x for kv in args.items() for x in kv], *extra]
        assert features_main(argv) == 2, change
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err

    # the dataset side: a clip the cache lacks, and a cache of another tower
    dataset_cfg = DatasetConfig(reader="merr", annotation=str(corpus / "train.txt"), eva_cache=str(out),
                                transcripts=str(corpus / "transcripts.csv"), label_set="mer2023")
    with pytest.raises(AnnotationError, match=r"clip 'clip_0002' is not in the EVA cache .*eva-cache"):
        build_dataset(dataset_cfg, None)
    skipping = build_dataset(DatasetConfig(**{**vars(dataset_cfg), "on_bad_item": "skip"}), None)
    assert [r.name for r in skipping.records] == ["clip_0000", "clip_0001"] and skipping.skipped == 6
    other = type(tiny_model_cfg.vision)(**{**vars(tiny_model_cfg.vision), "image_size": 28})
    with pytest.raises(EvaCacheError, match="another frame tower.*image_size 56 .*model.vision.image_size: 28"):
        build_dataset(DatasetConfig(**{**vars(dataset_cfg), "on_bad_item": "skip"}), None, vision=other)
    (out / MANIFEST_NAME).unlink()
    with pytest.raises(EvaCacheError, match="no eva_cache.json"):
        build_dataset(dataset_cfg, None)


@pytest.mark.slow
def test_torchrun_two_processes(corpus, model_yaml, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), "-m", "minigpt4.features", "eva-cache", "--frames",
               str(corpus / "frames"), "--out", str(tmp_path / "two"), "--cfg-path", str(model_yaml),
               "--max-per-shard", "4"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(EvaTokenShards(tmp_path / "two").index) == sorted(find_frames(corpus / "frames")[0])
    assert "12 clips encoded" in run.stdout


def test_check_setup_lists_the_cache(corpus, model_yaml, tiny_model_cfg, tmp_path):
    out = tmp_path / "cache"
    key = "datasets.merr.eva_cache"
    need = Need(key, str(out), "eva_cache", "cached EVA tokens", expect_vision=tiny_model_cfg.vision)
    assert check_need(need).detail == "missing"
    _cache(corpus, model_yaml, out)
    found = check_need(need)
    assert found.ok and found.detail == "12 clips in 1 shards, bf16, tokens (17, 32), eva_vit_g at 56 px", found.detail
    other = type(tiny_model_cfg.vision)(**{**vars(tiny_model_cfg.vision), "width": 64})
    found = check_need(Need(key, str(out), "eva_cache", "cached EVA tokens", expect_vision=other))
    assert not found.ok and "made by another tower than model.vision (width 32 (model.vision.width: 64))" in found.detail


def test_train_py_on_the_cache_logs_the_live_losses(tiny_dir, model_yaml, tmp_path):
    """The shipped stage configs' path end to end: train.py with `eva_cache:` (fp32 storage) logs the
    very losses of the same run with the live tower."""
    corpus = write_tiny_corpus(tmp_path / "corpus", n=12)
    cache = _cache(corpus, model_yaml, tmp_path / "cache", "--dtype", "fp32")
    rounded = _cache(corpus, model_yaml, tmp_path / "bf16")
    losses = {}
    for mode, options in (("live", []), ("cached", [f"datasets.tiny.eva_cache={cache}"]),
                          ("bf16", [f"datasets.tiny.eva_cache={rounded}"])):
        out = tmp_path / mode
        cfg = tiny_train_config(tmp_path / f"{mode}.yaml", tiny_dir, corpus, out, tasks=["emotion"], max_epochs=1,
                                iters_per_epoch=4)
        assert train_main(["--cfg-path", str(cfg), "--options", "run.log_every=1", *options]) == 0
        losses[mode] = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses["live"]) == 4 and losses["cached"] == losses["live"]
    assert losses["bf16"] != losses["live"] and losses["bf16"] == pytest.approx(losses["live"], rel=1e-3)  # it is read
