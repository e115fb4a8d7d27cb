"""EMER judges against a tiny local OpenAI-compatible server (no network beyond 127.0.0.1)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from minigpt4.eval.judge import (
    HTTPJudge,
    JudgeConfig,
    JudgeError,
    OfflineJudge,
    build_messages,
    extract_score,
    make_judge,
)
from minigpt4.eval.scoring import score_predictions


class FakeChatServer(ThreadingHTTPServer):
    """Answers POST /v1/chat/completions from a script: a list of (status, reply text, delay_s)."""

    def __init__(self, script, default_reply="Score: 7"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.default_reply = default_reply
        self.requests: list[dict] = []
        self.headers_seen: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server naming)
        server: FakeChatServer = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append(body)
        server.headers_seen.append(dict(self.headers))
        status, reply, delay = server.script.pop(0) if server.script else (200, server.default_reply, 0.0)
        if delay:
            time.sleep(delay)
        if self.path != "/v1/chat/completions":
            status, reply = 404, "not found"
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server_factory():
    servers = []

    def make(script=(), default_reply="Score: 7"):
        srv = FakeChatServer(script, default_reply)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _judge(srv, tmp_path, **kw) -> HTTPJudge:
    cfg = JudgeConfig(url=srv.url, model="judge-m", api_key_env="JUDGE_TEST_KEY", cache_path=str(tmp_path / "cache.jsonl"),
                      backoff_s=0.0, **kw)
    return HTTPJudge(cfg, sleep=lambda s: None, env={"JUDGE_TEST_KEY": "sk-test"})


def test_request_shape_and_score(server_factory, tmp_path):
    srv = server_factory(default_reply="The clues mostly agree.\nScore: 8")
    judge = _judge(srv, tmp_path)
    assert judge.score("clue_overlap", "She smiles.", "She smiles and laughs.") == 8.0
    body = srv.requests[0]
    assert body["model"] == "judge-m" and body["temperature"] == 0
    assert "She smiles and laughs." in body["messages"][1]["content"]
    assert srv.headers_seen[0]["Authorization"] == "Bearer sk-test"


def test_cache_makes_second_run_free(server_factory, tmp_path):
    srv = server_factory(default_reply="Score: 6")
    first = _judge(srv, tmp_path)
    assert first.score("label_overlap", "happy", "joyful") == 6.0
    assert first.score("label_overlap", "happy", "joyful") == 6.0  # in-memory cache
    assert len(srv.requests) == 1
    second = _judge(srv, tmp_path)  # a new process would do the same: read the JSONL
    assert second.score("label_overlap", "happy", "joyful") == 6.0
    assert second.n_requests == 0 and len(srv.requests) == 1
    # A different judge model is a different cache key.
    other = HTTPJudge(JudgeConfig(url=srv.url, model="other", cache_path=str(tmp_path / "cache.jsonl")))
    other.score("label_overlap", "happy", "joyful")
    assert len(srv.requests) == 2


def test_retry_after_server_error(server_factory, tmp_path):
    srv = server_factory(script=[(503, "busy", 0.0)], default_reply="Score: 9")
    waits: list[float] = []
    judge = HTTPJudge(
        JudgeConfig(url=srv.url, model="m", cache_path=str(tmp_path / "c.jsonl"), backoff_s=0.5, max_retries=2),
        sleep=waits.append,
    )
    assert judge.score("clue_overlap", "a", "b") == 9.0
    assert judge.n_requests == 2 and waits == [0.5]


def test_retry_after_timeout(server_factory, tmp_path):
    srv = server_factory(script=[(200, "Score: 2", 1.0)], default_reply="Score: 4")
    judge = _judge(srv, tmp_path, timeout_s=0.3, max_retries=1)
    assert judge.score("clue_overlap", "a", "b") == 4.0
    assert judge.n_requests == 2


def test_gives_up_after_retries_and_fails_fast_on_auth(server_factory, tmp_path):
    srv = server_factory(script=[(500, "x", 0.0)] * 3)
    with pytest.raises(JudgeError, match="failed 3 times"):
        _judge(srv, tmp_path, max_retries=2).score("clue_overlap", "a", "b")
    srv401 = server_factory(script=[(401, "bad key", 0.0)])
    judge = _judge(srv401, tmp_path)
    with pytest.raises(JudgeError, match="HTTP 401"):
        judge.score("clue_overlap", "a", "b")
    assert judge.n_requests == 1


def test_unparsable_reply_counts_as_judge_failure(server_factory, tmp_path):
    srv = server_factory(default_reply="I cannot rate this.")
    judge = _judge(srv, tmp_path)
    records = [
        {"name": "c1", "answer": "She is happy because she smiles.", "reference": "She smiles; she is happy."},
        {"name": "c2", "answer": "", "reference": "He shouts; he is angry."},
    ]
    result = score_predictions(records, "emer", judge=judge)
    m = result["metrics"]
    assert m["n_judge_failed"] == 2.0 and m["n_invalid"] == 1.0
    assert m["clue_overlap"] == 1.0  # only the empty answer scored, at the minimum, without a request
    assert m["n_empty_answers"] == 1.0 and len(srv.requests) == 2
    assert result["invalid"] == ["c1"] and "judge-m" in result["judge"]


@pytest.mark.parametrize(
    "reply, score",
    [("Score: 7", 7.0), ("**Score**: 8", 8.0), ("I'd give it 6/10.", 6.0), ("8 out of 10", 8.0),
     ("Reference emotions: happy\nPredicted emotions: joy\nScore: 9", 9.0), ("5", 5.0),
     ("Score: 12", None), ("between 3 and 4", None), ("no idea", None), ("", None)],
)
def test_extract_score(reply, score):
    assert extract_score(reply) == score


def test_offline_judge_is_deterministic_and_named_differently():
    judge = OfflineJudge()
    ref = "The woman smiles widely and her voice is cheerful, so she is happy."
    assert judge.score("clue_overlap", ref, ref) == 10.0
    assert judge.score("clue_overlap", "completely unrelated words", ref) == 1.0
    assert judge.score("label_overlap", "He is joyful.", ref) == 10.0  # joyful and cheerful/happy group together
    assert judge.score("label_overlap", "He is angry.", ref) == 1.0
    assert judge.score("label_overlap", "anything", "no emotion words here") is None
    result = score_predictions([{"name": "a", "answer": "She is happy.", "reference": ref}], "emer", judge_cfg={"kind": "offline"})
    assert "clue_overlap_offline" in result["metrics"] and "clue_overlap" not in result["metrics"]
    assert "NOT comparable" in result["judge"]


def test_make_judge_reads_environment(monkeypatch, tmp_path, server_factory):
    srv = server_factory(default_reply="Score: 3")
    monkeypatch.setenv("EMER_JUDGE_URL", srv.url + "/chat/completions")
    monkeypatch.setenv("EMER_JUDGE_MODEL", "env-model")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    judge = make_judge({"kind": "llm", "backoff_s": 0.0}, default_cache=tmp_path / "c.jsonl")
    assert judge.score("clue_overlap", "a", "b") == 3.0
    assert srv.requests[0]["model"] == "env-model" and "Authorization" not in srv.headers_seen[0]
    monkeypatch.delenv("EMER_JUDGE_URL")
    with pytest.raises(JudgeError, match="EMER_JUDGE_URL"):
        make_judge({"kind": "llm"}, default_cache=tmp_path / "c.jsonl")
    with pytest.raises(ValueError, match="unknown judge config"):
        make_judge({"kind": "llm", "temp": 0})


def test_prompts_and_bad_cache_file(tmp_path):
    label_prompt = build_messages("label_overlap", "p", "r")[1]["content"]
    assert "emotion words" in label_prompt and "Score:" in label_prompt
    with pytest.raises(ValueError, match="unknown EMER metric"):
        build_messages("style", "p", "r")
    bad = tmp_path / "cache.jsonl"
    bad.write_text('{"key": "k", "reply": "Score: 1"}\nnot json\n')
    with pytest.raises(ValueError, match=r"cache.jsonl:2"):
        HTTPJudge(JudgeConfig(url="http://127.0.0.1:9", model="m", cache_path=str(bad)))


# ---- a killed judging run resumes from its cache ---------------------------------------------

ITEMS = [(f"She smiles at clue {i}.", f"She smiles and laughs at clue {i}.") for i in range(6)]

KILLED_RUN = """
import sys
from minigpt4.eval.judge import HTTPJudge, JudgeConfig
judge = HTTPJudge(JudgeConfig(url=sys.argv[1], model="judge-m", cache_path=sys.argv[2], backoff_s=0.0))
for i in range(6):
    judge.score("clue_overlap", f"She smiles at clue {i}.", f"She smiles and laughs at clue {i}.")
