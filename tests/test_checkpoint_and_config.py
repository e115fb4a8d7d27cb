"""Released-checkpoint import, our safetensors, EVA weights, and config validation."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import REPO
from minigpt4.common.config import ConfigError, load_config
from minigpt4.models.builder import build_model
from minigpt4.models.checkpoint import CheckpointError, load_trainable, save_trainable
from minigpt4.models.config import ModelConfig, VisionConfig
from minigpt4.models.eva_vit import build_eva_vit, load_eva_weights
from minigpt4.tools.convert_checkpoint import main as convert_main
from minigpt4.tools.inspect_model import main as inspect_main


def released_state(model) -> dict[str, torch.Tensor]:
    """The model's trainable tensors under the release's names (older peft: no `.default`)."""
    g = torch.Generator().manual_seed(1)
    return {
        k.replace(".default.weight", ".weight"): torch.randn(v.shape, generator=g)
        for k, v in model.trainable_state_dict().items()
    }


def test_release_checkpoint_converts_and_loads(tiny_model, tiny_model_cfg, tiny_dir, tmp_path):
    state = released_state(tiny_model)
    assert any(k.endswith("lora_A.weight") for k in state)
    src = tmp_path / "release.pth"
    torch.save({"model": {**state, "attn_head.in_proj_weight": torch.zeros(2, 2)}, "optimizer": {}, "config": {"a": 1}, "epoch": 3}, src)
    dst = tmp_path / "converted.safetensors"
    cfg_yaml = tmp_path / "model.yaml"
    cfg_yaml.write_text(
        f"includes: [{REPO / 'minigpt4/configs/models/emotion_llama_tiny.yaml'}]\nllm: {{path: {tiny_dir / 'llm'}}}\n"
    )
    assert convert_main(["--src", str(src), "--dst", str(dst), "--cfg-path", str(cfg_yaml)]) == 0

    fresh = build_model(tiny_model_cfg)
    report = load_trainable(fresh, dst)
    assert not report.missing and not report.unexpected
    loaded = fresh.trainable_state_dict()
    for key, value in state.items():
        ours = key.replace("lora_A.weight", "lora_A.default.weight").replace("lora_B.weight", "lora_B.default.weight")
        assert torch.equal(loaded[ours], value)
    # The release file loads directly too, and its unused head is reported, not loaded.
    assert load_trainable(build_model(tiny_model_cfg), src).unexpected == ["attn_head.in_proj_weight"]


def test_corrupted_and_wrong_shaped_checkpoints_are_refused(tiny_model, tmp_path):
    good = tmp_path / "good.safetensors"
    save_trainable(tiny_model, good)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="broken.safetensors.*corrupted or truncated"):
        load_trainable(tiny_model, broken)
    pth = tmp_path / "broken.pth"
    pth.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="broken.pth"):
        load_trainable(tiny_model, pth)

    state = released_state(tiny_model)
    state["llama_proj.weight"] = torch.zeros(3, 3)
    wrong = tmp_path / "wrong.pth"
    torch.save({"model": state}, wrong)
    with pytest.raises(CheckpointError, match=r"'llama_proj.weight' has shape \(3, 3\)"):
        load_trainable(tiny_model, wrong)

    partial = {k: v for k, v in released_state(tiny_model).items() if not k.startswith("feats_")}
    torch.save({"model": partial}, tmp_path / "minigptv2.pth")
    with pytest.raises(CheckpointError, match="missing 6 trainable tensors"):
        load_trainable(tiny_model, tmp_path / "minigptv2.pth")
    report = load_trainable(tiny_model, tmp_path / "minigptv2.pth", partial=True)
    assert len(report.missing) == 6 and all(k.startswith("feats_llama_proj") for k in report.missing)


def test_pickles_that_run_code_are_refused(tiny_model, tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": Evil()}}, path)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_trainable(tiny_model, path)


def test_lavis_style_eva_weights_load_with_extra_block_and_interpolated_positions(tmp_path):
    # A "40-block at 28 px" file loads into a 2-block tower at 56 px, as eva_vit_g.pth (224) into 448.
    source = build_eva_vit(VisionConfig(image_size=28, patch_size=14, width=32, depth=3, num_heads=2, mlp_dim=64))
    path = tmp_path / "eva_vit_g.pth"
    torch.save({f"visual.{k}" if k.startswith("blocks") else k: v for k, v in source.state_dict().items()}, path)
    cfg = VisionConfig(image_size=56, patch_size=14, width=32, depth=2, num_heads=2, mlp_dim=64, weights=str(path))
    tower = build_eva_vit(cfg)
    assert tower.pos_embed.shape == (1, 17, 32)
    assert torch.equal(tower.blocks[1].mlp.fc1.weight, source.blocks[1].mlp.fc1.weight)
    assert torch.equal(tower.pos_embed[:, 0], source.pos_embed[:, 0])  # CLS position is kept as is
    bad = VisionConfig(image_size=56, patch_size=14, width=48, depth=2, num_heads=2, mlp_dim=64)
    with pytest.raises(ValueError, match="cls_token"):
        load_eva_weights(build_eva_vit(bad), path)


def test_real_size_counts_on_meta_device(capsys):
    assert inspect_main(["--cfg-path", str(REPO / "minigpt4/configs/models/emotion_llama.yaml"), "--meta"]) == 0
    report = json.loads(capsys.readouterr().out)  # what `python -m minigpt4.tools.inspect_model` prints
    assert report["parameters"]["lora"] == 33_554_432
    assert report["parameters"]["trainable"] == 74_993_664
    assert report["parameters"]["llama_proj"] == 23_072_768
    assert report["parameters"]["llm_base"] == 6_738_415_616
    assert report["token_layout"]["visual_tokens_per_clip"] == 260


def test_unknown_config_key_names_the_closest_valid_one(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("lora:\n  rr: 8\n")
    with pytest.raises(ConfigError, match=r"m.yaml: unknown config key 'lora.rr'; did you mean 'lora.r'"):
        load_config(ModelConfig, path)
    with pytest.raises(ConfigError, match=r"--options: unknown config key 'vison'; did you mean 'vision'"):
        load_config(ModelConfig, None, ["vison.depth=2"])
    with pytest.raises(ConfigError, match="image_size=50"):
        load_config(ModelConfig, None, ["vision.image_size=50"])
    cfg = load_config(ModelConfig, None, ["lora.r=4", "dtype=fp32"])
    assert cfg.lora.r == 4 and cfg.lora.alpha == 16 and cfg.dtype == "fp32"


def test_holdout_split_is_stratified_disjoint_and_deterministic():
    from minigpt4.tools.holdout_split import holdout

    lines = [f"clip_{i:03d} 10 {('happy', 'sad')[i % 2]}" for i in range(40)] + ["solo 5 angry -3"]
    train, val = holdout(lines, 0.25, seed=1)
    assert sorted(train + val) == sorted(lines) and not set(train) & set(val)
    assert sum(l.endswith("happy") for l in val) == 5 and sum(l.endswith("sad") for l in val) == 5
    assert "solo 5 angry -3" in train  # a class of one stays in training
    assert holdout(lines, 0.25, seed=1) == (train, val) and holdout(lines, 0.25, seed=2) != (train, val)
    with pytest.raises(ValueError, match="x.txt:2"):
        holdout(["a 1 happy", "broken"], 0.5, 0, "x.txt")


def test_real_stage_configs_load_and_stage2_starts_from_stage1():
    from minigpt4.run_config import load_train_config

    stage1 = load_train_config(str(REPO / "train_configs/emotion_llama_stage1_coarse.yaml"))
    stage2 = load_train_config(str(REPO / "train_configs/emotion_llama_stage2_fine.yaml"))
    assert list(stage1.datasets) == ["merr_coarse"] and list(stage2.datasets) == ["merr_fine"]
    assert stage2.run.init_from == f"{stage1.run.output_dir}/best/trainable.safetensors"
    # the release's 30 x 1000 steps of batch 1 (4 GPUs) as 30 x 63 steps of batch 16: the same samples per epoch
    assert stage1.run.optim.warmup_steps == 63 and stage1.run.iters_per_epoch == 63 and stage1.run.max_epochs == 30
    assert stage1.run.batch_size == 16 and stage1.run.batching == "length_grouped"
    assert stage2.run.optim.init_lr < stage1.run.optim.init_lr
    assert stage1.model.lora.r == 64 and stage1.model.activation_checkpointing == "every_layer"
    release = load_train_config(str(REPO / "train_configs/release/emotion_llama_stage1_coarse.yaml"))
    assert (release.run.batch_size, release.run.iters_per_epoch, release.run.batching) == (1, 1000, "fixed")
    assert release.run.optim.warmup_steps == 1000 and release.run.token_budget is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error path")
def test_4bit_base_on_a_cpu_is_a_clear_error(tiny_model_cfg):
    from dataclasses import replace

    from minigpt4.models.builder import build_llm

    with pytest.raises(RuntimeError, match="load_in_4bit needs a CUDA GPU"):
        build_llm(replace(tiny_model_cfg.llm, load_in_4bit=True), torch.float32)


def test_a_section_can_include_a_file_and_override_it(tmp_path):
    from minigpt4.run_config import load_train_config

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.yaml").write_text("lora: {r: 4, alpha: 8}\ndtype: fp32\n")
    run = tmp_path / "run.yaml"
    run.write_text("model:\n  includes: [models/m.yaml]\n  lora: {alpha: 32}\nrun: {seed: 7}\n")
    cfg = load_train_config(str(run))
    assert (cfg.model.lora.r, cfg.model.lora.alpha, cfg.model.dtype, cfg.run.seed) == (4, 32, "fp32", 7)
    (tmp_path / "models" / "m.yaml").write_text("lora: {rr: 4}\n")
    with pytest.raises(ConfigError, match="unknown config key 'model.lora.rr'; did you mean 'model.lora.r'"):
        load_train_config(str(run))
    run.write_text("model:\n  includes: [missing.yaml]\n")
    with pytest.raises(ConfigError, match="included file 'missing.yaml' not found"):
        load_train_config(str(run))
