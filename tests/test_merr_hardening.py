"""The MERR builder under stress: identical outputs in every process (prosody included), a damaged
per-clip work file redone instead of aborting the build, and flat memory on a long 1080p clip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minigpt4.data.synthetic import generate_corpus, render_voice
from minigpt4.merr.build import MerrBuilder
from minigpt4.merr.config import load_merr_config
from minigpt4.merr.prosody import measure

REPO = Path(__file__).resolve().parents[1]
OFFLINE = ["faces.face_detector=center", "transcript.backend=none", "workers=1"]  # tone: prosody (the default)


def python(code: str, *args: str, stdin: str = "") -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, input=stdin, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


MEASURE = """
import json, sys, numpy as np
from minigpt4.merr.prosody import measure
print(json.dumps(measure(np.load(sys.argv[1])).as_dict()))
"""


def test_prosody_is_the_same_in_every_process(tmp_path):
    """torchcrepe's own weighted_argmax dithers its bin centres with unseeded noise, once per
    process: each run (and each torchrun rank) got another pitch for the same voice."""
    voice = render_voice("happy", 1.0, 1.5, np.random.default_rng(3)).astype(np.float32)
    np.save(tmp_path / "voice.npy", voice)
    there = json.loads(python(MEASURE, str(tmp_path / "voice.npy")))
    here = measure(voice).as_dict()
    assert here["f0_hz"] > 0 and there == here


BUILD = """
import sys
from pathlib import Path
from minigpt4.merr.build import MerrBuilder
from minigpt4.merr.config import load_merr_config
videos, out = sys.argv[1], sys.argv[2]
summary = MerrBuilder(load_merr_config(None, sys.argv[3:]), out, progress=False).run(sorted(Path(videos).glob("*.mp4")))
assert summary["analysed"] and not summary["failed"], summary
"""


@pytest.mark.slow
def test_two_builds_in_two_processes_write_identical_clip_files(tmp_path):
    data = generate_corpus(tmp_path / "data", clips=3, size=64)
    outs = [tmp_path / "run1", tmp_path / "run2"]
    for out in outs:
        python(BUILD, str(data / "videos"), str(out), *OFFLINE)
    first, second = ((out / "MERR_clips.json").read_bytes() for out in outs)
    clips = json.loads(first)
    assert any(clip["prosody"] and clip["prosody"]["f0_hz"] > 0 for clip in clips.values()), clips  # pitch measured
    assert first == second


def test_a_damaged_work_file_is_redone_and_reported(tmp_path):
    data = generate_corpus(tmp_path / "data", clips=3, size=64)
    videos = sorted((data / "videos").glob("*.mp4"))
    cfg = load_merr_config(None, OFFLINE)
    out = tmp_path / "merr"
    first = MerrBuilder(cfg, out, progress=False).run(videos)
    before = (out / "MERR_clips.json").read_bytes()
    assert first["work_files_redone"] == {}
    work = out / "work" / "clips"
    (work / f"{videos[0].stem}.json").write_text('{"analyse": {"key": "abc", "val')  # cut short
    (work / f"{videos[1].stem}.json").write_bytes(b"\x00\xff\x00 disk garbage")
    (work / f"{videos[2].stem}.json").write_text('["not", "a", "store"]')
    again = MerrBuilder(load_merr_config(None, OFFLINE), out, progress=False).run(videos)
    assert sorted(again["work_files_redone"]) == sorted(v.stem for v in videos)
    assert "not JSON" in again["work_files_redone"][videos[0].stem]
    assert again["analysed"] == first["analysed"] and not again["failed"]
    assert (out / "MERR_clips.json").read_bytes() == before  # redone, same result
    assert json.loads((work / f"{videos[0].stem}.json").read_text())["analyse"]["value"]  # rewritten whole


MERR_PEAK_RSS = """
import sys
from pathlib import Path
from benchmarks.common import peak_rss_mib_each
from minigpt4.merr.build import MerrBuilder
from minigpt4.merr.config import load_merr_config
from minigpt4.merr.media import FaceAnalyser
cfg = load_merr_config(None, sys.argv[1:])
FaceAnalyser("center")  # load dlib's predictor once, before forking
jobs = [line.split() for line in sys.stdin]
print(*peak_rss_mib_each(lambda job: MerrBuilder(cfg, job[1], progress=False).run([Path(job[0])])["analysed"] == 1, jobs))
"""


@pytest.mark.slow
def test_builder_memory_is_flat_on_a_long_1080p_clip(tmp_path):
    from minigpt4.features.sample_clips import PhotoClip, write_photo_clip

    jobs = []
    for name, frames in (("short", 10), ("long", 90)):  # 1920x1080 at 10 fps: 1 s and 9 s
        write_photo_clip(tmp_path / f"{name}.mp4", PhotoClip(num_frames=frames, seed=2), fps=10, audio=False)
        jobs.append(f"{tmp_path / name}.mp4 {tmp_path / ('out_' + name)}\n")
    options = ["faces.face_detector=center", "tone.backend=none", "transcript.backend=none", "faces.frame_stride=3"]
    short_mib, long_mib = (float(v) for v in python(MERR_PEAK_RSS, *options, stdin="".join(jobs)).split())
    assert short_mib > 0 and long_mib > 0, (short_mib, long_mib)
    # decoding the whole clip held every frame: 80 more 1080p RGB frames are ~475 MiB; streaming
    # holds one decoded frame at a time
    assert long_mib - short_mib < 60, (short_mib, long_mib)
