"""Stage 3 objective and rewards against hand-computed values (minigpt4/training/grpo.py, rewards.py)."""

from __future__ import annotations

import math

import pytest
import torch

from minigpt4.common.config import ConfigError
from minigpt4.training import grpo
from minigpt4.training.rewards import REWARDS, AnswerTemplate, Completion, check_rewards, score

MER = ("neutral", "angry", "happy", "sad", "worried", "surprise")


# ------------------------------------------------------------------------------- advantages
def test_group_advantages_of_a_hand_made_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])  # two groups of 4
    adv, all_equal = grpo.group_advantages(rewards, 4, scale_by_std=True, eps=1e-4)
    std = math.sqrt((4 * 0.25) / 3)  # unbiased std of [1, 0, 0, 1]
    a = 0.5 / (std + 1e-4)
    assert torch.allclose(adv, torch.tensor([a, -a, -a, a, 0, 0, 0, 0]), atol=1e-7)
    assert all_equal.tolist() == [False, True]
    adv, _ = grpo.group_advantages(rewards, 4, scale_by_std=False)
    assert adv.tolist() == [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]
    rewards = torch.tensor([3.0, 1.0, 2.0])  # mean 2, std 1
    adv, _ = grpo.group_advantages(rewards, 3, eps=0.0)
    assert adv.tolist() == [1.0, -1.0, 0.0]
    with pytest.raises(ValueError, match="groups of 4"):
        grpo.group_advantages(torch.zeros(6), 4)


def test_equal_but_inexact_rewards_give_exactly_zero_advantage():
    adv, all_equal = grpo.group_advantages(torch.full((3,), 0.1), 3)
    assert all_equal.item() and adv.tolist() == [0.0, 0.0, 0.0]


# ------------------------------------------------------------------------------- aggregation
def _hand_batch():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    return per_token, mask


def test_each_aggregation_equals_a_hand_computed_number():
    per_token, mask = _hand_batch()
    # sequence: mean(1, 2, 3) = 2 and mean(4) = 4, then (2 + 4) / 2 = 3
    assert grpo.aggregate(per_token, mask, "sequence", 5).item() == pytest.approx(3.0)
    # token: (1 + 2 + 3 + 4) / 4 tokens = 2.5
    assert grpo.aggregate(per_token, mask, "token", 5).item() == pytest.approx(2.5)
    # dr_grpo: 10 / (2 completions * 5 max new tokens) = 1.0
    assert grpo.aggregate(per_token, mask, "dr_grpo", 5).item() == pytest.approx(1.0)
    # skipping the second completion: sequence 2, token 6 / 3 = 2, dr_grpo 6 / 5
    keep = torch.tensor([True, False])
    assert grpo.aggregate(per_token, mask, "sequence", 5, keep).item() == pytest.approx(2.0)
    assert grpo.aggregate(per_token, mask, "token", 5, keep).item() == pytest.approx(2.0)
    assert grpo.aggregate(per_token, mask, "dr_grpo", 5, keep).item() == pytest.approx(1.2)
    assert grpo.aggregate(per_token, mask, "token", 5, torch.tensor([False, False])).item() == 0.0
    with pytest.raises(ValueError, match="sequence, token, dr_grpo"):
        grpo.aggregate(per_token, mask, "mean", 5)


def test_micro_batch_terms_add_up_to_the_whole_batch():
    per_token, mask = _hand_batch()
    for aggregation in grpo.AGGREGATIONS:
        whole = grpo.aggregate(per_token, mask, aggregation, 5)
        parts = [grpo.loss_terms(per_token[i : i + 1], mask[i : i + 1], aggregation, 5) for i in range(2)]
        assert (sum(p[0] for p in parts) / sum(p[1] for p in parts)).item() == pytest.approx(whole.item())


# ------------------------------------------------------------------------------- clipping, KL
def test_clipped_surrogate_and_clip_fraction_by_hand():
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1, 0.7]]))  # ratios vs old = 0
    old = torch.zeros(1, 4)
    mask = torch.ones(1, 4, dtype=torch.bool)
    pos = grpo.token_losses(logp, old, torch.tensor([2.0]), mask, eps_low=0.2, eps_high=0.28)
    # A > 0: min(r A, clip(r) A) = A * min(r, clip(r)): 1.28, 0.5, 1.1, 0.7 times 2
    assert torch.allclose(pos.loss, -2 * torch.tensor([[1.28, 0.5, 1.1, 0.7]]), atol=1e-6)
    assert pos.clipped.tolist() == [[True, False, False, False]]
    neg = grpo.token_losses(logp, old, torch.tensor([-1.0]), mask, eps_low=0.2, eps_high=0.28)
    # A < 0: A * max(r, clip(r)): 1.5, 0.8, 1.1, 0.8 times -1
    assert torch.allclose(neg.loss, torch.tensor([[1.5, 0.8, 1.1, 0.8]]), atol=1e-6)
    assert neg.clipped.tolist() == [[False, True, False, True]]


