"""The shared OpenAI-compatible client against hostile local servers (127.0.0.1 only): a redirect to
another server must not carry the key there, a server that trickles its reply is cut at the
deadline, and a run with a key leaves the key in no file."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from minigpt4.common.config import ConfigError, to_yaml
from minigpt4.common.openai_client import EndpointConfig, EndpointConfigError, EndpointError, OpenAIClient
from minigpt4.eval.report import write_predictions
from minigpt4.eval.scoring import score_main
from minigpt4.run_config import EvalRunConfig, load_eval_config

KEY = "sk-must-stay-in-memory-1234"


class Server(ThreadingHTTPServer):
    """A local server whose handler is a function of (handler, raw body); records what it saw."""

    daemon_threads = True

    def __init__(self, respond):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.respond = respond
        self.seen: list[tuple[str, str, dict]] = []  # (method, path, headers)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def _any(self):
        server: Server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        server.seen.append((self.command, self.path, dict(self.headers)))
        try:
            server.respond(self, raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: what the trickle test wants

    do_POST = do_GET = _any  # noqa: N815

    def log_message(self, *args):
        pass


def chat_reply(handler, text="ok"):
    data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@pytest.fixture()
def serve():
    servers = []

    def start(respond) -> Server:
        server = Server(respond)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def client_for(url: str, **cfg) -> OpenAIClient:
    endpoint = EndpointConfig(url=url, model="m", api_key_env="TEST_KEY", backoff_s=0.0, **cfg)
    return OpenAIClient(endpoint, env={"TEST_KEY": KEY}, sleep=lambda s: None)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_cross_origin_redirect_is_an_error_and_the_key_never_leaves(serve, status):
    elsewhere = serve(lambda h, raw: chat_reply(h, "from the other server"))

    def redirect(handler, raw):
        handler.send_response(status)
        handler.send_header("Location", elsewhere.origin + "/v1/chat/completions")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    first = serve(redirect)
    client = client_for(first.origin + "/v1", max_retries=2)
    with pytest.raises(EndpointConfigError) as err:
        client.chat([{"role": "user", "content": "hi"}])
    assert f"HTTP {status}" in str(err.value) and elsewhere.origin + "/v1/chat/completions" in str(err.value)
    assert KEY not in str(err.value)
    assert elsewhere.seen == []  # not followed at all: the other server never saw a request, nor the key
    assert len(first.seen) == 1 and first.seen[0][2]["Authorization"] == f"Bearer {KEY}"  # and not retried


def test_a_trickling_server_is_cut_at_the_total_deadline(serve):
    stop = threading.Event()

    def trickle(handler, raw):  # valid headers, then one byte of the body every 0.1 s, for ever
        body = json.dumps({"choices": [{"message": {"content": "x" * 10_000}}]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:
            if stop.is_set():
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.1)

    server = serve(trickle)
    client = client_for(server.origin + "/v1", timeout_s=1.0, max_retries=1)
    start = time.monotonic()
    try:
        with pytest.raises(EndpointError, match="within 1 s"):
            client.chat([{"role": "user", "content": "hi"}])
    finally:
        stop.set()
    elapsed = time.monotonic() - start
    assert 1.9 <= elapsed < 4.0, elapsed  # two tries of 1 s each, each cut at its deadline
    assert client.n_requests == 2


def test_a_server_that_trickles_its_headers_is_cut_too(serve):
    stop = threading.Event()

    def slow_headers(handler, raw):
        handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        while not stop.is_set():
            handler.wfile.write(b"X: y\r\n")
            handler.wfile.flush()
            time.sleep(0.1)

    server = serve(slow_headers)
    client = client_for(server.origin + "/v1", timeout_s=0.5, max_retries=0)
    start = time.monotonic()
    try:
        with pytest.raises(EndpointError, match="within 0.5 s"):
            client.chat([{"role": "user", "content": "hi"}])
    finally:
        stop.set()
    assert time.monotonic() - start < 2.0


def test_the_judge_key_is_a_variable_name_never_a_config_value(tmp_path):
    with pytest.raises(ConfigError, match="api_key"):  # the old field is gone: a key in YAML is refused
        load_eval_config_from(tmp_path, {"run": {"judge": {"api_key": KEY}}})
    cfg = load_eval_config_from(tmp_path, {"run": {"judge": {"api_key_env": "MY_JUDGE_KEY"}}})
    written = to_yaml(cfg)
    assert "api_key_env: MY_JUDGE_KEY" in written and KEY not in written
    assert "api_key_env: OPENAI_API_KEY" in to_yaml(EvalRunConfig())


def load_eval_config_from(tmp_path: Path, values: dict) -> EvalRunConfig:
    path = tmp_path / "eval.yaml"
    path.write_text(json.dumps(values))  # JSON is YAML
    return load_eval_config(str(path))


def test_a_judged_run_with_a_key_leaves_it_in_no_file(serve, tmp_path, monkeypatch):
    server = serve(lambda h, raw: chat_reply(h, "The clues agree.\nScore: 7"))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("EMER_JUDGE_URL", server.origin + "/v1")
    monkeypatch.setenv("EMER_JUDGE_MODEL", "judge-m")
    records = [{"name": f"c{i}", "task": "reason", "answer": f"She smiles at clue {i}.",
                "reference": f"She smiles and laughs at clue {i}."} for i in range(3)]
    pred = write_predictions(records, tmp_path / "run" / "predictions.jsonl")
    out = tmp_path / "run" / "scores"
    assert score_main(["--score", str(pred), "--dataset", "emer", "--out", str(out)], print_fn=lambda s: None) == 0
    assert server.seen and all(h["Authorization"] == f"Bearer {KEY}" for _, _, h in server.seen)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "emer_judge_cache.jsonl" for p in files) and len(files) >= 3
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
