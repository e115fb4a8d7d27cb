"""One MER-UniBench run from prediction records: extraction (fake LLM / offline), files, scores, the table."""

from __future__ import annotations

import json

import pytest

from minigpt4.eval.emotion_wheel import load_emotion_wheels
from minigpt4.eval.label_extraction import ExtractionConfig, LLMLabelExtractor, LexiconExtractor
from minigpt4.eval.scoring import score_main
from minigpt4.eval.unibench_run import ExtractionIncomplete, score_unibench_set, write_unibench_table
from test_eval_label_extraction import FakeLLM, server  # noqa: F401  (the fake server fixture)
from unibench_fixtures import write_wheel_folder

DISCRETE = [  # the hand-computed hit-rate case of test_eval_unibench, as model answers
    {"name": "h1", "answer": "He smiles and jumps around.", "label": "happy"},
    {"name": "h2", "answer": "She is crying quietly.", "label": "sad"},
    {"name": "h3", "answer": "No clue at all.", "label": "neutral"},
]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    return load_emotion_wheels(write_wheel_folder(tmp_path_factory.mktemp("wheels")))


def llm(srv, tmp_path):
    return LLMLabelExtractor(ExtractionConfig(url=srv.url, model="qwen-fake", api_key_env="", max_retries=0,
                                              cache_path=str(tmp_path / "cache.jsonl")), sleep=lambda s: None)


def test_discrete_set_through_a_fake_llm(server, tmp_path, wheels):  # noqa: F811
    srv = server()
    result = score_unibench_set("mer2023", DISCRETE, llm(srv, tmp_path), wheels, tmp_path / "mer2023")
    # stage 1 -> h1 [happy, excited], h2 [sad], h3 []; gold neutral is skipped; happy and sad hit where mapped
    assert result["main"] == pytest.approx(1.0) and result["per_wheel"]["wheel5"]["n_kept"] == 1.0
    assert (tmp_path / "mer2023" / "openset.csv").read_text().splitlines() == [
        "name,openset", 'h1,"[happy, excited]"', "h2,[sad]", "h3,[]"]
    # the files re-score with the score-only command to the same number
    printed = []
    assert score_main(["--dataset", "unibench-discrete", "--gold", str(tmp_path / "mer2023" / "gold.csv"),
                       "--score", str(tmp_path / "mer2023" / "openset.csv"), "--wheels", str(wheels.folder)],
                      print_fn=printed.append) == 0
    assert json.loads(printed[0])["main"] == pytest.approx(result["main"])


def test_sentiment_set_and_failed_clips(server, tmp_path, wheels):  # noqa: F811
    records = [dict(r, valence=v) for r, v in zip(DISCRETE, (1.0, -2.0, 0.0))]
    result = score_unibench_set("sims", records, llm(server(), tmp_path), None, tmp_path / "sims")
    assert result["n_kept"] == 2.0 and result["accuracy"] == 1.0  # positive / Negative(-> not positive)
    assert (tmp_path / "sims" / "sentiment.csv").read_text().splitlines()[1:] == ["h1,positive", "h2,Negative", "h3,neutral"]
    failing = llm(server(fail_on={"She is crying quietly."}), tmp_path / "other")
    with pytest.raises(ExtractionIncomplete, match="failed for 1 clip.*run again"):
        score_unibench_set("mer2024", DISCRETE, failing, wheels, tmp_path / "mer2024")
    assert not (tmp_path / "mer2024" / "metrics.json").exists()


def test_offline_extraction_is_named_differently_and_the_table(tmp_path, wheels):
    result = score_unibench_set("ovmerdplus", [{"name": "o1", "answer": "Happy and a bit worried.", "label": "[happy, worried]"},
                                               {"name": "o2", "answer": "Nothing.", "label": ""}],
                                LexiconExtractor(wheels), wheels, tmp_path / "ov")
    assert "main" not in result and result["main_offline_lexicon"] == pytest.approx(1.0)
    table = write_unibench_table({"ovmerdplus": result, "mer2023": None}, tmp_path, checkpoint="ckpt.pth")
    assert table["score"] == "UniBench_offline_lexicon" and table["scores"]["OVMERDPlus"] == 100.0
    md = (tmp_path / "unibench.md").read_text()
    assert "NOT comparable" in md and "Skipped (not configured): MER2023, MER2024, MELD" in md
    assert json.loads((tmp_path / "unibench.json").read_text())["mean"] is None
