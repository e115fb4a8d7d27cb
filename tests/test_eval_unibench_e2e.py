"""eval_emotion.py --benchmark mer-unibench end to end: the tiny model on stand-ins for the nine sets,
label extraction through a fake local OpenAI-compatible server, the AffectGPT table."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml
from conftest import tiny_model_section

from minigpt4.cli.eval_emotion import main as eval_main
from minigpt4.eval.emotion_wheel import load_emotion_wheels
from minigpt4.eval.unibench import hit_rate, ov_gold_string, ov_scores, sentiment_scores
from test_eval_emotion import run_script
from test_eval_label_extraction import FakeLLM, Handler
from unibench_fixtures import write_unibench_standins

REAL_WHEELS = Path(__file__).resolve().parent / "fixtures" / "emotion_wheel"


class ConstantHandler(Handler):
    """Stage 1 answers every clip with `[happy, sad]` (after a prefix to clean), stage 2 with `positive`."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        reply = "Output: [happy, sad]" if body["messages"][0]["content"].startswith("Please assume") else "positive"
        data = json.dumps({"choices": [{"message": {"content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def llm():
    srv = FakeLLM()
    srv.RequestHandlerClass = ConstantHandler
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def write_config(path: Path, tiny_dir: Path, datasets: dict, out: Path, llm_url: str) -> Path:
    cfg = {"model": tiny_model_section(tiny_dir), "datasets": datasets,
           "run": {"output_dir": str(out), "batch_size": 4, "num_workers": 0, "device": "cpu",
                   "max_new_tokens": {"unibench": 6},
                   "unibench": {"wheels": str(REAL_WHEELS),
                                "extraction": {"url": llm_url, "model": "qwen-fake", "api_key_env": "", "max_retries": 0}}}}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_mer_unibench_end_to_end(tiny_dir, tmp_path, llm, capsys):
    datasets = write_unibench_standins(tmp_path / "data")
    cfg = write_config(tmp_path / "unibench.yaml", tiny_dir, datasets, tmp_path / "out", llm.url)
    proc = run_script("--cfg-path", str(cfg), "--benchmark", "mer-unibench", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    table = json.loads((out / "unibench.json").read_text())
    # expected main scores: every clip's labels are [happy, sad], every sentiment `positive`
    wheels = load_emotion_wheels(REAL_WHEELS)
    expected = {}
    for set_name in ("mer2023", "mer2024", "meld", "iemocap4"):
        gold = dict(line.split(",") for line in (out / set_name / "gold.csv").read_text().splitlines()[1:])
        expected[set_name] = hit_rate(gold, {n: "[happy, sad]" for n in gold}, wheels)["main"]
    for set_name in ("cmumosi", "cmumosei", "sims", "simsv2"):
        gold = {n: float(v) for n, v in (line.split(",") for line in (out / set_name / "gold.csv").read_text().splitlines()[1:])}
        expected[set_name] = sentiment_scores(gold, {n: "positive" for n in gold})["main"]
    ov_gold = {"ovmerdplus_000": ov_gold_string("[happy, excited]"), "ovmerdplus_001": "sad", "ovmerdplus_002": "neutral"}
    expected["ovmerdplus"] = ov_scores(ov_gold, {n: "[happy, sad]" for n in ov_gold}, wheels)["main"]
    headers = ["MER2023", "MER2024", "MELD", "IEMOCAPFour", "CMUMOSI", "CMUMOSEI", "SIMS", "SIMSv2", "OVMERDPlus"]
    assert list(table["scores"]) == headers and table["skipped"] == []
    assert [table["scores"][h] for h in headers] == [round(100 * expected[s], 2) for s in expected]
    assert table["mean"] == pytest.approx(round(100 * sum(expected.values()) / 9, 2), abs=0.006)
    assert (out / "unibench.md").read_text().count("| MER2023 | MER2024 | MELD | IEMOCAPFour |") == 1
    preds = [json.loads(line) for line in (out / "meld" / "predictions.jsonl").read_text().splitlines()]
    assert preds[0]["instruction"] == "Please recognize all possible emotional states of the character."
    assert len(preds) == 3 and (out / "iemocap4" / "predictions.jsonl").read_text().count("\n") == 2 + 1  # Session 5
    # --score: the same table from the saved answers, no model, every LLM reply from the cache
    n_requests = len(llm.bodies)
    del datasets["simsv2"]  # an unconfigured set is listed as skipped, not dropped
    cfg8 = write_config(tmp_path / "unibench8.yaml", tiny_dir, datasets, tmp_path / "out", llm.url)
    assert eval_main(["--cfg-path", str(cfg8), "--benchmark", "mer-unibench", "--score", str(out)]) == 0
    rescored = json.loads((out / "unibench.json").read_text())
    assert rescored["skipped"] == ["SIMSv2"] and rescored["mean"] is None
    assert {h: v for h, v in rescored["scores"].items() if h != "SIMSv2"} == {h: v for h, v in table["scores"].items() if h != "SIMSv2"}
    assert len(llm.bodies) == n_requests
    assert "Skipped (not configured): SIMSv2" in capsys.readouterr().out


def test_mer_unibench_bad_config_is_one_error_line(tiny_dir, tmp_path, capsys, llm):
    datasets = write_unibench_standins(tmp_path / "data", sets=("mer2023",))
    datasets["mer2023"]["tasks"] = ["emotion"]
    cfg = write_config(tmp_path / "c.yaml", tiny_dir, datasets, tmp_path / "out", llm.url)
    assert eval_main(["--cfg-path", str(cfg), "--benchmark", "mer-unibench"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "tasks: [unibench]" in err[0]
    datasets["mer2023"]["tasks"] = ["unibench"]
    cfg = write_config(tmp_path / "c.yaml", tiny_dir, datasets, tmp_path / "out", llm.url)
    assert eval_main(["--cfg-path", str(cfg), "--benchmark", "mer-unibench", "--options", "run.unibench.wheels=/nowhere"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "emotion-wheel folder not found: /nowhere" in err[0]
