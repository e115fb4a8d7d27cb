"""`EmotionLLaMA.score_labels`: one cached prompt pass, every label scored; equals a plain forward."""

from __future__ import annotations

import pytest
import torch

from conftest import make_sample
from minigpt4.data.collator import IGNORE_INDEX, EmotionCollator

LABELS = ["neutral", "angry", "happy", "sad", "worried", "surprise"]


def _reference_loglik(model, sample, label: str) -> float:
    """Sum of the log-probabilities of the label's target tokens (and </s>), from one ordinary
    right-padded training-layout forward of the whole sequence: what the loss sees."""
    batch = EmotionCollator(model.tokenizer, model.cfg.num_patch_tokens, train=True)([dict(sample, target=label)])
    logits = model.llama_model(inputs_embeds=model.embed_inputs(batch), attention_mask=batch["attention_mask"]).logits
    logprobs = logits[0, :-1].float().log_softmax(-1)
    targets = batch["labels"][0, 1:]
    keep = targets != IGNORE_INDEX
    return float(logprobs[keep].gather(-1, targets[keep][:, None]).sum())


def test_scores_equal_a_full_forward_per_label_in_a_mixed_batch(tiny_model):
    tiny_model.eval()
    samples = [
        make_sample(seed=1, transcript="a much longer transcript that makes this prompt the longest one"),
        make_sample(seed=2, image=False, transcript=""),
        make_sample(seed=3, feature_present=(False, True, False)),
    ]
    labels = LABELS + ["a label of several words"]
    batch = EmotionCollator(tiny_model.tokenizer, tiny_model.cfg.num_patch_tokens, train=False)(samples)
    with torch.no_grad():
        loglik = tiny_model.score_labels(batch, labels)
        expected = torch.tensor([[_reference_loglik(tiny_model, s, label) for label in labels] for s in samples])
    assert loglik.shape == (3, len(labels))
    torch.testing.assert_close(loglik, expected, atol=1e-4, rtol=1e-4)
    probs = loglik.softmax(-1)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    assert (probs > 0).all()


def test_one_sample_batch_and_errors(tiny_model):
    tiny_model.eval()
    sample = make_sample(seed=5)
    collator = EmotionCollator(tiny_model.tokenizer, tiny_model.cfg.num_patch_tokens, train=False)
    alone = tiny_model.score_labels(collator([sample]), LABELS)
    together = tiny_model.score_labels(collator([sample, make_sample(seed=6, transcript="")]), LABELS)
    torch.testing.assert_close(alone[0], together[0], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="at least one label"):
        tiny_model.score_labels(collator([sample]), [])
    right_padded = EmotionCollator(tiny_model.tokenizer, tiny_model.cfg.num_patch_tokens, train=True)(
        [sample, make_sample(seed=6, transcript="")])
    with pytest.raises(ValueError, match="left-padded"):
        tiny_model.score_labels(right_padded, LABELS)


def test_predict_answer_modes_side_by_side(tiny_model, tmp_path):
    """`both` keeps the generated answer and adds the scored one; `score_labels` never answers invalid."""
    from conftest import write_tiny_corpus
    from minigpt4.data.config import DatasetConfig
    from minigpt4.data.datasets import build_dataset
    from minigpt4.eval.generation import predict, scored_view
    from minigpt4.eval.scoring import score_predictions

    corpus = write_tiny_corpus(tmp_path / "corpus", n=12)
    dataset = build_dataset(DatasetConfig(reader="merr", annotation=str(corpus / "train.txt"), frames=str(corpus / "frames"),
                                          label_set="mer2023", tasks=["emotion"]), train=False)
    generated = predict(tiny_model, dataset, batch_size=3, max_new_tokens=4, progress=False)
    both = predict(tiny_model, dataset, batch_size=3, max_new_tokens=4, progress=False, answer_mode="both")
    scored = predict(tiny_model, dataset, batch_size=3, max_new_tokens=4, progress=False, answer_mode="score_labels")
    assert [r["answer"] for r in both] == [r["answer"] for r in generated]  # generation untouched
    assert [r["scored_answer"] for r in both] == [r["answer"] for r in scored]
    for record in scored:
        probs = record["label_probs"]
        assert list(probs) == list(dataset.labels) and abs(sum(probs.values()) - 1) < 1e-4
        assert record["answer"] == max(probs, key=probs.get)
    result = score_predictions(scored_view(both), "mer2023", labels="mer2023", task="emotion")
    assert result["metrics"]["n_invalid"] == 0 and result["metrics"]["n"] == len(dataset)
    with pytest.raises(ValueError, match="closed label set"):
        open_set = build_dataset(DatasetConfig(reader="merr", annotation=str(corpus / "train.txt"),
                                               frames=str(corpus / "frames"), label_set="open", tasks=["emotion"]),
                                 train=False)
        predict(tiny_model, open_set, answer_mode="score_labels", progress=False)
