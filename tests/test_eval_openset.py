"""MER2024-OV as its owners score it: `name, openset` CSVs, a per-clip grouping folder, LLM grouping.

The expected figures are computed by hand from the rule (each word -> the first word of its
group; accuracy |G∩P|/|P|, recall |G∩P|/|G| per clip; score = mean of the two means).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from minigpt4.cli.eval_emotion import main as eval_emotion_main
from minigpt4.eval.openset import (
    OpensetFormatError,
    group_map,
    openset_metrics,
    parse_grouping,
    read_grouping,
    read_openset_csv,
    write_grouping,
)
from minigpt4.eval.scoring import score_main, score_predictions
from test_eval_judge import _judge, server_factory  # noqa: F401 (fixture)

GOLD = {"c1": ["happy", "surprised"], "c2": ["angry"], "c3": ["sad", "lonely", "tired"]}
PRED = {"c1": ["joyful"], "c2": ["irritated", "calm"], "c3": ["sorrowful", "exhausted"]}
GROUPS = {
    "c1": [["happy", "joyful"], ["surprised"]],
    "c2": [["angry", "irritated"], ["calm"]],
    "c3": [["sad", "sorrowful"], ["lonely"], ["tired", "exhausted"]],
}
# c1: G={happy, surprised} P={happy}          acc 1/1  rec 1/2
# c2: G={angry} P={angry, calm}               acc 1/2  rec 1/1
# c3: G={sad, lonely, tired} P={sad, tired}   acc 2/2  rec 2/3
ACC = (1 + 1 / 2 + 1) / 3
REC = (1 / 2 + 1 + 2 / 3) / 3


def _write_csv(path, table):
    lines = ["name,openset"] + [f'{name},"{words!r}"' for name, words in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_folder(folder, groups=GROUPS):
    for name, g in groups.items():
        np.save(folder / f"{name}.npy", np.array(str(g)))  # as MERTools saves the LLM reply
    return folder


def test_hand_computed_case():
    m = openset_metrics(GOLD, PRED, GROUPS)
    assert m["set_accuracy"] == pytest.approx(ACC) and m["set_recall"] == pytest.approx(REC)
    assert m["score"] == pytest.approx((ACC + REC) / 2)
    # without the grouping nothing matches: the grouping is what makes the number
    bare = openset_metrics(GOLD, PRED, {k: [] for k in GOLD})
    assert bare["score"] == 0.0


def test_official_files_through_the_cli(tmp_path, capsys):
    gold = _write_csv(tmp_path / "gt.csv", GOLD)
    pred = _write_csv(tmp_path / "pred.csv", PRED)
    (tmp_path / "grouping").mkdir()
    folder = _write_folder(tmp_path / "grouping")
    assert read_openset_csv(gold)["c3"] == ["sad", "lonely", "tired"]
    assert read_grouping(folder / "c1.npy") == GROUPS["c1"]
    out = tmp_path / "scores"
    assert score_main(["--score", str(pred), "--gold", str(gold), "--dataset", "mer2024_ov", "--grouping", str(folder),
                       "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    assert m["score"] == pytest.approx((ACC + REC) / 2)
    assert "score_offline" in m and m["score_offline"] != pytest.approx(m["score"])  # the table groups differently
    assert "score_offline" in (out / "summary.md").read_text()
    # a clip without its grouping file is one error line naming the file
    (folder / "c2.npy").unlink()
    assert score_main(["--score", str(pred), "--gold", str(gold), "--dataset", "mer2024_ov", "--grouping", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "c2.npy" in err[0]


def test_offline_table_is_never_called_score():
    recs = [{"name": "o1", "task": "emotion", "answer": "happy, surprised", "label": ["happiness"]}]
    m = score_predictions(recs, "mer2024_ov")["metrics"]
    assert "score" not in m and m["score_offline"] == pytest.approx((0.5 + 1.0) / 2)


def test_format_errors():
    with pytest.raises(OpensetFormatError, match="list of lists"):
        parse_grouping("happy joyful", "x")
    assert parse_grouping("Here you go: [['happy', 'Joyful'], ['sad']]", "x") == [["happy", "joyful"], ["sad"]]


def test_llm_grouping_uses_judge_client_and_writes_folder(server_factory, tmp_path):  # noqa: F811
    replies = [(200, f"Groups: {GROUPS[name]!r}", 0.0) for name in GOLD]
    srv = server_factory(script=replies)
    judge = _judge(srv, tmp_path)
    recs = [{"name": n, "task": "emotion", "answer": ", ".join(PRED[n]), "label": GOLD[n]} for n in GOLD]
    out = tmp_path / "grouping"
    result = score_predictions(recs, "mer2024_ov", group_with_llm=True, judge=judge, grouping_out=out)
    assert result["metrics"]["score"] == pytest.approx((ACC + REC) / 2)
    assert len(srv.requests) == 3 and "irritated" in srv.requests[1]["messages"][0]["content"]
    assert read_grouping(out / "c3.npy") == GROUPS["c3"]
    again = score_predictions(recs, "mer2024_ov", grouping=out)  # the written folder re-scores without the LLM
    assert again["metrics"]["score"] == result["metrics"]["score"] and len(srv.requests) == 3


def test_write_grouping_round_trip(tmp_path):
    path = write_grouping(tmp_path / "a.npy", [["x", "y"]])
    assert read_grouping(path) == [["x", "y"]]


def test_group_map_later_group_wins_as_the_owners():
    # the owners fill a dict group by group, so a word listed twice takes its later group
    assert group_map([["angry"], ["irritated", "angry"]]) == {"angry": "irritated", "irritated": "irritated"}


# Cells in the shapes the owners' `string_to_list` accepts and `ast.literal_eval` does not.
OWNER_GOLD = {"c1": "[Happy, surprised]", "c2": "['angry', \"irritated\"]", "c3": "['sad', 'lonely']"}
OWNER_PRED = {"c1": "['joyful', \"can't\"]", "c2": "[irritated, calm]", "c3": "[]"}
OWNER_GROUPS = {
    "c1": [["happy", "joyful"], ["surprised"]],
    "c2": [["angry"], ["irritated", "angry"], ["calm"]],  # angry -> irritated (later group)
    "c3": [["sad"], ["lonely"]],
}
# c1: G={happy, surprised} P={happy, can, t} ("can't" splits at the apostrophe)  acc 1/3  rec 1/2
# c2: G={irritated} P={irritated, calm}                                          acc 1/2  rec 1/1
# c3: P empty                                                                    acc 0    rec 0
OWNER_ACC = (1 / 3 + 1 / 2 + 0) / 3  # 5/18
OWNER_REC = (1 / 2 + 1 + 0) / 3  # 1/2


def test_official_path_reads_cells_with_the_owners_rule_end_to_end(tmp_path):
    """MER2024-OV through the real `eval_emotion.py --score PRED.csv --gold GT.csv --grouping DIR`."""
    for name, table in (("gt.csv", OWNER_GOLD), ("pred.csv", OWNER_PRED)):
        with (tmp_path / name).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["name", "openset"])
            writer.writerows(table.items())
    assert read_openset_csv(tmp_path / "gt.csv")["c1"] == ["happy", "surprised"]
    (tmp_path / "grouping").mkdir()
    _write_folder(tmp_path / "grouping", OWNER_GROUPS)
    assert eval_emotion_main(["--score", str(tmp_path / "pred.csv"), "--dataset", "mer2024_ov", "--gold", str(tmp_path / "gt.csv"),
                              "--grouping", str(tmp_path / "grouping"), "--out", str(tmp_path / "o")]) == 0  # in-process
    m = json.loads((tmp_path / "o/metrics.json").read_text())["metrics"]
    assert m["set_accuracy"] == pytest.approx(OWNER_ACC) and m["set_recall"] == pytest.approx(OWNER_REC)
    assert m["score"] == pytest.approx((OWNER_ACC + OWNER_REC) / 2)  # 7/18
    assert m["n_invalid"] == 1.0  # c3's empty prediction


def test_list_shaped_answer_read_with_the_owners_rule(tmp_path):
    # "[...]" answers and gold strings are read with string_to_list: nothing removed, "and" does not split
    recs = [{"name": "l1", "task": "emotion", "answer": "  [Happy, a bit nervous and sad]\n", "label": "['happy', 'nervous']"}]
    (tmp_path / "g").mkdir()
    _write_folder(tmp_path / "g", {"l1": [["happy"], ["nervous"]]})
    m = score_predictions(recs, "mer2024_ov", grouping=tmp_path / "g")["metrics"]
    # G={happy, nervous} P={happy, "a bit nervous and sad"}: acc 1/2, rec 1/2
    assert m["set_accuracy"] == pytest.approx(0.5) and m["set_recall"] == pytest.approx(0.5)
    # free text is still split into items by the free-text parser: P={happy, nervous, sad}
    free = [dict(recs[0], answer="Happy, a bit nervous and sad")]
    m = score_predictions(free, "mer2024_ov", grouping=tmp_path / "g")["metrics"]
    assert m["set_accuracy"] == pytest.approx(2 / 3) and m["set_recall"] == pytest.approx(1.0)
