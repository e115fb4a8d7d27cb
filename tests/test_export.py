"""Export to standard formats and back: a trained tiny model -> PEFT adapter folder + projections.

The adapter must load with nothing but `transformers` + `peft` in a fresh process and give the
very logits of the model that was trained; the merged LLM must give them within float
tolerance; `model.checkpoint: <export>` must rebuild the whole model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO, make_sample
from minigpt4.common.config import load_config
from minigpt4.data.collator import EmotionCollator
from minigpt4.models.builder import build_model
from minigpt4.models.checkpoint import CheckpointError, load_trainable, save_trainable
from minigpt4.models.config import ModelConfig
from minigpt4.run_config import OptimConfig
from minigpt4.tools.export import main as export_main
from minigpt4.training.optim import build_optimizer

PLAIN_PEFT = textwrap.dedent("""\
    import sys, torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    base_path, adapter, merged, ids_path, out, threads = sys.argv[1:]
    torch.set_num_threads(int(threads))
    ids = torch.load(ids_path)
    lora = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), adapter).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged).eval()
    with torch.no_grad():
        torch.save({"lora": lora(input_ids=ids).logits, "merged": merged(input_ids=ids).logits}, out)
    """)


def batch_of(model, train=False):
    samples = [make_sample(seed=1, target="happy"), make_sample(seed=2, target="sad", feature_present=(True, False, True))]
    return EmotionCollator(model.tokenizer, model.cfg.num_patch_tokens, train=train)(samples)


@pytest.fixture(scope="module")
def trained(tiny_model_cfg, tmp_path_factory):
    """A tiny model after a few AdamW steps (LoRA B starts at zero: the adapter must be non-trivial)."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = build_model(tiny_model_cfg)
    optimizer = build_optimizer(model, OptimConfig(warmup_lr=1e-2))
    model.train()
    for _ in range(5):
        model(batch_of(model, train=True)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    lora_b = [v for k, v in model.trainable_state_dict().items() if "lora_B" in k]
    assert lora_b and all(v.abs().max() > 0 for v in lora_b)
    (root / "best").mkdir()
    save_trainable(model, root / "best/trainable.safetensors")
    (root / "best/metrics.json").write_text(json.dumps({"step": 5, "tiny_val/weighted_f1": 0.8125}))
    cfg_yaml = root / "model.yaml"
    cfg_yaml.write_text(f"includes: [{REPO / 'minigpt4/configs/models/emotion_llama_tiny.yaml'}]\n"
                        f"llm: {{path: {tiny_model_cfg.llm.path}}}\nvision: {{weights: {tiny_model_cfg.vision.weights}}}\n")
    out = root / "exported"
    assert export_main(["--checkpoint", str(root / "best/trainable.safetensors"), "--cfg-path", str(cfg_yaml),
                        "--out", str(out), "--merge"]) == 0
    return {"model": model, "out": out, "root": root, "cfg_yaml": cfg_yaml}


def test_export_writes_the_standard_files_and_a_model_card(trained):
    out = trained["out"]
    for name in ("adapter_config.json", "adapter_model.safetensors", "projections.safetensors", "model_config.yaml",
                 "README.md", "merged/config.json", "merged/tokenizer.json", "merged/projections.safetensors"):
        assert (out / name).is_file(), name
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["peft_type"], adapter["r"], adapter["lora_alpha"]) == ("LORA", 8, 16)
    # the tiny model adapts every decoder Linear (minigpt4/configs/models/emotion_llama_tiny.yaml)
    assert sorted(adapter["target_modules"]) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert adapter["base_model_name_or_path"] == trained["model"].cfg.llm.path
    card = (out / "README.md").read_text()
    assert "| tiny_val/weighted_f1 | 0.8125 |" in card and "library_name: peft" in card
    lora = sum(v.numel() for k, v in trained["model"].trainable_state_dict().items() if "lora_" in k)
    assert f"| LoRA parameters | {lora:,} |" in card
    resolved = load_config(ModelConfig, out / "model_config.yaml")
    assert resolved.checkpoint == str(out) and resolved.lora.r == 8


def test_plain_peft_in_a_fresh_process_gives_identical_logits_and_merged_is_close(trained, tmp_path):
    model, out = trained["model"], trained["out"]
    ids = batch_of(model)["input_ids"][:1, -12:]  # text tokens of the prompt's end
    torch.save(ids, tmp_path / "ids.pt")
    done = subprocess.run([sys.executable, "-c", PLAIN_PEFT, model.cfg.llm.path, str(out), str(out / "merged"),
                           str(tmp_path / "ids.pt"), str(tmp_path / "logits.pt"), str(torch.get_num_threads())],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = torch.load(tmp_path / "logits.pt")
    with torch.no_grad():
        ours = model.llama_model(input_ids=ids).logits
        base = model.llama_model.get_base_model()
        with model.llama_model.disable_adapter():
            without_lora = base(input_ids=ids).logits
    assert not torch.allclose(ours, without_lora, atol=1e-3)  # the adapter changes the answer
    assert torch.equal(theirs["lora"], ours)
    torch.testing.assert_close(theirs["merged"], ours, atol=1e-4, rtol=1e-4)


def test_model_checkpoint_loads_the_export_and_its_merged_form(trained, tiny_model_cfg):
    model, out = trained["model"], trained["out"]
    batch = batch_of(model)
    with torch.no_grad():
        expected = model(batch).logits
        torch.manual_seed(123)  # different initial projections: the loaded values must replace them
        again = build_model(load_config(ModelConfig, out / "model_config.yaml")).eval()
        assert torch.equal(again(batch).logits, expected)
        merged = build_model(load_config(ModelConfig, out / "merged/model_config.yaml")).eval()
        assert not any("lora_" in name for name, _ in merged.named_parameters())
        torch.testing.assert_close(merged(batch).logits, expected, atol=1e-4, rtol=1e-4)


def test_adapter_settings_that_differ_from_the_config_are_refused(trained, tiny_model_cfg):
    import dataclasses

    out = trained["out"]
    other_alpha = dataclasses.replace(tiny_model_cfg, lora=dataclasses.replace(tiny_model_cfg.lora, alpha=32))
    with pytest.raises(CheckpointError, match="lora_alpha is 16 but the model config has 32"):
        load_trainable(build_model(other_alpha), out)
    no_lora = dataclasses.replace(tiny_model_cfg, lora=dataclasses.replace(tiny_model_cfg.lora, r=0))
    with pytest.raises(CheckpointError, match="holds a LoRA adapter but model.lora.r is 0"):
        load_trainable(build_model(no_lora), out)


def test_export_errors_are_one_line_with_the_fix(trained, tmp_path, capsys):
    code = export_main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--cfg-path", str(trained["cfg_yaml"]),
                        "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "missing.safetensors" in err and "Traceback" not in err
    code = export_main(["--checkpoint", str(trained["root"] / "best"), "--cfg-path", str(trained["cfg_yaml"]),
                        "--out", str(tmp_path / "y"), "--options", "lora.r=4"])
    assert code == 2 and "shape" in capsys.readouterr().err
