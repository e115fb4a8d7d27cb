"""The model on tiny random weights: merge, trainability, loss masking, generation, layout."""

from __future__ import annotations

import pytest
import torch

from conftest import make_sample
from minigpt4.data.collator import IGNORE_INDEX, EmotionCollator
from minigpt4.models.emotion_llama import merge_visual_tokens


def collate(model, samples, train=True):
    return EmotionCollator(model.tokenizer, model.cfg.num_patch_tokens, train=train)(samples)


def full_logits(model, batch) -> torch.Tensor:
    """Logits at every position, from the LLM itself (the training forward keeps target positions only)."""
    return model.llama_model(inputs_embeds=model.embed_inputs(batch), attention_mask=batch["attention_mask"]).logits


def test_visual_tokens_land_exactly_in_their_slots_and_text_is_untouched(tiny_model):
    samples = [make_sample(seed=1), make_sample(seed=2, feature_present=(True, False, True), image=False)]
    batch = collate(tiny_model, samples)
    text_embeds = tiny_model.llama_model.get_input_embeddings()(batch["input_ids"])
    tokens, present = tiny_model.encode_visual(batch)
    merged = tiny_model.embed_inputs(batch)

    mask = batch["visual_mask"]
    assert torch.equal(merged[~mask], text_embeds[~mask])
    # Row 0: all 4 patch tokens, 3 features, CLS in layout order; row 1: local + audio only.
    assert torch.equal(merged[0][mask[0]], tokens[0])
    assert torch.equal(merged[1][mask[1]], tokens[1, [4, 6]])
    assert mask.sum(1).tolist() == [tiny_model.cfg.num_visual_tokens, 2]
    # The patch slots come before the feature slots, inside <video> ... </video>.
    video = tiny_model.tokenizer.decode(batch["input_ids"][0][: mask[0].nonzero()[0, 0]])
    assert video.endswith("<video>")


def test_feature_projection_is_the_token_in_the_slot(tiny_model):
    batch = collate(tiny_model, [make_sample(seed=3)])
    merged = tiny_model.embed_inputs(batch)
    slots = batch["visual_mask"][0].nonzero()[:, 0]
    n_patch = tiny_model.cfg.num_patch_tokens
    audio = tiny_model.feats_llama_proj3(batch["features"][0, 2])
    assert torch.allclose(merged[0, slots[n_patch + 2]], audio)


def test_slot_and_token_count_mismatch_is_a_clear_error(tiny_model):
    batch = collate(tiny_model, [make_sample(seed=4)])
    batch["feature_present"][0, 1] = False  # the prompt still has a slot for it
    with pytest.raises(ValueError, match=r"sample 0 .* 8 visual placeholder slots .* 7 visual tokens"):
        tiny_model.embed_inputs(batch)
    embeds = torch.zeros(1, 5, 2)
    with pytest.raises(ValueError, match="EmotionCollator"):
        merge_visual_tokens(embeds, torch.tensor([[True, True, False, False, False]]), torch.ones(1, 1, 2), torch.ones(1, 1, dtype=torch.bool))


def test_only_lora_and_projections_train(tiny_model):
    trainable = {name for name, p in tiny_model.named_parameters() if p.requires_grad}
    assert trainable, "nothing to train"
    for name in trainable:
        assert "lora_" in name or name.split(".")[0] in {
            "llama_proj", "cls_tk_llama_proj", "feats_llama_proj1", "feats_llama_proj2", "feats_llama_proj3",
        }, name
    assert any(".q_proj.lora_A.default" in n for n in trainable) and any(".v_proj.lora_B.default" in n for n in trainable)
    assert not any("visual_encoder" in n or "ln_vision" in n or "embed_tokens" in n for n in trainable)
    assert set(tiny_model.trainable_state_dict()) == trainable