"""


def _asked(srv) -> list[str]:
    return [body["messages"][1]["content"] for body in srv.requests]


def test_half_written_last_line_is_asked_again(server_factory, tmp_path):
    srv = server_factory(default_reply="Score: 5")
    cache = tmp_path / "cache.jsonl"
    first = _judge(srv, tmp_path)
    for prediction, reference in ITEMS[:3]:
        first.score("clue_overlap", prediction, reference)
    complete = cache.read_bytes()
    cache.write_bytes(complete + complete.splitlines(keepends=True)[-1][:40])  # killed while appending a 4th
    resumed = _judge(srv, tmp_path)
    assert [resumed.score("clue_overlap", p, r) for p, r in ITEMS] == [5.0] * 6
    assert len(srv.requests) == 6  # 3 before, 3 new: nothing cached was asked again
    assert all(ITEMS[i][1] in asked for i, asked in zip(range(3, 6), _asked(srv)[3:]))
    assert cache.read_bytes().startswith(complete) and len(cache.read_bytes().splitlines()) == 6
    third = _judge(srv, tmp_path)  # the file it left behind is whole: a third run asks nothing
    assert [third.score("clue_overlap", p, r) for p, r in ITEMS] == [5.0] * 6 and third.n_requests == 0


def test_cache_written_before_the_shared_client_is_still_read(server_factory, tmp_path):
    from minigpt4.eval.judge import cache_key

    srv = server_factory(default_reply="Score: 2")
    messages = build_messages("clue_overlap", *ITEMS[0])
    old_entry = {"key": cache_key("judge-m", messages), "model": "judge-m", "metric": "clue_overlap", "reply": "Score: 9"}
    (tmp_path / "cache.jsonl").write_text(json.dumps(old_entry) + "\n")
    judge = _judge(srv, tmp_path)
    assert judge.score("clue_overlap", *ITEMS[0]) == 9.0 and judge.n_requests == 0
    assert judge.score("clue_overlap", *ITEMS[1]) == 2.0 and judge.n_requests == 1


def test_killed_judging_process_resumes_from_its_cache(server_factory, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    # three quick replies, then the fourth hangs until the process is killed
    srv = server_factory(script=[(200, "Score: 4", 0.0)] * 3 + [(200, "Score: 4", 5.0)], default_reply="Score: 4")
    cache = tmp_path / "cache.jsonl"
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, srv.url, str(cache)],
                            env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        deadline = time.monotonic() + 60
        while len(srv.requests) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(srv.requests) == 4, "the judging process did not reach its fourth request"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(cache.read_text().splitlines()) == 3
    resumed = _judge(srv, tmp_path)
    assert [resumed.score("clue_overlap", p, r) for p, r in ITEMS] == [4.0] * 6
    assert resumed.n_requests == 3  # the one in flight when killed and the two never asked
    assert [ITEMS[i][1] in asked for i, asked in zip(range(3, 6), _asked(srv)[4:])] == [True] * 3
