"""The three encoders at tiny size, saved and loaded back exactly as the real ones are."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minigpt4.features.encoders import (
    AudioEncoder,
    LocalEncoder,
    TemporalEncoder,
    conv_receptive_field,
    make_tiny_encoders,
    sample_clip_indices,
)


@pytest.fixture(scope="module")
def tiny(small_encoders):
    return small_encoders


def test_tiny_encoders_are_deterministic_per_seed(tmp_path, tiny):
    again = make_tiny_encoders(tmp_path / "again", seed=0, hidden=16, image_size=32)
    other = make_tiny_encoders(tmp_path / "other", seed=1, hidden=16, image_size=32)
    for name in ("hubert", "mae", "videomae"):
        same = (tiny[name] / "model.safetensors").read_bytes() == (again[name] / "model.safetensors").read_bytes()
        differs = (tiny[name] / "model.safetensors").read_bytes() != (other[name] / "model.safetensors").read_bytes()
        assert same and differs, name


def test_output_size_is_hidden_size_and_repeatable(tiny):
    rng = np.random.default_rng(0)
    waveform = rng.standard_normal(12000).astype(np.float32)
    crops = rng.integers(0, 256, (9, 40, 40, 3), dtype=np.uint8)
    audio, local, temporal = AudioEncoder(tiny["hubert"]), LocalEncoder(tiny["mae"], batch_size=4), TemporalEncoder(tiny["videomae"])
    for encoder, data in ((audio, waveform), (local, crops), (temporal, crops)):
        first, second = encoder.encode(data), encoder.encode(data)
        assert first.shape == (16,) and first.dtype == np.float32 and np.isfinite(first).all()
        np.testing.assert_array_equal(first, second)
    # the local vector is the mean of per-frame vectors, and batching does not change it
    per_frame = local.encode_frames(crops)
    assert per_frame.shape == (9, 16)
    np.testing.assert_allclose(local.encode(crops), per_frame.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(LocalEncoder(tiny["mae"], batch_size=9).encode_frames(crops), per_frame, atol=1e-5)
    # different input, different features
    assert not np.allclose(temporal.encode(crops), temporal.encode(crops[::-1].copy()))


def test_mae_keeps_every_patch(tiny):
    local = LocalEncoder(tiny["mae"])
    assert local.model.config.mask_ratio == 0.0
    pixels = torch.zeros(1, 3, 32, 32)
    out = local.model(pixel_values=pixels)
    assert out.last_hidden_state.shape[1] == 1 + local.num_patches


def test_audio_normalisation_and_short_clips(tiny):
    normalised = AudioEncoder.normalise(np.linspace(-3, 5, 1000, dtype=np.float32))
    assert abs(normalised.mean()) < 1e-5 and abs(normalised.std() - 1) < 1e-3
    audio = AudioEncoder(tiny["hubert"])
    assert audio.min_samples == 400 == conv_receptive_field((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    assert audio.encode(np.ones(50, np.float32)).shape == (16,)
    # scaling the waveform does not change the feature: the input is normalised first
    wave = np.random.default_rng(1).standard_normal(8000).astype(np.float32)
    np.testing.assert_allclose(audio.encode(wave), audio.encode(3 * wave), atol=1e-4)


def test_loads_a_bare_encoder_folder_too(tmp_path, tiny):
    from transformers import ViTMAEForPreTraining

    ViTMAEForPreTraining.from_pretrained(tiny["mae"]).vit.save_pretrained(tmp_path / "bare")
    crops = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(LocalEncoder(tmp_path / "bare").encode(crops), LocalEncoder(tiny["mae"]).encode(crops), atol=1e-6)


def test_missing_folder_error_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json.*tiny-encoders"):
        LocalEncoder(tmp_path / "nothing")


def test_clip_indices_cover_the_clip():
    assert sample_clip_indices(32, 16).tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27, 29, 31]
    assert sample_clip_indices(3, 4).tolist() == [0, 1, 1, 2]


def test_tiny_hubert_frames_audio_like_the_real_one_through_a_filterbank(tiny):
    """One convolution with the real stack's window (400 samples) and hop (320), set to band-pass
    filters: each filter answers most to a tone at its own centre frequency, so the tiny model's
    features tell voices apart by their spectrum (seven random thin convolutions did not)."""
    from minigpt4.features.encoders import mel_filterbank

    audio = AudioEncoder(tiny["hubert"])
    config = audio.model.config
    assert (tuple(config.conv_kernel), tuple(config.conv_stride)) == ((400,), (320,))
    bank = mel_filterbank(64, 400)
    torch.testing.assert_close(audio.model.feature_extractor.conv_layers[0].conv.weight[:, 0], bank)
    torch.testing.assert_close(bank.norm(dim=1), torch.ones(64))
    t = torch.arange(400, dtype=torch.float64) / 16000
    for band, hz in ((0, 60.0), (63, 7000.0)):  # the first and last centres
        tones = torch.stack([torch.cos(2 * torch.pi * f * t) for f in (hz, 1000.0, 3000.0)]).float()
        response = (tones @ bank[band]).abs()
        assert response.argmax() == 0 and response[0] > 10 * response[1:].max(), (band, response)
    # a low and a high voice differ far more than two takes of the same voice (5x here; 0.7-1.9x with
    # the seven random convolutions, three weight seeds)
    seconds = np.arange(16000) / 16000

    def voice(hz: float, phase: float) -> np.ndarray:
        return sum(np.sin(k * 2 * np.pi * hz * seconds + phase) / k for k in range(1, 6)).astype(np.float32)

    same = np.linalg.norm(audio.encode(voice(120, 0.0)) - audio.encode(voice(120, 1.0)))
    other = np.linalg.norm(audio.encode(voice(120, 0.0)) - audio.encode(voice(480, 0.0)))
    assert other > 3 * same, (same, other)
