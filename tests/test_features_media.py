"""Clips written in the test with write_video, read back with the media helpers."""

from __future__ import annotations

import numpy as np
import pytest

from minigpt4.common.media import (
    MediaError,
    NoAudioError,
    choose_frame_index,
    load_audio,
    read_frame,
    read_frames,
    video_info,
    write_video,
)

SAMPLE_RATE = 16000


def moving_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth grey gradient with a small drifting square: realistic enough for lossy codecs."""
    rows = np.linspace(40, 200, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 40, width, dtype=np.float32)[None, :]
    base = np.repeat((rows + cols)[..., None], 3, axis=2)
    frames = np.repeat(base[None], num_frames, axis=0)
    rng = np.random.default_rng(seed)
    for t in range(num_frames):
        y, x = rng.integers(0, max(1, height - 4)), rng.integers(0, max(1, width - 4))
        frames[t, y:y + 4, x:x + 4] = 120
    return frames.astype(np.uint8)


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    "suffix, height, width, fps",
    [
        (".mp4", 48, 64, 25.0),
        (".avi", 40, 40, 30.0),
        (".mkv", 64, 36, 29.97),  # portrait, NTSC rate
        (".webm", 32, 48, 15.0),
        (".mov", 32, 32, 24.0),
    ],
)
def test_round_trip_keeps_count_size_rate_and_audio(tmp_path, suffix, height, width, fps):
    frames = moving_frames(18, height, width)
    audio = tone(18 / fps)
    path = tmp_path / f"clip{suffix}"
    write_video(path, frames, fps, audio, SAMPLE_RATE)

    info = video_info(path)
    assert (info.num_frames, info.width, info.height, info.has_audio) == (18, width, height, True)
    assert info.fps == pytest.approx(fps, rel=1e-3)

    decoded = read_frames(path)
    assert decoded.shape == (18, height, width, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 6  # lossy, but the same picture
    assert read_frames(path, [5, 2]).shape == (2, height, width, 3)
    np.testing.assert_array_equal(read_frames(path, [5])[0], decoded[5])

    waveform = load_audio(path, SAMPLE_RATE)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert len(audio) <= len(waveform) <= len(audio) + 2048


@pytest.mark.parametrize("suffix", [".avi", ".webm"])
def test_load_audio_is_sample_exact_for_lossless_and_opus(tmp_path, suffix):
    audio = tone(1.25)
    path = tmp_path / f"a{suffix}"
    write_video(path, moving_frames(10, 32, 32), 8.0, audio, SAMPLE_RATE)
    waveform = load_audio(path)
    assert len(waveform) == len(audio) == 20000
    if suffix == ".avi":  # 16-bit PCM: exact up to quantisation
        np.testing.assert_allclose(waveform, audio, atol=1e-4)


def test_load_audio_resamples_to_requested_rate(tmp_path):
    path = tmp_path / "a.avi"
    write_video(path, moving_frames(10, 32, 32), 10.0, tone(1.0), sample_rate=SAMPLE_RATE)
    assert len(load_audio(path, sample_rate=8000)) == pytest.approx(8000, abs=64)


def test_odd_size_is_padded_to_even(tmp_path):
    path = tmp_path / "odd.mp4"
    write_video(path, moving_frames(6, 33, 47), 25.0)
    assert read_frames(path).shape == (6, 34, 48, 3)


def test_no_audio_track_raises_no_audio_error_naming_the_file(tmp_path):
    path = tmp_path / "silent.mp4"
    write_video(path, moving_frames(8, 32, 32), 25.0)
    assert video_info(path).has_audio is False
    with pytest.raises(NoAudioError, match="silent.mp4.*no audio track"):
        load_audio(path)
    assert issubclass(NoAudioError, MediaError) and issubclass(MediaError, ValueError)


def test_zero_byte_file_raises_media_error(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    for read in (video_info, read_frames, load_audio):
        with pytest.raises(MediaError, match="empty.mp4.*empty"):
            read(path)


def test_missing_file_raises_media_error(tmp_path):
    with pytest.raises(MediaError, match="nowhere.mp4: file not found"):
        read_frames(tmp_path / "nowhere.mp4")


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv", ".webm"])
def test_truncated_file_raises_media_error(tmp_path, suffix):
    path = tmp_path / f"full{suffix}"
    write_video(path, moving_frames(50, 32, 32), 25.0, tone(2.0))
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(MediaError, match=f"cut{suffix}"):
        read_frames(cut)
    with pytest.raises(MediaError, match=f"cut{suffix}"):
        video_info(cut)


def test_garbage_bytes_raise_media_error(tmp_path):
    path = tmp_path / "noise.avi"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match="noise.avi"):
        read_frames(path)


def test_frame_choices_and_planted_peak(tmp_path):
    frames = moving_frames(30, 48, 48)
    frames[19, 10:38, 10:38] = 255  # one frame with a large bright change
    frames[7, 20:24, 20:24] = 0  # and a small one that must lose
    path = tmp_path / "peak.mp4"
    write_video(path, frames, 25.0)
    assert choose_frame_index(path, "first") == 0
    assert choose_frame_index(path, "middle") == 15
    assert choose_frame_index(path, "peak") == 19
    assert choose_frame_index(frames, "peak") == 19
    assert read_frame(path, "peak")[24, 24].min() > 230
    with pytest.raises(ValueError, match="frame choice"):
        choose_frame_index(frames, "last")


def test_peak_of_static_clip_is_first_frame():
    still = np.full((12, 16, 16, 3), 90, dtype=np.uint8)
    assert choose_frame_index(still, "peak") == 0


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(MediaError, match="suffix"):
        write_video(tmp_path / "x.gif", moving_frames(2, 8, 8), 10.0)
    with pytest.raises(MediaError, match="uint8"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8, 3), np.float32), 10.0)


def write_mp3_track(path, signal, sample_rate=16000):
    """A clip whose audio is MP3 (LAME), which write_video does not produce."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width = video.height = 16
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("libmp3lame", rate=sample_rate)
        audio.layout = "mono"
        resampler = av.AudioResampler(format=audio.codec_context.format.name, layout="mono", rate=sample_rate,
                                      frame_size=audio.codec_context.frame_size or 1152)
        source = av.AudioFrame.from_ndarray(signal.reshape(1, -1), format="flt", layout="mono")
        source.sample_rate = sample_rate
        pts = 0
        for chunk in resampler.resample(source) + resampler.resample(None):
            chunk.pts = pts
            pts += chunk.samples
            container.mux(audio.encode(chunk))
        container.mux(audio.encode())
        for _ in range(10):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")))
        container.mux(video.encode())


@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
def test_mp3_encoder_delay_is_removed(tmp_path, suffix):
    signal = np.zeros(16000, np.float32)
    signal[4000:4400] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(400) / 16000)  # a burst at 0.25 s
    path = tmp_path / f"mp3{suffix}"
    write_mp3_track(path, signal)
    waveform = load_audio(path)
    assert abs(int(np.argmax(np.abs(waveform) > 0.1)) - 4000) < 16  # was 5107: 1105 samples late
    assert 16000 <= len(waveform) < 16000 + 400
