"""MERR builder: AU backends (OpenFace CSVs, dlib landmarks on a real photo), tone rules, endpoint
backends through a local fake OpenAI-compatible server, resumability, and build -> train.py."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import REPO, tiny_model_section
from minigpt4.common.openai_client import EndpointConfig, EndpointError, OpenAIClient
from minigpt4.data.synthetic import generate_corpus, render_voice
from minigpt4.merr import aus, media
from minigpt4.merr.build import MerrBuilder
from minigpt4.merr.config import load_merr_config
from minigpt4.merr.prosody import measure, tone_word


def grace_hopper_clip(frames: int = 24, peak: int = 15, amount: float = 14.0) -> np.ndarray:
    """matplotlib's Grace Hopper photo animated: the mouth corners are warped up and out (a smile)
    with a Gaussian time course centred on frame `peak`; the other frames are the photo as is."""
    import matplotlib.cbook as cbook
    from PIL import Image

    image = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    image = cv2.resize(image, (256, 300), interpolation=cv2.INTER_AREA)
    points = media.LandmarkPredictor()(image, media.DlibFaceDetector().detect(image)[0])
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    clip = []
    for t in range(frames):
        weight = np.exp(-0.5 * ((t - peak) / 2.0) ** 2)
        dx, dy = np.zeros_like(xx), np.zeros_like(yy)
        for index, side in ((48, -1), (54, 1)):
            cx, cy = points[index]
            bump = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 9.0 ** 2))
            dy += weight * amount * bump  # sample from below: the corner moves up
            dx -= side * weight * amount * 0.5 * bump  # and outwards
        clip.append(cv2.remap(image, xx + dx, yy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(clip)


def test_landmark_aus_find_the_smile_peak_on_a_real_photo():
    clip = grace_hopper_clip(peak=15)
    points, missing = media.landmarks_per_frame(clip, "dlib", range(len(clip)))
    assert missing == 0 and np.isfinite(points).all()
    track = aus.landmark_aus(points)
    peak = aus.peak_index(track)
    assert peak == 15
    active = aus.active_aus(track[peak])
    assert "AU12" in active and active["AU12"] >= 2.0
    assert aus.au_label(active)[0] == "happy"
    assert "lip corners pulled up" in aus.expression_phrases(active)
    assert not aus.active_aus(track[0])  # the untouched photo is the clip's neutral
    # another peak position moves the answer: the test can fail
    other = aus.landmark_aus(media.landmarks_per_frame(grace_hopper_clip(peak=6), "dlib", range(24))[0])
    assert aus.peak_index(other) == 6


def test_openface_csv_format_peak_and_labels(tmp_path):
    track = np.zeros((10, len(aus.AU_NAMES)), np.float32)
    col = {name: i for i, name in enumerate(aus.AU_NAMES)}
    track[6, [col["AU01"], col["AU02"], col["AU05"], col["AU26"]]] = [2.0, 1.8, 2.5, 3.0]
    track[2, col["AU04"]] = 1.5
    track[8] = np.nan  # OpenFace lost the face
    path = tmp_path / "clip.csv"
    aus.write_openface_csv(path, track)
    header = path.read_text().splitlines()[0].split(", ")
    assert header[:5] == ["frame", "face_id", "timestamp", "confidence", "success"]
    assert "AU01_r" in header and "AU28_c" in header and "AU28_r" not in header
    back = aus.read_openface_csv(path, 10)
    assert np.isnan(back[8]).all()
    assert back[6, col["AU26"]] == pytest.approx(3.0) and back[2, col["AU04"]] == pytest.approx(1.5)
    assert aus.peak_index(back) == 6
    assert aus.au_label(aus.active_aus(back[6])) == ("surprise", "moderate", pytest.approx(2.325))
    # the appendix's rule: only the most frequent AUs count, so a brief burst of rare AUs loses
    smile = np.zeros((10, len(aus.AU_NAMES)), np.float32)
    smile[:8, col["AU12"]] = [1.0, 1.2, 1.5, 1.8, 2.0, 1.8, 1.5, 1.2]
    smile[9, [col["AU04"], col["AU05"], col["AU07"]]] = 3.0
    assert aus.peak_index(smile, "sum") == 9 and aus.peak_index(smile, "frequent", top_k=1) == 4
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(aus.OpenFaceError, match="bad.csv"):
        aus.read_openface_csv(bad)


def test_label_rule_strength_and_short_table():
    assert aus.au_label({"AU06": 2.5, "AU12": 2.5}) == ("happy", "strong", pytest.approx(2 / 3 * 2.5, abs=1e-3))
    assert aus.au_label({"AU12": 1.0}) == ("neutral", "", 0.0)  # 1 of 3 AUs: under half
    assert aus.au_label({"AU06": 1.7, "AU12": 1.7}, table="short")[:2] == ("happy", "moderate")


@pytest.mark.parametrize("label, tone", [("angry", "angry"), ("sad", "sad"), ("surprise", "shocked"), ("happy", "joyful"),
                                         ("neutral", "calm")])
def test_prosody_rules_on_synthetic_voices(label, tone):
    audio = render_voice(label, 1.0, 1.0, np.random.default_rng(0))
    assert tone_word(measure(audio)) == tone
    assert tone_word(measure(np.zeros(16000, np.float32))) == "calm"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
def test_prosody_on_synthesised_speech(tmp_path):
    from minigpt4.common.media import load_audio

    speech = {"angry": ["-a", "200", "-p", "80", "-s", "220", "How dare you lie to me again! Get out!"],
              "sad": ["-a", "40", "-p", "10", "-s", "110", "I miss her so much. Nothing feels right."]}
    for tone, args in speech.items():
        subprocess.run(["espeak-ng", "-w", str(tmp_path / f"{tone}.wav"), *args], check=True)
        assert tone_word(measure(load_audio(tmp_path / f"{tone}.wav", 16000))) == tone


# ------------------------------------------------------------------------------------------
# a fake OpenAI-compatible server
# ------------------------------------------------------------------------------------------

class FakeOpenAI(ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict, bytes]] = []
        self.fail_next = 0
        self.delay = 0.0
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        server: FakeOpenAI = self.server
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        server.requests.append((self.path, dict(self.headers), raw))
        with server.lock:
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        time.sleep(server.delay)
        with server.lock:
            server.in_flight -= 1
        if server.fail_next:
            server.fail_next -= 1
            return self._send(503, {"error": "busy"})
        if self.path not in ("/v1/audio/transcriptions", "/v1/chat/completions"):
            return self._send(404, {"error": "no such route"})
        if self.path == "/v1/audio/transcriptions":
            assert b'name="file"' in raw and b"RIFF" in raw
            return self._send(200, {"text": " hello there "})
        body = json.loads(raw)
        content = body["messages"][-1]["content"]
        if isinstance(content, list):
            kinds = {part["type"] for part in content}
            if "image_url" in kinds:
                assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
                reply = "a woman in a navy uniform in front of a flag."
            else:
                assert base64.b64decode(content[1]["input_audio"]["data"])[:4] == b"RIFF"
                reply = "The tone of the speaker is angry."
        elif body["messages"][0]["role"] == "system":
            label = content.rsplit("feels ", 1)[1].rstrip(".")
            # one label gets a contradictory answer, to exercise the filter
            reply = (f"The clues point to {label}, although the person may also be happy." if label == "sad"
                     else f"The raised voice and the words show that the person feels {label}.")
        else:
            reply = "?"
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": reply}}]})

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_server():
    server = FakeOpenAI()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_shared_client_retries_caches_and_keeps_the_key_out_of_files(fake_server, tmp_path):
    cfg = EndpointConfig(url=fake_server.url, model="m", api_key_env="MY_KEY", backoff_s=0.5, max_retries=2)
    waits = []
    client = OpenAIClient(cfg, cache_path=tmp_path / "c.jsonl", env={"MY_KEY": "sk-secret"}, sleep=waits.append)
    fake_server.fail_next = 1
    assert client.transcribe(b"RIFF....WAVEfmt ") == "hello there"
    assert waits == [0.5] and client.n_requests == 2
    assert fake_server.requests[-1][1]["Authorization"] == "Bearer sk-secret"
    again = OpenAIClient(cfg, cache_path=tmp_path / "c.jsonl", env={"MY_KEY": "sk-secret"})
    assert again.transcribe(b"RIFF....WAVEfmt ") == "hello there" and again.n_requests == 0
    assert "sk-secret" not in (tmp_path / "c.jsonl").read_text()
    fake_server.fail_next = 3
    with pytest.raises(EndpointError, match="failed 3 times") as err:
        OpenAIClient(cfg, env={"MY_KEY": "sk-secret"}, sleep=lambda s: None).chat([{"role": "user", "content": "x"}])
    assert "sk-secret" not in str(err.value)


def test_shared_client_caps_requests_in_flight(fake_server):
    from concurrent.futures import ThreadPoolExecutor

    fake_server.delay = 0.15
    client = OpenAIClient(EndpointConfig(url=fake_server.url, model="m", concurrency=2), env={})
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda i: client.transcribe(f"RIFF{i}".encode()), range(6)))
    assert replies == ["hello there"] * 6 and len(fake_server.requests) == 6
    assert fake_server.max_in_flight == 2


def _merr_cfg(tmp_path, data: Path, **sections) -> Path:
    cfg = {"faces": {"face_detector": "center"}, "transcript": {"csv": str(data / "transcripts.csv")}, "workers": 3}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "merr.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _labels_file(data: Path, out: Path) -> Path:
    lines = "".join((data / f"{split}.txt").read_text() for split in ("train", "val", "test"))
    out.write_text(lines)
    return out


def test_endpoint_backends_filters_and_resume(fake_server, tmp_path, monkeypatch):
    data = generate_corpus(tmp_path / "data", clips=6, size=64)
    monkeypatch.setenv("MERR_TEST_KEY", "sk-do-not-store")
    endpoint = {"url": fake_server.url, "model": "fake-vlm", "api_key_env": "MERR_TEST_KEY", "backoff_s": 0.0}
    cfg_path = _merr_cfg(tmp_path, data, visual={"backend": "openai", "endpoint": endpoint},
                         tone={"backend": "openai", "endpoint": endpoint},
                         transcript={"backend": "openai", "endpoint": endpoint},
                         reason={"backend": "openai", "endpoint": endpoint, "neutral_rate": 0.5},
                         labels={"annotation": str(_labels_file(data, tmp_path / "labels.txt"))})
    cfg = load_merr_config(cfg_path)
    videos = sorted((data / "videos").glob("*.mp4"))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "merr"
    summary = MerrBuilder(cfg, out, progress=False).run(videos + [tmp_path / "broken.mp4"])
    assert list(summary["failed"]) == ["broken"] and "analyse" in summary["failed"]["broken"]
    assert summary["analysed"] == 6
    coarse = json.loads((out / "MERR_coarse_grained.json").read_text())
    caption = next(iter(coarse.values()))["caption"]
    assert caption.startswith("This person in the video is a woman in a navy uniform in front of a flag. ")
    assert "the person's tone is angry. Saying: hello there" in caption
    assert summary["coarse"] == 5  # six labelled clips, the neutral one is not coarse
    fine = json.loads((out / "MERR_fine_grained.json").read_text())
    assert summary["drops"]["fine: reasoning asserts another label"] == 1  # the sad clip
    assert "synth_00003" not in fine and len(fine) == summary["fine"] == 5  # 4 emotional + round(0.5 * 4) neutral, 1 available
    assert fine["synth_00000"]["smp_reason_caption"].endswith("feels neutral.")
    requests = len(fake_server.requests)
    everything = "".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file() and p.suffix != ".png")
    assert "sk-do-not-store" not in everything
    assert fake_server.requests[0][1]["Authorization"] == "Bearer sk-do-not-store"
    # a second run resumes: no request is sent, outputs are identical
    before = (out / "MERR_fine_grained.json").read_text()
    MerrBuilder(load_merr_config(cfg_path), out, progress=False).run(videos)
    assert len(fake_server.requests) == requests
    assert (out / "MERR_fine_grained.json").read_text() == before


def test_openface_backend_reads_csvs_and_names_a_clip_without_one(tmp_path):
    data = generate_corpus(tmp_path / "data", clips=3, size=64)
    csvs = tmp_path / "openface"
    csvs.mkdir()
    peaks = {"synth_00000": 5, "synth_00001": 2}
    for name, peak in peaks.items():
        track = np.zeros((8, len(aus.AU_NAMES)), np.float32)
        track[peak, [aus.AU_NAMES.index("AU06"), aus.AU_NAMES.index("AU12")]] = 2.0
        aus.write_openface_csv(csvs / f"{name}.csv", track)
    cfg = load_merr_config(_merr_cfg(tmp_path, data, faces={"backend": "openface", "openface_csv_dir": str(csvs),
                                                            "openface_bin": "no-such-openface-binary"}))
    out = tmp_path / "merr"
    summary = MerrBuilder(cfg, out, progress=False).run(sorted((data / "videos").glob("*.mp4")))
    assert json.loads((out / "peak_frames.json").read_text()) == peaks
    assert "no-such-openface-binary" in summary["failed"]["synth_00002"]
    clips = json.loads((out / "MERR_clips.json").read_text())
    assert clips["synth_00000"]["pseu_emotion"] == "happy" and clips["synth_00000"]["label"] == "happy"
    assert clips["synth_00000"]["peak_AU_list"] == {"AU06": 2.0, "AU12": 2.0}


def test_bad_backend_name_is_one_error_line(tmp_path):
    (tmp_path / "v").mkdir()
    result = subprocess.run([sys.executable, "-m", "minigpt4.merr", "build", "--videos", str(tmp_path / "v"), "--out",
                             str(tmp_path / "o"), "--options", "tone.backend=qwen"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: tone.backend: unknown backend 'qwen'")


def test_wrong_endpoint_stops_the_build_with_one_error_line(fake_server, tmp_path):
    data = generate_corpus(tmp_path / "data", clips=2, size=64)
    cfg = _merr_cfg(tmp_path, data, reason={"backend": "openai", "endpoint": {"url": fake_server.url + "/wrong", "model": "m"}})
    result = subprocess.run([sys.executable, "-m", "minigpt4.merr", "build", "--videos", str(data / "videos"), "--out",
                             str(tmp_path / "o"), "--cfg-path", str(cfg), "--no-progress",
                             "--options", f"labels.annotation={_labels_file(data, tmp_path / 'l.txt')}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: reason endpoint at ") and "HTTP 404" in last
    assert len(fake_server.requests) == 1  # not retried, not repeated for the second clip


@pytest.mark.slow
def test_build_from_generated_clips_then_train_on_the_output(tiny_dir, tiny_encoders, tmp_path):

    data = generate_corpus(tmp_path / "data", clips=18, size=64)
    encoders = tiny_encoders
    features = yaml.safe_load((REPO / "minigpt4/configs/features/tiny.yaml").read_text())
    features.update(audio_encoder=str(encoders["hubert"]), local_encoder=str(encoders["mae"]),
                    temporal_encoder=str(encoders["videomae"]))
    (tmp_path / "features.yaml").write_text(yaml.safe_dump(features))
    cfg_path = _merr_cfg(tmp_path, data, features_cfg=str(tmp_path / "features.yaml"),
                         labels={"annotation": str(_labels_file(data, tmp_path / "labels.txt")), "label_set": "mer2023"})
    out = tmp_path / "merr"
    built = subprocess.run([sys.executable, "-m", "minigpt4.merr", "build", "--videos", str(data / "videos"), "--out",
                            str(out), "--cfg-path", str(cfg_path), "--with-features", "--no-progress"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["analysed"] == 18 and summary["coarse"] == 15 and not summary["failed"]
    assert len((out / "MERR_coarse_grained.txt").read_text().splitlines()) == 15
    assert all((out / folder / "synth_00001.npy").is_file() for folder in ("HL-UTT", "mae_340_UTT", "maeV_399_UTT"))
    assert (out / "class_histogram.png").stat().st_size > 1000
    dataset = {"reader": "merr", "transcripts": str(out / "transcripts.csv"), "frames": str(out / "frames"),
               "label_set": "mer2023"}
    train_cfg = {
        "model": {**tiny_model_section(tiny_dir), "max_txt_len": 96},
        "datasets": {"merr_coarse": {**dataset, "annotation": str(out / "MERR_coarse_grained.txt"),
                                     "captions": str(out / "MERR_coarse_grained.json"), "tasks": ["emotion", "reason"]},
                     "merr_fine": {**dataset, "annotation": str(out / "MERR_fine_grained.txt"),
                                   "captions": str(out / "MERR_fine_grained.json"), "tasks": ["reason_v2"]}},
        "run": {"output_dir": str(tmp_path / "run"), "seed": 3, "max_epochs": 1, "iters_per_epoch": 4, "batch_size": 2, "log_every": 1,
                "num_workers": 0, "device": "cpu"},
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train_cfg))
    trained = subprocess.run([sys.executable, "train.py", "--cfg-path", str(tmp_path / "train.yaml")], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and all(np.isfinite(losses))

    # the `model` backends: our (here untrained, tiny) model describes, reasons and second-guesses labels
    infer = {"model": {**tiny_model_section(tiny_dir), "checkpoint": None}, "features": features, "label_set": "mer2023",
             "device": "cpu", "generation": {"max_new_tokens": {"emotion": 4, "reason": 8, "reason_v2": 8}}}
    (tmp_path / "infer.yaml").write_text(yaml.safe_dump(infer))
    model_cfg = load_merr_config(cfg_path, [f"visual.backend=model", f"visual.model_cfg={tmp_path / 'infer.yaml'}",
                                            "reason.backend=model", f"reason.model_cfg={tmp_path / 'infer.yaml'}",
                                            f"labels.model_cfg={tmp_path / 'infer.yaml'}", "labels.annotation=''",
                                            "labels.min_probability=0.0", "labels.label_set=mer2023"])
    videos = sorted((data / "videos").glob("*.mp4"))[:3]
    summary = MerrBuilder(model_cfg, tmp_path / "merr_model", progress=False).run(videos)
    assert not summary["failed"] and summary["label_sources"] == {"model": 3}
    stores = [json.loads((tmp_path / "merr_model/work/clips" / f"{v.stem}.json").read_text()) for v in videos]
    for store in stores:
        probs = store["model_label"]["value"]
        assert set(probs) == {"neutral", "angry", "happy", "sad", "worried", "surprise"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert isinstance(store["visual"]["value"], str)


@pytest.mark.slow
def test_bench_merr_writes_stage_throughputs(tmp_path):
    from benchmarks.bench_merr import main

    result = main(["--clips", "2", "--seconds", "0.4", "--json", str(tmp_path / "merr.json")])
    saved = json.loads((tmp_path / "merr.json").read_text())
    assert [row["stage"] for row in saved["stages"]] == [row["stage"] for row in result["stages"]]
    assert len(saved["stages"]) == 6 and all(row["clips_per_s"] > 0 for row in saved["stages"])
    assert saved["build_summary"]["analysed"] == 2 and not saved["build_summary"]["failed"]


def test_builder_tracks_the_small_face_of_a_real_photo_wide_shot(tmp_path):
    """The wide 1080p shot of tests/test_features_photo.py (a 100-pixel face, a 2.2x larger pale
    copy in frames 12-17): the builder follows the face as feature extraction does, where the
    largest box of a frame would be the copy and the old shrink-to-480 detection finds nothing."""
    from minigpt4.features.faces import DlibFaceDetector, iou
    from minigpt4.features.sample_clips import PhotoClip, write_photo_clip

    wide = PhotoClip(num_frames=24, seed=1)
    video = tmp_path / "videos" / "wide.mp4"
    video.parent.mkdir()
    write_photo_clip(video, wide, audio=False)
    frames = media.read_frames(video)
    detector = DlibFaceDetector()
    assert detector.detect(frames[14]) == []  # the old rule's detection: the face is too small at 480 pixels
    assert iou(detector.detect(frames[14], 64)[0], wide.distractor_box()) > 0.5  # the largest box is the copy

    faces = media.FaceAnalyser("dlib", min_face_size=64).analyse(frames, range(len(frames)))
    overlaps = [iou(box, wide.face_box(t)) for t, box in enumerate(faces.boxes)]
    assert faces.missing == 0 and min(overlaps) > 0.5, overlaps
    assert np.isfinite(faces.points).all()

    cfg = load_merr_config(None, ["faces.face_detector=dlib", "tone.backend=none", "transcript.backend=none"])
    summary = MerrBuilder(cfg, tmp_path / "merr", progress=False).run([video])
    assert summary["analysed"] == 1 and not summary["failed"]
    analysed = json.loads((tmp_path / "merr/work/clips/wide.json").read_text())["analyse"]["value"]
    assert analysed["frames_without_own_face"] == 0
    assert "a wide shot" in analysed["visual_objective"] and "on the left of the frame" in analysed["visual_objective"]
