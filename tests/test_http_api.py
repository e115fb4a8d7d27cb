"""The HTTP API of the web demo: app.py in a subprocess, called with gradio_client like any program.

`/predict` must return exactly the JSON object of `python -m minigpt4.infer --json` for the same
clip (timings aside), on the tiny model the conftest `workspace` trains (it has memorised each clip's label).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port
from minigpt4.infer import main as infer_main
from test_infer import ENV, REPO, TINY_CFG

pytestmark = pytest.mark.slow
TIMING_KEYS = ("seconds", "timings")


@pytest.fixture(scope="module")
def server(workspace, tmp_path_factory):
    """app.py on the workspace's model, its uploads in a folder of its own, and an examples folder
    holding one listed clip and one clip the list leaves out (as a training clip would be)."""
    root = tmp_path_factory.mktemp("api")
    examples, uploads = root / "examples", root / "uploads"
    examples.mkdir()
    uploads.mkdir()
    listed, unlisted = (name for name in list(workspace["videos"])[:2])
    shutil.copy(workspace["videos"][listed], examples / f"{listed}.mp4")
    shutil.copy(workspace["videos"][unlisted], examples / f"{unlisted}.mp4")
    (examples / "list.txt").write_text(f"{listed} 8 x\n")
    port = free_port()
    log_path = root / "app.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "app.py", "--cfg-path", str(TINY_CFG), "--port", str(port),
                                   "--options", *workspace["options"], f"app.examples={examples}",
                                   f"app.examples_list={examples / 'list.txt'}"],
                                  cwd=REPO, env={**ENV, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(uploads)},
                                  stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"app.py exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"app.py did not answer on {url}:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"url": url, "uploads": uploads, "listed": examples / f"{listed}.mp4",
               "unlisted": examples / f"{unlisted}.mp4"}
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server["url"], verbose=False)


def test_api_documents_the_predict_endpoint(client):
    endpoint = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/predict"]
    params = {p["parameter_name"]: p for p in endpoint["parameters"]}
    assert list(params) == ["video", "task", "question", "transcript", "sample"]
    assert params["video"]["python_type"]["type"] == "filepath"
    assert params["task"]["parameter_default"] == "emotion" and params["sample"]["parameter_default"] is False


@pytest.mark.parametrize("task, transcript", [("emotion", ""), ("reason", "I took the bus to work")])
def test_predict_returns_the_json_of_the_command_line(client, workspace, task, transcript, capsys):
    from gradio_client import handle_file

    name, label = list(workspace["labels"].items())[-1]
    video = workspace["videos"][name]
    status = infer_main(["--cfg-path", str(TINY_CFG), "--video", str(video), "--task", task, "--transcript", transcript,
                         "--json", "--options", *workspace["options"]])  # in-process: what `python -m minigpt4.infer` runs
    out = capsys.readouterr()
    assert status == 0, out.err[-3000:]
    cli = json.loads(out.out)
    api = client.predict(handle_file(str(video)), task, "", transcript, False, api_name="/predict")
    assert isinstance(api, dict) and api["video"] == video.name == Path(cli["video"]).name
    assert api["seconds"] > 0 and set(api["timings"]) == set(cli["timings"])
    strip = lambda d: {k: v for k, v in d.items() if k not in (*TIMING_KEYS, "video")}  # noqa: E731
    assert strip(api) == strip(cli)
    if task == "emotion":
        assert api["label"] == label


def test_a_broken_upload_is_an_error_naming_the_file_and_the_server_keeps_answering(client, workspace, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "broken clip.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(bad)), api_name="/predict")
    message = str(err.value)
    assert message.startswith("error:") and "broken clip.mp4" in message and "/tmp/" not in message
    with pytest.raises(AppError, match="unknown task 'mood'"):
        client.predict(handle_file(str(next(iter(workspace["videos"].values())))), "mood", api_name="/predict")
    name, label = next(iter(workspace["labels"].items()))
    assert client.predict(handle_file(str(workspace["videos"][name])), api_name="/predict")["label"] == label


def test_oversize_and_over_long_requests_get_a_clear_message_fast(client, workspace, tmp_path):
    """Over the limits of the config (limits: pixels a frame, question length): refused in
    seconds, before anything is decoded, naming the file as sent."""
    import numpy as np
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from minigpt4.common.media import write_video

    big = tmp_path / "my 4k clip.mp4"
    write_video(big, np.zeros((3, 2160, 3840, 3), dtype=np.uint8), fps=25)
    start = time.monotonic()
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(big)), api_name="/predict")
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert message.startswith("error: my 4k clip.mp4: the frames are 3840x2160, over the limit of 2073600 pixels")
    assert "limits.max_pixels" in message

    clip = handle_file(str(next(iter(workspace["videos"].values()))))
    start = time.monotonic()
    with pytest.raises(AppError, match="error: the question has 200000 characters, over the limit of 1000"):
        client.predict(clip, "emotion", "why? " * 40_000, api_name="/predict")
    with pytest.raises(AppError, match="error: the transcript has 2001 characters, over the limit of 2000"):
        client.predict(clip, "emotion", "", "a" * 2001, api_name="/predict")
    assert time.monotonic() - start < 10


def test_uploads_are_removed_after_the_answer(client, server, workspace):
    from gradio_client import handle_file

    name, label = next(iter(workspace["labels"].items()))
    assert client.predict(handle_file(str(workspace["videos"][name])), api_name="/predict")["label"] == label
    assert not [p for p in server["uploads"].rglob("*.mp4")], list(server["uploads"].rglob("*"))


def test_only_the_listed_examples_can_be_fetched(server):
    def status(path: Path) -> int:
        try:
            with urllib.request.urlopen(f"{server['url']}gradio_api/file={path}", timeout=10) as reply:
                return reply.status
        except urllib.error.HTTPError as err:
            return err.code

    assert status(server["listed"]) == 200
    assert status(server["unlisted"]) in (403, 404)
    assert status(server["listed"].parent / "list.txt") in (403, 404)
