"""End to end: clips written in the test -> feature folders, with bad clips, resume and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minigpt4.common.config import ConfigError, load_config
from minigpt4.features.__main__ import main
from minigpt4.features.config import FeatureConfig
from minigpt4.features.extract import extract_features, find_videos, read_names_file
from minigpt4.common.media import write_video

TINY_YAML = "minigpt4/configs/features/tiny.yaml"
HIDDEN = 16  # the shared small_encoders fixture (conftest.py)

# suffix, height, width, fps, with audio
CLIPS = {
    "a_mp4": (".mp4", 48, 64, 25.0, True),
    "b_avi": (".avi", 40, 40, 30.0, True),
    "c_portrait": (".mkv", 64, 36, 24.0, True),
    "d_webm_silent": (".webm", 32, 48, 15.0, False),
}


def gradient_clip(num_frames, height, width, seed):
    rng = np.random.default_rng(seed)
    base = np.linspace(30, 220, height * width, dtype=np.float32).reshape(height, width, 1)
    frames = np.repeat(np.repeat(base, 3, axis=2)[None], num_frames, axis=0)
    frames += rng.normal(0, 8, frames.shape).astype(np.float32)
    return np.clip(frames, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def encoders(small_encoders):
    return small_encoders


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    for seed, (name, (suffix, height, width, fps, with_audio)) in enumerate(CLIPS.items()):
        num_frames = 12 + 3 * seed
        audio = None
        if with_audio:
            audio = (0.2 * np.random.default_rng(seed).standard_normal(int(16000 * num_frames / fps))).astype(np.float32)
        write_video(folder / f"{name}{suffix}", gradient_clip(num_frames, height, width, seed), fps, audio)
    (folder / "e_zero.mp4").write_bytes(b"")
    full = (folder / "a_mp4.mp4").read_bytes()
    (folder / "f_truncated.mp4").write_bytes(full[: len(full) // 2])
    (folder / "notes.txt").write_text("not a video")
    return folder


def tiny_cfg(encoders, **changes):
    overrides = [f"audio_encoder={encoders['hubert']}", f"local_encoder={encoders['mae']}",
                 f"temporal_encoder={encoders['videomae']}", "face_detector=center"]
    overrides += [f"{k}={v}" for k, v in changes.items()]
    return load_config(FeatureConfig, TINY_YAML, overrides)


def test_good_clips_get_features_bad_ones_are_reported_and_rerun_skips(tmp_path, videos, encoders):
    out = tmp_path / "out"
    paths, problems = find_videos(videos)
    assert [p.name for p in paths] == ["a_mp4.mp4", "b_avi.avi", "c_portrait.mkv", "d_webm_silent.webm",
                                       "e_zero.mp4", "f_truncated.mp4"]
    report = extract_features(paths, out, tiny_cfg(encoders), progress=False)

    good = sorted(CLIPS)
    assert sorted(report.done) == good
    assert set(report.failed) == {"e_zero", "f_truncated"}
    assert "empty" in report.failed["e_zero"] and "not a readable media file" in report.failed["f_truncated"]
    assert report.no_audio == ["d_webm_silent"]
    for name in good:
        for folder in ("mae_340_UTT", "maeV_399_UTT"):
            vector = np.load(out / folder / f"{name}.npy")
            assert vector.shape == (HIDDEN,) and vector.dtype == np.float32 and np.isfinite(vector).all()
        assert (out / "frames" / f"{name}.jpg").stat().st_size > 0
        assert (out / "HL-UTT" / f"{name}.npy").exists() == CLIPS[name][4]
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temp files behind

    saved = json.loads((out / "extraction_report.json").read_text())
    assert saved["counts"]["done"] == 4 and saved["counts"]["failed"] == 2 and saved["counts"]["no_audio"] == 1
    assert saved["failed"]["e_zero"] == report.failed["e_zero"]

    again = extract_features(paths, out, tiny_cfg(encoders), progress=False)
    assert sorted(again.skipped_existing) == good  # including the clip without audio
    assert again.done == [] and set(again.failed) == {"e_zero", "f_truncated"}

    (out / "mae_340_UTT" / "b_avi.npy").unlink()  # a missing output makes just that clip run again
    third = extract_features(paths, out, tiny_cfg(encoders), progress=False)
    assert third.done == ["b_avi"]
    # the report of a re-run keeps what earlier runs found out about the clips it skipped
    merged = json.loads((out / "extraction_report.json").read_text())
    assert merged["no_audio"] == ["d_webm_silent"] and sorted(merged["extracted"]) == good
    assert sorted(merged["no_face_frames"]) == good and merged["counts"]["failed"] == 2


def test_features_are_deterministic_for_the_same_clip_and_config(tmp_path, videos, encoders):
    paths, _ = find_videos(videos, ["a_mp4", "c_portrait"])
    first = extract_features(paths, tmp_path / "one", tiny_cfg(encoders), progress=False)
    second = extract_features(paths, tmp_path / "two", tiny_cfg(encoders, decode_workers=1), progress=False)
    assert first.done == second.done == ["a_mp4", "c_portrait"]
    for folder in ("HL-UTT", "mae_340_UTT", "maeV_399_UTT"):
        for name in first.done:
            np.testing.assert_array_equal(np.load(tmp_path / "one" / folder / f"{name}.npy"),
                                          np.load(tmp_path / "two" / folder / f"{name}.npy"))
    # different clips give different features
    assert not np.array_equal(np.load(tmp_path / "one" / "mae_340_UTT" / "a_mp4.npy"),
                              np.load(tmp_path / "one" / "mae_340_UTT" / "c_portrait.npy"))


def test_chosen_frame_is_the_planted_peak(tmp_path, encoders):
    frames = gradient_clip(20, 48, 48, seed=3)
    frames[13, 8:40, 8:40] = 255
    write_video(tmp_path / "v" / "peak.avi", frames, 20.0)
    out = tmp_path / "out"
    extract_features([tmp_path / "v" / "peak.avi"], out, tiny_cfg(encoders, features="[local]"), progress=False)
    import cv2

    saved = cv2.imread(str(out / "frames" / "peak.jpg"))
    assert saved.shape == (48, 48, 3) and saved[24, 24].min() > 230
    assert not (out / "maeV_399_UTT").exists() and not (out / "HL-UTT").exists()  # only what was asked


def test_names_file_selects_clips_and_reports_missing_names(tmp_path, videos):
    listing = tmp_path / "list.txt"
    listing.write_text("b_avi 125 sad -10\n# a comment\n\nmissing_clip 10 happy\nmy clip 01.mp4\n  x.y  \n")
    assert read_names_file(listing) == ["b_avi", "missing_clip", "my clip 01", "x.y"]
    paths, problems = find_videos(videos, read_names_file(listing))
    assert [p.name for p in paths] == ["b_avi.avi"]
    assert "no video named missing_clip" in problems["missing_clip"]


def test_duplicate_names_are_a_problem_not_a_crash(tmp_path):
    folder = tmp_path / "dup"
    frames = gradient_clip(4, 16, 16, 0)
    write_video(folder / "x.mp4", frames, 10.0)
    write_video(folder / "x.avi", frames, 10.0)
    paths, problems = find_videos(folder)
    assert paths == [] and "two videos share this name" in problems["x"]


def test_cli_extract_writes_report_and_exit_code(tmp_path, videos, encoders, capsys):
    out = tmp_path / "cli_out"
    listing = tmp_path / "names.txt"
    listing.write_text("a_mp4\ne_zero\n")
    rc = main(["extract", "--videos", str(videos), "--out", str(out), "--cfg-path", TINY_YAML,
               "--names-file", str(listing), "--options", f"audio_encoder={encoders['hubert']}",
               f"local_encoder={encoders['mae']}", f"temporal_encoder={encoders['videomae']}"])
    printed = capsys.readouterr().out
    assert rc == 1  # a clip failed
    assert "FAILED e_zero: the file is empty" in printed
    assert np.load(out / "HL-UTT" / "a_mp4.npy").shape == (HIDDEN,)


def test_config_rejects_unknown_keys_and_bad_values(encoders):
    with pytest.raises(ConfigError, match="did you mean 'frame_choice'"):
        load_config(FeatureConfig, TINY_YAML, ["frame_choise=peak"])
    with pytest.raises(ConfigError, match="frame_choice must be one of"):
        load_config(FeatureConfig, TINY_YAML, ["frame_choice=last"])
    with pytest.raises(ConfigError, match="features must be"):
        load_config(FeatureConfig, TINY_YAML, ["features=[audio,colour]"])
    real = load_config(FeatureConfig, "minigpt4/configs/features/real.yaml")
    assert real.audio_encoder == "checkpoints/chinese-hubert-large" and real.face_size == 224


def test_wrong_clip_length_for_videomae_is_explained(encoders, tmp_path):
    with pytest.raises(ValueError, match="frames_per_clip=8.*built for 16 frames"):
        extract_features([], tmp_path, tiny_cfg(encoders, frames_per_clip=8), progress=False)


def test_eva_cache_writes_frozen_tokens_of_the_chosen_frame(tmp_path, encoders):
    vision_yaml = tmp_path / "vision.yaml"
    vision_yaml.write_text("image_size: 28\npatch_size: 14\nwidth: 16\ndepth: 1\nnum_heads: 2\nmlp_dim: 32\n")
    write_video(tmp_path / "v" / "clip.avi", gradient_clip(6, 32, 32, 0), 10.0)
    cfg = tiny_cfg(encoders, features="[local]", eva_cache="true", eva_vision=str(vision_yaml))
    report = extract_features([tmp_path / "v" / "clip.avi"], tmp_path / "out", cfg, progress=False)
    assert report.done == ["clip"], report.failed
    tokens = np.load(tmp_path / "out" / "eva_cache" / "clip.npy")
    assert tokens.shape == (1 + 4, 16) and tokens.dtype == np.float16 and np.isfinite(tokens).all()
    again = extract_features([tmp_path / "v" / "clip.avi"], tmp_path / "out", cfg, progress=False)
    assert again.skipped_existing == ["clip"]