def test_loss_covers_target_tokens_only(tiny_model):
    samples = [make_sample(target="happy", seed=5), make_sample(target="very sad indeed", transcript="", seed=6)]
    batch = collate(tiny_model, samples)
    tok = tiny_model.tokenizer
    for row, target in enumerate(["happy", "very sad indeed"]):
        kept = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX].tolist()
        assert kept == tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    out = tiny_model(batch)
    full = full_logits(tiny_model, batch)[:, :-1].float()
    labels = batch["labels"][:, 1:]
    manual = torch.nn.functional.cross_entropy(full.reshape(-1, full.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    assert torch.allclose(out.loss, manual, atol=1e-5)
    # The training forward's logits are the full logits at the target positions, nothing else.
    assert torch.allclose(out.logits, full[labels != IGNORE_INDEX], atol=1e-5)
    assert out.logits.shape[0] == int((labels != IGNORE_INDEX).sum()) == int(out.loss_count)
    # Changing prompt or padding tokens' labels would be visible; changing the prompt text is not in the loss.
    batch2 = collate(tiny_model, [dict(samples[0], instruction="Name the emotion."), samples[1]])
    assert batch2["labels"][0][batch2["labels"][0] != IGNORE_INDEX].tolist() == batch["labels"][0][batch["labels"][0] != IGNORE_INDEX].tolist()


def test_batched_generation_equals_one_by_one(tiny_model):
    samples = [
        make_sample(seed=7, transcript="a much longer transcript that makes this prompt the longest of all"),
        make_sample(seed=8, image=False),
        make_sample(seed=9, feature_present=(False, False, False), transcript=""),
    ]
    tiny_model.eval()
    batched = tiny_model.generate(collate(tiny_model, samples, train=False), max_new_tokens=6)
    single = [tiny_model.generate(collate(tiny_model, [s], train=False), max_new_tokens=6)[0] for s in samples]
    assert batched == single
    assert all(isinstance(a, str) and a for a in batched)


def test_generation_refuses_right_padded_batches(tiny_model):
    samples = [make_sample(seed=1), make_sample(seed=2, transcript="")]
    with pytest.raises(ValueError, match="left-padded"):
        tiny_model.generate(collate(tiny_model, samples, train=True))


def test_every_modality_can_be_absent(tiny_model):
    nothing = make_sample(image=False, feature_present=(False, False, False), transcript="")
    batch = collate(tiny_model, [nothing, make_sample(seed=2)])
    assert batch["visual_mask"][0].sum() == 0
    assert torch.isfinite(tiny_model(batch).loss)


def test_cached_eva_tokens_give_the_same_batch_as_live_images(tiny_model):
    sample = make_sample(seed=11)
    live = collate(tiny_model, [sample])
    cached_sample = dict(sample, image=None, image_embeds=tiny_model.encode_image(sample["image"][None])[0])
    cached = collate(tiny_model, [cached_sample])
    assert torch.allclose(tiny_model.embed_inputs(live), tiny_model.embed_inputs(cached), atol=1e-6)


def test_sample_loss_reduction_weights_each_sample_equally(tiny_model):
    samples = [make_sample(target="happy", seed=5), make_sample(target="a much longer explanation of it", seed=6)]
    batch = collate(tiny_model, samples)
    token = tiny_model(batch)
    tiny_model.cfg.loss_reduction = "sample"
    try:
        sample = tiny_model(batch).loss
    finally:
        tiny_model.cfg.loss_reduction = "token"
    logits, labels = full_logits(tiny_model, batch)[:, :-1], batch["labels"][:, 1:]
    per_row = [
        torch.nn.functional.cross_entropy(logits[r][labels[r] != IGNORE_INDEX], labels[r][labels[r] != IGNORE_INDEX])
        for r in range(2)
    ]
    assert torch.allclose(sample, (per_row[0] + per_row[1]) / 2, atol=1e-5)
    assert not torch.allclose(sample, token.loss, atol=1e-3)


def test_merge_check_reads_the_collators_cpu_counts_not_the_device(tiny_model, monkeypatch):
    """The slot/token count check uses the CPU masks `to_device` keeps: no `.cpu()` copy (a GPU sync)."""
    good = collate(tiny_model, [make_sample(seed=1), make_sample(seed=2, image=False)])
    moved = EmotionCollator.to_device(good, "cpu")
    assert moved["host"]["visual_mask"] is good["visual_mask"]
    expected = tiny_model.embed_inputs(good)

    def no_copy(self, *args, **kwargs):
        raise AssertionError("embed_inputs copied a tensor to the host")

    monkeypatch.setattr(torch.Tensor, "cpu", no_copy)
    assert torch.equal(tiny_model.embed_inputs(moved), expected)
    monkeypatch.undo()
    # A device batch that disagrees with its prompt is still refused, from the host counts.
    bad = EmotionCollator.to_device(collate(tiny_model, [make_sample(seed=4)]), "cpu")
    bad["host"]["feature_present"][0, 1] = False
    with pytest.raises(ValueError, match=r"sample 0 .* 8 visual placeholder slots .* 7 visual tokens"):
        tiny_model.embed_inputs(bad)


def test_training_forward_applies_the_lm_head_to_target_positions_only(tiny_model):
    batch = collate(tiny_model, [make_sample(target="happy", seed=1), make_sample(target="very sad indeed", seed=2)])
    head = tiny_model.llama_model.get_output_embeddings()
    seen = []
    handle = head.register_forward_hook(lambda module, args, out: seen.append(tuple(out.shape)))
    try:
        out = tiny_model(batch)
        tiny_model.eval()
        tiny_model.generate(collate(tiny_model, [make_sample(seed=1)], train=False), max_new_tokens=2)
    finally:
        handle.remove()
    n_targets = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    vocab = head.weight.shape[0]
    assert seen[0] == (n_targets, vocab) and out.logits.shape == (n_targets, vocab)
    assert len(seen) > 1  # generation still goes through the head (its own logits, not ours)


def test_logits_memory_benchmark_reports_the_real_size_saving(tmp_path):
    import json

    from benchmarks.bench_logits_memory import main

    result = main(["--out", str(tmp_path / "m.json")])
    row = next(r for r in result["rows"] if (r["batch"], r["seq"], r["targets"]) == (1, 1024, 64))
    assert result["vocab"] == 32000
    assert row["full_logits_gib"] == pytest.approx(1024 * 32000 * 14 / 1024**3)
    assert row["saved_gib"] == pytest.approx((1024 - 64) * 32000 * 14 / 1024**3)
    assert json.loads((tmp_path / "m.json").read_text())["rows"] == result["rows"]