def test_k3_kl_is_zero_when_policy_equals_reference_and_positive_otherwise():
    logp = torch.log(torch.tensor([[0.2, 0.5, 0.9]]))
    assert grpo.k3_kl(logp, logp).abs().max().item() == 0.0
    ref = torch.log(torch.tensor([[0.4, 0.5, 0.3]]))
    kl = grpo.k3_kl(logp, ref)
    ratio = torch.tensor([[2.0, 1.0, 1 / 3]])  # ref / policy
    assert torch.allclose(kl, ratio - torch.log(ratio) - 1, atol=1e-6)
    assert (kl[0, [0, 2]] > 0).all() and kl[0, 1].item() == pytest.approx(0.0, abs=1e-7)
    out = grpo.token_losses(logp, logp, torch.tensor([0.0]), torch.ones(1, 3, dtype=torch.bool), beta=0.5, ref_logp=ref)
    assert torch.allclose(out.loss, 0.5 * kl, atol=1e-6)  # zero advantage: the loss is beta * KL
    with pytest.raises(ValueError, match="reference"):
        grpo.token_losses(logp, logp, torch.tensor([0.0]), torch.ones(1, 3, dtype=torch.bool), beta=0.5)


def test_one_iteration_gradient_equals_reinforce_with_baseline():
    """Ratio 1 (old = policy, detached): the clipped objective's gradient is REINFORCE with the
    group-mean baseline, sum_i (r_i - mean r) * mean_t grad log p_it / N (sequence aggregation)."""
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 5, requires_grad=True)  # 4 completions (one group), 3 steps, vocab 5
    tokens = torch.randint(0, 5, (4, 3))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0])
    adv, _ = grpo.group_advantages(rewards, 4, scale_by_std=False)

    def logp_of(lg):
        return lg.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]

    logp = logp_of(logits)
    out = grpo.token_losses(logp, logp.detach(), adv, mask, eps_low=0.2, eps_high=0.28)
    grad_grpo, = torch.autograd.grad(grpo.aggregate(out.loss, mask, "sequence", 3), logits)

    baseline = rewards.mean()
    lengths = mask.sum(1)
    reinforce = -(((rewards - baseline) * (logp_of(logits) * mask).sum(1) / lengths).sum() / 4)
    grad_reinforce, = torch.autograd.grad(reinforce, logits)
    assert torch.allclose(grad_grpo, grad_reinforce, atol=1e-7)
    assert grad_grpo.abs().sum() > 0


# ------------------------------------------------------------------------------- templates
def test_templates_parse_answers_and_reject_what_they_cannot_match():
    think = AnswerTemplate.from_config("think_answer")
    assert think.parse("<think>the voice is loud</think>\n<answer> angry </answer>") == "angry"
    assert think.parse("<think>x</think><answer>angry</answer> trailing") is None
    assert think.parse("angry") is None
    assert think.parse("<think>x</think><answer> </answer>") is None
    assert think.parse("") is None
    plain = AnswerTemplate.from_config("plain")
    assert plain.parse("  happy ") == "happy" and plain.parse("   ") is None
    custom = AnswerTemplate.from_config("Emotion: {answer}.")
    assert custom.parse("Emotion: sad.") == "sad" and custom.parse("sad") is None
    for bad in ("<answer></answer>", "{answer} {answer}", "{label}", "{think}"):
        with pytest.raises(ConfigError, match=r"grpo.template=.*plain, answer, think_answer"):
            AnswerTemplate.from_config(bad)


# ------------------------------------------------------------------------------- rewards
def _c(text, label="happy", labels=MER, template="plain", **kw):
    return Completion(text=text, answer=AnswerTemplate.from_config(template).parse(text), label=label, labels=labels, **kw)


def test_accuracy_reward_on_hand_cases():
    acc = REWARDS.get("accuracy")
    assert acc(_c("happy")) == 1.0
    assert acc(_c("The person is happiness itself.")) == 1.0  # parsed like evaluation parses
    assert acc(_c("sad")) == 0.0
    assert acc(_c("happy or sad")) == 0.0  # two labels: ambiguous, never guessed
    assert acc(_c("excited")) == 0.0  # not a label of the set
    assert acc(_c("")) == 0.0
    assert acc(_c("happy", template="think_answer")) == 0.0  # malformed for this template
    assert acc(_c("<think>smiles</think><answer>happy</answer>", template="think_answer")) == 1.0
    with pytest.raises(ConfigError, match="ov_f1"):
        acc(_c("happy", labels=()))


