"""Stage 3 rollouts on the tiny model: sampling, completion log-probabilities, the peft reference."""

from __future__ import annotations

import torch

from conftest import make_sample
from minigpt4.data.collator import EmotionCollator
from minigpt4.training.grpo import k3_kl
from minigpt4.training.rollout import Reference, completion_logprobs, rollout_seed, sample_completions

G = 4


def _prompts(model, samples):
    return EmotionCollator(model.tokenizer, model.cfg.num_patch_tokens, train=False)(samples)


def _samples():
    return [
        make_sample(seed=1, transcript="a much longer transcript that makes this prompt the longest one"),
        make_sample(seed=2, image=False, transcript=""),
        make_sample(seed=3, feature_present=(False, True, False)),
    ]


def _perturb(model, seed: int) -> None:
    """Make the LoRA and projections non-trivial (a 'trained' model: peft initialises lora_B to 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g))


def test_rollouts_embed_each_prompt_once_and_do_not_depend_on_the_batch(tiny_model):
    tiny_model.eval()
    calls = []
    embed = tiny_model.embed_inputs
    tiny_model.embed_inputs = lambda batch: calls.append(batch["input_ids"].shape[0]) or embed(batch)
    samples = _samples()
    seeds = [rollout_seed(42, 7, i) for i in range(3)]
    rollout = sample_completions(tiny_model, _prompts(tiny_model, samples), G, max_new_tokens=6, temperature=1.0,
                                 top_p=1.0, seeds=seeds)
    assert calls == [3]  # three prompts embedded once, not 3 * G rows
    assert rollout.ids.shape[0] == 3 * G and len(rollout.texts) == 3 * G
    stops = tiny_model.stop_ids()
    for row, mask, cut in zip(rollout.ids, rollout.mask, rollout.truncated):
        n = int(mask.sum())
        assert mask[:n].all() and not mask[n:].any()  # a prefix
        assert (int(row[n - 1]) in stops) != bool(cut)  # ends at a stop token unless cut at the limit
        assert n <= 6
    assert len(set(rollout.texts)) > 1  # sampled, not greedy copies
    alone = sample_completions(tiny_model, _prompts(tiny_model, samples[2:]), G, max_new_tokens=6, temperature=1.0,
                               top_p=1.0, seeds=seeds[2:])
    width = alone.ids.shape[1]
    assert torch.equal(alone.ids, rollout.ids[2 * G :, :width]) and alone.texts == rollout.texts[2 * G :]
    again = sample_completions(tiny_model, _prompts(tiny_model, samples), G, max_new_tokens=6, temperature=1.0,
                               top_p=1.0, seeds=seeds)
    assert again.texts == rollout.texts  # seeded: a resumed step draws the same completions


def test_completion_logprobs_equal_one_unpadded_forward_per_completion(tiny_model):
    tiny_model.eval()
    _perturb(tiny_model, 0)
    samples = _samples()
    prompts = _prompts(tiny_model, samples)
    rollout = sample_completions(tiny_model, prompts, G, max_new_tokens=5, temperature=0.7, top_p=0.9,
                                 seeds=[1, 2, 3])
    with torch.no_grad():
        logp = completion_logprobs(tiny_model, prompts, rollout.ids, rollout.mask, G, temperature=0.7)
        embeds = tiny_model.embed_inputs(prompts)
        for row in range(3 * G):
            b = row // G
            prompt = embeds[b, prompts["attention_mask"][b].bool()]
            n = int(rollout.mask[row].sum())
            ids = rollout.ids[row, :n]
            full = torch.cat([prompt, tiny_model.llama_model.get_input_embeddings()(ids)])[None]
            logits = tiny_model.llama_model(inputs_embeds=full).logits[0].float() / 0.7
            expected = logits[prompt.shape[0] - 1 : prompt.shape[0] - 1 + n].log_softmax(-1).gather(-1, ids[:, None])[:, 0]
            torch.testing.assert_close(logp[row, :n], expected, atol=1e-4, rtol=1e-4)
            assert (logp[row, n:] == 0).all()


def test_reference_adapter_is_the_starting_model_and_kl_is_zero_there(tiny_model):
    tiny_model.eval()
    _perturb(tiny_model, 1)  # "stage 2"
    trainable_keys = set(tiny_model.trainable_state_dict())
    ref = Reference(tiny_model, "adapter")
    assert set(tiny_model.trainable_state_dict()) == trainable_keys  # the copy is frozen, never checkpointed
    prompts = _prompts(tiny_model, _samples())
    rollout = sample_completions(tiny_model, prompts, G, max_new_tokens=5, temperature=1.0, top_p=1.0, seeds=[4, 5, 6])
    with torch.no_grad():
        start = completion_logprobs(tiny_model, prompts, rollout.ids, rollout.mask, G)
        ref_start = ref.logprobs(tiny_model, rollout)
    assert torch.equal(start, ref_start)
    assert k3_kl(start, ref_start)[rollout.mask].abs().max().item() == 0.0  # policy == reference: KL 0

    _perturb(tiny_model, 2)  # "a few GRPO updates"
    with torch.no_grad():
        moved = completion_logprobs(tiny_model, prompts, rollout.ids, rollout.mask, G)
        ref_now = ref.logprobs(tiny_model, rollout)
        moved_again = completion_logprobs(tiny_model, prompts, rollout.ids, rollout.mask, G)
    torch.testing.assert_close(ref_now, start, atol=1e-5, rtol=1e-5)  # the reference did not move
    assert torch.equal(moved, moved_again)  # and the policy is back after the reference pass
    assert (k3_kl(moved, ref_now)[rollout.mask] > 0).any()
    assert set(tiny_model.trainable_state_dict()) == trainable_keys
    assert all(p.requires_grad for n, p in tiny_model.named_parameters() if ".default." in n)


def test_base_reference_disables_the_adapter(tiny_model):
    tiny_model.eval()
    _perturb(tiny_model, 3)
    prompts = _prompts(tiny_model, _samples()[:1])
    rollout = sample_completions(tiny_model, prompts, G, max_new_tokens=4, temperature=1.0, top_p=1.0, seeds=[9])
    base = Reference(tiny_model, "base")
    with torch.no_grad():
        ref = base.logprobs(tiny_model, rollout)
        with tiny_model.llama_model.disable_adapter():
            expected = completion_logprobs(tiny_model, prompts, rollout.ids, rollout.mask, G)
        policy = completion_logprobs(tiny_model, prompts, rollout.ids, rollout.mask, G)
    assert torch.equal(ref, expected) and not torch.equal(ref, policy)
