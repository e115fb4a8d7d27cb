"""Label extraction (the owners' stage 1 / stage 2) against a fake local OpenAI-compatible server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from minigpt4.eval.emotion_wheel import load_emotion_wheels
from minigpt4.eval.label_extraction import (
    STAGE1_PROMPT, STAGE2_PROMPT, ExtractionConfig, ExtractionRefused, LexiconExtractor, LLMLabelExtractor, clean_reply,
    extract_all,
    make_extractor, stage1_prompt,
)
from unibench_fixtures import write_wheel_folder

REPLIES = {  # model answer -> stage-1 reply (with the prefixes and newlines the owners clean away)
    "He smiles and jumps around.": "Output: [happy, excited]\n",
    "She is crying quietly.": "输出：[sad]",
    "No clue at all.": "[]",
}


class FakeLLM(ThreadingHTTPServer):
    def __init__(self, fail_on=(), status=500):
        super().__init__(("127.0.0.1", 0), Handler)
        self.bodies, self.fail_on, self.status = [], set(fail_on), status

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        prompt = body["messages"][0]["content"]
        reason = prompt.rsplit("Input: ", 1)[1].rsplit("; Output: ", 1)[0]
        if reason in self.server.fail_on:
            self.send_response(self.server.status)
            self.end_headers()
            return
        if prompt.startswith("Please assume"):
            reply = REPLIES[reason]
        else:  # stage 2
            reply = "positive" if "happy" in reason else ("neutral" if reason == "[]" else "Negative")
        data = json.dumps({"choices": [{"message": {"content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    servers = []

    def make(**kw):
        srv = FakeLLM(**kw)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def extractor(srv, tmp_path, **kw):
    cfg = ExtractionConfig(url=srv.url, model="qwen-fake", api_key_env="", cache_path=str(tmp_path / "cache.jsonl"),
                           max_retries=0, concurrency=2, **kw)
    return LLMLabelExtractor(cfg, sleep=lambda s: None)


def test_clean_reply():
    assert clean_reply("  Output: [happy, excited]\n") == "[happy, excited]"
    assert clean_reply("输出：[sad]") == "[sad]"
    assert clean_reply("OutputInput: [a,\nb]") == "[a,b]"  # every prefix is tested in turn
    assert clean_reply("让我们来翻译一下：neutral") == "neutral"
    assert clean_reply("Negative") == "Negative"  # no lower-casing: stage 2 words are matched exactly


def test_stages_greedy_and_cache(server, tmp_path):
    srv = server()
    ext = extractor(srv, tmp_path)
    result = extract_all(dict(zip("abc", REPLIES)), ext.openset, "stage 1", ext.concurrency)
    assert result.labels == {"a": "[happy, excited]", "b": "[sad]", "c": "[]"} and not result.failed
    body = srv.bodies[0]
    assert sorted(b["messages"][0]["content"] for b in srv.bodies) == sorted(stage1_prompt(a) for a in REPLIES)
    assert all(len(b["messages"]) == 1 and b["messages"][0]["role"] == "user" for b in srv.bodies)
    assert stage1_prompt("x").endswith("Input: x; Output: ") and STAGE1_PROMPT.startswith("Please assume the role")
    assert body["temperature"] == 0.0 and body["max_tokens"] == 512 and "top_p" not in body
    sentiments = extract_all(result.labels, ext.sentiment, "stage 2").labels
    assert sentiments == {"a": "positive", "b": "Negative", "c": "neutral"}
    assert srv.bodies[-1]["messages"][0]["content"] == STAGE2_PROMPT.replace("{reason}", "[]")
    # a second run (a resumed job) reads every reply from the cache
    again = extractor(srv, tmp_path)
    n = len(srv.bodies)
    assert extract_all(dict(zip("abc", REPLIES)), again.openset, "stage 1").labels == result.labels
    assert len(srv.bodies) == n and again.client.n_requests == 0


def test_owners_sampling_is_an_option(server, tmp_path):
    srv = server()
    extractor(srv, tmp_path, sampling="owners").openset("No clue at all.")
    body = srv.bodies[0]
    assert (body["temperature"], body["top_p"], body["repetition_penalty"], body["max_tokens"]) == (0.7, 0.8, 1.05, 512)
    with pytest.raises(ValueError, match="unknown extraction sampling 'hot'"):
        extractor(srv, tmp_path, sampling="hot")


def test_failing_clip_is_counted_and_the_rest_finish(server, tmp_path):
    srv = server(fail_on={"She is crying quietly."})
    ext = extractor(srv, tmp_path)
    result = extract_all(dict(zip("abc", REPLIES)), ext.openset, "stage 1")
    assert set(result.labels) == {"a", "c"} and list(result.failed) == ["b"] and "HTTP 500" in result.failed["b"]
    refused = extractor(server(fail_on=set(REPLIES), status=401), tmp_path / "other")
    with pytest.raises(ExtractionRefused, match="HTTP 401"):
        extract_all(dict(zip("abc", REPLIES)), refused.openset, "stage 1")


def test_offline_lexicon_extractor(tmp_path):
    wheels = load_emotion_wheels(write_wheel_folder(tmp_path / "w"))
    ext = make_extractor({"kind": "offline_lexicon"}, wheels)
    assert isinstance(ext, LexiconExtractor) and ext.offline and ext.name == "offline-lexicon-v1"
    assert ext.openset("He looks Happy, but also fearful and tense; tense again.") == "[happy, tense]"
    assert ext.openset("Nothing here.") == "[]"
    assert ext.sentiment("[happy, tense]") == "positive"
    assert ext.sentiment("[worry]") == "negative" and ext.sentiment("[]") == "neutral"
    with pytest.raises(ValueError, match="unknown extraction config key"):
        make_extractor({"kind": "llm", "temprature": 0})