def test_format_reward_on_hand_cases():
    fmt = REWARDS.get("format")
    assert fmt(_c("<think>a</think> <answer>sad</answer>", template="think_answer")) == 1.0
    assert fmt(_c("<answer>sad</answer>", template="think_answer")) == 0.0
    assert fmt(_c("<think>a</think><answer>sad", template="think_answer")) == 0.0
    assert fmt(_c("", template="think_answer")) == 0.0
    assert fmt(_c("sad")) == 1.0 and fmt(_c(" ")) == 0.0


def test_ov_f1_reward_on_hand_cases():
    f1 = REWARDS.get("ov_f1")
    gold = ["happy", "surprised"]
    assert f1(_c("happy, surprise", label=gold, labels=())) == pytest.approx(1.0)
    # joyful -> happy by the synonym table; nervous -> worried (not gold): P = 1/2, R = 1/2
    assert f1(_c("joyful and nervous", label=gold, labels=())) == pytest.approx(0.5)
    # P = 1/1, R = 1/2 -> F = 2/3
    assert f1(_c("happy", label=gold, labels=())) == pytest.approx(2 / 3)
    assert f1(_c("bored", label=gold, labels=())) == 0.0  # unknown word: counts in |P|, no hit
    assert f1(_c("", label=gold, labels=())) == 0.0
    assert f1(_c("not happy", label=gold, labels=())) == 0.0
    # the clip's own grouping (MER2024-OV scorer rule): 'elated' grouped with 'happy'
    grouped = Completion(text="elated", answer="elated", label=gold, grouping=[["happy", "elated"], ["surprised"]])
    assert f1(grouped) == pytest.approx(2 / 3)
    assert f1(_c("sad", label="sad")) == 1.0  # a closed-set label works too


def test_length_penalty_on_hand_cases():
    pen = REWARDS.get("length")
    kw = dict(max_new_tokens=20, soft_length=10)
    assert pen(_c("x", n_tokens=10, **kw)) == 0.0
    assert pen(_c("x", n_tokens=15, **kw)) == pytest.approx(-0.5)
    assert pen(_c("x", n_tokens=20, truncated=True, **kw)) == -1.0
    assert pen(_c("", n_tokens=0, **kw)) == 0.0


def test_rewards_are_checked_weighted_and_user_functions_plug_in():
    assert check_rewards({"accuracy": 1, "format": 0.5}) == {"accuracy": 1.0, "format": 0.5}
    with pytest.raises(ConfigError, match=r"unknown reward 'acuracy'; choose from accuracy, ") as err:
        check_rewards({"acuracy": 1.0})
    assert all(name in str(err.value) for name in ("format", "length", "ov_f1"))
    with pytest.raises(ConfigError, match=r"grpo.rewards.format: weight 'high' is not a number"):
        check_rewards({"format": "high"})
    with pytest.raises(ConfigError, match="is empty"):
        check_rewards({})
    totals, per = score([_c("happy"), _c("sad"), _c("")], {"accuracy": 1.0, "format": 0.5})
    assert totals == [1.5, 0.5, 0.0] and per == {"accuracy": [1.0, 0.0, 0.0], "format": [1.0, 1.0, 0.0]}

    name = "test_says_please"
    if name not in REWARDS:
        REWARDS.register(name)(lambda c: float("please" in c.text))
    assert check_rewards({name: 2}) == {name: 2.0}
    assert score([_c("please happy")], {name: 2.0})[0] == [2.0]


def test_real_size_grpo_step_estimate_on_the_meta_device(tmp_path):
    import json
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO))
    from benchmarks.bench_grpo import main

    result = main(["--json", str(tmp_path / "grpo.json")])
    assert json.loads((tmp_path / "grpo.json").read_text())["rows"] == result["rows"]
    rows = {(r["weights"], r["gradient_checkpointing"]): r for r in result["rows"]}
    assert result["settings"]["prompt_tokens"] == 1 + 260 + 70 and result["settings"]["parameters"]["lora"] == 33_554_432
    for weights in ("bf16", "nf4 (QLoRA)"):
        on, off = rows[(weights, True)], rows[(weights, False)]
        assert on["peak_gib"] < off["peak_gib"] and on["fits_24gb"]
        assert on["kv_cache_gib"] == pytest.approx(8 * (331 + 256) * 32 * 2 * 4096 * 2 / 2**30)
    assert rows[("nf4 (QLoRA)", True)]["peak_gib"] < rows[("bf16", True)]["peak_gib"]
