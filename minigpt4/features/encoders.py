"""Utterance-level feature encoders by name (`FEATURE_ENCODERS`), chosen per feature kind in the
features config (`encoders.{audio,local,temporal}.name`, docs/encoders.md):

    audio   hubert (the release), wavlm, wav2vec2, whisper        waveform 16 kHz -> hidden states over time
    frames  mae (the release's local), videomae (its temporal),   face crops [T, H, W, 3] -> per-frame (or
            clip, siglip, timm_vit (any frame encoder per crop)    per-tubelet) vectors over time

Each encoder is a frozen module (eval mode, no gradients) that turns one clip into its time
series of vectors and pools it over time: one vector ``(D,)`` when `tokens` is 1 (the release's
`HL-UTT/`, `mae_340_UTT/`, `maeV_399_UTT/` features: the mean), or ``(k, D)`` for ``tokens: k``
(the mean of each of k equal consecutive stretches of the clip). D is the encoder's width
(`dim`). Every encoder loads from a local folder (or timm state-dict file) with
`from_pretrained` -- never a hub id.

`make_tiny_encoders` saves random-weight miniatures of every encoder, so tests and the CPU demo
run exactly the code path of the real models.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from minigpt4.common.config import ConfigError
from minigpt4.common.registry import Registry
from minigpt4.features.config import EncoderConfig
from minigpt4.models.config import VisionConfig
from minigpt4.models.vision_towers import (HFVisionTower, TimmVisionTower, create_timm_vit, hf_tower_config,
                                           load_hf_tower)
from minigpt4.processors import CLIP_MEAN, CLIP_STD

# ViT-MAE and VideoMAE were pre-trained on ImageNet-normalised pixels (their image processors'
# defaults); using anything else shifts every feature.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_folder(folder: str | Path, what: str) -> Path:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{what} folder {folder} has no config.json. Point the features config at a folder written "
            f"by save_pretrained (real weights under checkpoints/, or run `python -m minigpt4.features "
            f"tiny-encoders --out checkpoints/tiny/encoders` for random tiny ones)")
    return folder


def load_encoder(folder: Path, base_class, pretraining_class, attribute: str, **config_overrides):
    """The encoder part of a checkpoint, whether it was saved as the bare model or with its
    pre-training decoder (as `make_tiny_encoders` and `pretrain` save them); loading the class
    that matches the files avoids transformers' unexpected/missing-key reports."""
    import json

    architectures = json.loads((folder / "config.json").read_text()).get("architectures") or []
    if pretraining_class.__name__ in architectures:
        full = pretraining_class.from_pretrained(folder, **config_overrides)
        return getattr(full, attribute)
    return base_class.from_pretrained(folder, **config_overrides)


def images_to_tensor(images: np.ndarray, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, S, S], resized and normalised (ImageNet by default)."""
    pixels = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    pixels = pixels.movedim(-1, -3)  # channels first
    lead_shape = pixels.shape[:-3]
    pixels = pixels.reshape(-1, *pixels.shape[-3:])
    if pixels.shape[-2:] != (image_size, image_size):
        pixels = torch.nn.functional.interpolate(pixels, size=(image_size, image_size), mode="bilinear",
                                                 align_corners=False, antialias=True)
    mean = torch.tensor(mean).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    return ((pixels - mean) / std).reshape(*lead_shape, 3, image_size, image_size)


def conv_receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Input samples one output frame of a conv stack sees (400 for HuBERT: 25 ms at 16 kHz)."""
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def pool_over_time(hidden: torch.Tensor, tokens: int) -> np.ndarray:
    """[T, D] vectors in time order -> float32 (D,) (their mean) when `tokens` is 1, else
    (tokens, D): the means of `tokens` equal consecutive stretches (adaptive average pooling;
    a clip shorter than `tokens` repeats its vectors)."""
    if tokens == 1:
        return hidden.mean(dim=0).float().cpu().numpy()
    pooled = torch.nn.functional.adaptive_avg_pool1d(hidden.float().T[None], tokens)[0].T
    return pooled.cpu().numpy()


def check_model_type(folder: Path, accepted: Sequence[str], name: str) -> None:
    """A weights folder of another architecture is a config error naming what `name` accepts."""
    model_type = json.loads((folder / "config.json").read_text()).get("model_type", "")
    if model_type not in accepted:
        raise ConfigError(f"{folder} holds a {model_type!r} model, not a {name} one (accepted model_type: "
                          f"{', '.join(accepted)}); point the weights at a {name} folder or change the encoder name")


def _select_layer(output, layer: int) -> torch.Tensor:
    """`last_hidden_state` for -1 (today's features, bit for bit), else that hidden_states entry."""
    return output.last_hidden_state if layer == -1 else output.hidden_states[layer]


def _check_layer(layer: int, depth: int, name: str) -> None:
    if not -depth - 1 <= layer <= depth:
        raise ConfigError(f"layer={layer} is outside the {depth}-layer {name} (choices: -1 = final output, "
                          f"0..{depth} or -{depth + 1}..-2 = a hidden_states index)")


def _frozen(model: torch.nn.Module, device: str) -> torch.nn.Module:
    return model.to(device).eval().requires_grad_(False)


# ------------------------------------------------------------------------------------- audio

AUDIO_MODELS = {"hubert": "HubertModel", "wavlm": "WavLMModel", "wav2vec2": "Wav2Vec2Model"}


class AudioEncoder:
    """HuBERT / WavLM / wav2vec 2.0 on 16 kHz mono audio: hidden states over time (20 ms a
    frame), pooled by `pool_over_time`. Output: (D,) or (tokens, D) float32, D = hidden size.

    Clips run one at a time: padding a batch would change the features of variants with
    group-norm feature extractors, and an utterance is long enough to keep the CPU busy.
    """

    sample_rate = 16000
    input = "audio"

    def __init__(self, folder: str | Path, device: str = "cpu", arch: str = "hubert", layer: int = -1,
                 tokens: int = 1):
        import transformers

        folder = _check_folder(folder, arch)
        check_model_type(folder, (arch,), arch)
        model_class = getattr(transformers, AUDIO_MODELS[arch])
        self.model = _frozen(model_class.from_pretrained(folder), device)
        _check_layer(layer, self.model.config.num_hidden_layers, arch)
        self.device, self.layer, self.tokens = device, layer, tokens
        self.dim = self.model.config.hidden_size
        # shortest waveform the convolution stack accepts: its receptive field
        self.min_samples = conv_receptive_field(self.model.config.conv_kernel, self.model.config.conv_stride)

    @staticmethod
    def normalise(waveform: np.ndarray) -> np.ndarray:
        """Zero mean, unit variance per utterance, as Wav2Vec2FeatureExtractor(do_normalize=True)."""
        waveform = waveform.astype(np.float32)
        return (waveform - waveform.mean()) / np.sqrt(waveform.var() + 1e-7)

    @torch.no_grad()
    def encode(self, waveform: np.ndarray) -> np.ndarray:
        """float32 [n] at 16 kHz -> float32 (D,) or (tokens, D)."""
        if waveform.ndim != 1 or len(waveform) == 0:
            raise ValueError(f"expected a non-empty mono waveform, got shape {waveform.shape}")
        if len(waveform) < self.min_samples:  # a blip shorter than one frame: pad with silence
            waveform = np.pad(waveform, (0, self.min_samples - len(waveform)))
        inputs = torch.from_numpy(self.normalise(waveform))[None].to(self.device)
        output = self.model(input_values=inputs, output_hidden_states=self.layer != -1)
        return pool_over_time(_select_layer(output, self.layer)[0], self.tokens)  # [frames, D] -> pooled


class WhisperEncoder:
    """The encoder of Whisper (e.g. whisper-large-v3, as the authors' successor uses) on 16 kHz
    audio: log-mel windows of 30 s (Whisper's fixed input), hidden states at 20 ms a frame; only
    the frames covering the audio (not Whisper's padding) are pooled. Output: (D,) or (tokens, D)."""

    sample_rate = 16000
    input = "audio"
    samples_per_frame = 320  # hop 160 samples, then the encoder's stride-2 convolution

    def __init__(self, folder: str | Path, device: str = "cpu", layer: int = -1, tokens: int = 1):
        from transformers import WhisperFeatureExtractor, WhisperModel

        folder = _check_folder(folder, "whisper")
        check_model_type(folder, ("whisper",), "whisper")
        whisper = WhisperModel.from_pretrained(folder)
        self.model = _frozen(whisper.get_encoder(), device)  # the decoder is never used
        del whisper
        config = self.model.config
        _check_layer(layer, config.encoder_layers, "whisper encoder")
        if (folder / "preprocessor_config.json").is_file():
            self.features = WhisperFeatureExtractor.from_pretrained(folder)
        else:  # Whisper's log-mel front end: 80 or 128 mel bins, 25 ms windows every 10 ms
            self.features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        self.window = self.features.n_samples  # 30 s
        self.device, self.layer, self.tokens = device, layer, tokens
        self.dim = config.d_model

    @torch.no_grad()
    def encode(self, waveform: np.ndarray) -> np.ndarray:
        """float32 [n] at 16 kHz -> float32 (D,) or (tokens, D); audio over 30 s runs as several windows."""
        if waveform.ndim != 1 or len(waveform) == 0:
            raise ValueError(f"expected a non-empty mono waveform, got shape {waveform.shape}")
        windows = [waveform[start:start + self.window] for start in range(0, len(waveform), self.window)]
        mels = self.features([w.astype(np.float32) for w in windows], sampling_rate=self.sample_rate,
                             return_tensors="pt").input_features.to(self.device, self.model.dtype)
        output = self.model(input_features=mels, output_hidden_states=self.layer != -1)
        hidden = _select_layer(output, self.layer)  # [windows, 1500, D]
        valid = [-(-len(w) // self.samples_per_frame) for w in windows]  # frames that hold audio
        frames = torch.cat([h[:n] for h, n in zip(hidden, valid)])
        return pool_over_time(frames, self.tokens)


# ------------------------------------------------------------------------------------- frames

class LocalEncoder:
    """ViT-MAE with masking off on face crops: per frame the mean over patch tokens (or the CLS
    token, `pooling: cls`), then pooled over frames. Output: (D,) or (tokens, D).

    ViT-MAE shuffles patches by random noise even when it keeps all of them; we pass ordered
    noise so the token order, and therefore the float sums, are identical on every run.
    """

    input = "frames"

    def __init__(self, folder: str | Path, device: str = "cpu", batch_size: int = 32, layer: int = -1,
                 pooling: str = "mean", tokens: int = 1):
        from transformers import ViTMAEForPreTraining, ViTMAEModel

        folder = _check_folder(folder, "ViT-MAE")
        check_model_type(folder, ("vit_mae",), "mae")
        # mask_ratio=0.0 keeps every patch: extraction must see the whole face
        self.model = _frozen(load_encoder(folder, ViTMAEModel, ViTMAEForPreTraining, "vit", mask_ratio=0.0), device)
        _check_layer(layer, self.model.config.num_hidden_layers, "mae")
        self.device, self.batch_size = device, batch_size
        self.layer, self.pooling, self.tokens = layer, pooling, tokens
        self.dim = self.model.config.hidden_size
        self.image_size = self.model.config.image_size
        self.num_patches = (self.image_size // self.model.config.patch_size) ** 2

    @torch.no_grad()
    def encode_frames(self, crops: np.ndarray) -> np.ndarray:
        """uint8 [T,H,W,3] face crops -> float32 [T, D], one vector per frame."""
        vectors = []
        for start in range(0, len(crops), self.batch_size):
            pixels = images_to_tensor(crops[start:start + self.batch_size], self.image_size).to(self.device)
            ordered = torch.arange(self.num_patches, dtype=torch.float32, device=self.device)
            noise = ordered.expand(len(pixels), -1)
            output = self.model(pixel_values=pixels, noise=noise, output_hidden_states=self.layer != -1)
            hidden = _select_layer(output, self.layer)  # [B, 1+patches, D]
            vectors.append((hidden[:, 0] if self.pooling == "cls" else hidden[:, 1:].mean(dim=1)).float().cpu())
        return torch.cat(vectors).numpy()

    def encode(self, crops: np.ndarray) -> np.ndarray:
        """uint8 [T,H,W,3] face crops -> float32 (D,) (the mean over frames) or (tokens, D)."""
        frames = self.encode_frames(crops)
        return frames.mean(axis=0) if self.tokens == 1 else pool_over_time(torch.from_numpy(frames), self.tokens)

    def encode_batch(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.encode(c) for c in clips]


class FaceImageEncoder(LocalEncoder):
    """Any frame encoder (CLIP, SigLIP vision tower, any timm ViT; minigpt4/models/vision_towers.py)
    applied to each face crop: per frame the mean of its patch tokens (or its summary token,
    `pooling: cls`), then pooled over frames. Output: (D,) or (tokens, D), D = the tower's width."""

    def __init__(self, arch: str, weights: str | Path, device: str = "cpu", batch_size: int = 32,
                 layer: int = -1, pooling: str = "mean", tokens: int = 1, model_name: str | None = None,
                 image_size: int | None = None):
        if arch == "timm_vit":
            if layer != -1:
                raise ConfigError(f"layer={layer}: timm_vit gives its final layer only (set layer: -1)")
            import timm

            native = timm.get_pretrained_cfg(model_name) if model_name else None  # None: create_timm_vit says why
            size = image_size or (native.input_size[-1] if native is not None else 224)
            tower = TimmVisionTower(create_timm_vit(model_name, size, weights))
        else:
            model = load_hf_tower(arch, weights)
            _check_layer(layer, model.config.num_hidden_layers, arch)
            size = model.config.image_size
            tower = HFVisionTower(arch, model, layer)
        self.model = _frozen(tower, device)
        self.device, self.batch_size = device, batch_size
        self.layer, self.pooling, self.tokens = layer, pooling, tokens
        self.dim = tower.embed_dim
        self.image_size = size

    @torch.no_grad()
    def encode_frames(self, crops: np.ndarray) -> np.ndarray:
        """uint8 [T,H,W,3] face crops -> float32 [T, D], one vector per frame."""
        vectors = []
        for start in range(0, len(crops), self.batch_size):
            # the towers take CLIP-normalised pixels (as on the model side) and re-normalise themselves
            pixels = images_to_tensor(crops[start:start + self.batch_size], self.image_size, CLIP_MEAN, CLIP_STD)
            tokens = self.model.forward_features(pixels.to(self.device))  # [B, 1 + patches, D]
            vectors.append((tokens[:, 0] if self.pooling == "cls" else tokens[:, 1:].mean(dim=1)).float().cpu())
        return torch.cat(vectors).numpy()


def sample_clip_indices(num_frames: int, clip_length: int) -> np.ndarray:
    """`clip_length` indices spread evenly over `num_frames` (repeating frames of short clips)."""
    return np.linspace(0, num_frames - 1, clip_length).round().astype(np.int64)


class TemporalEncoder:
    """VideoMAE on `num_frames` face crops sampled evenly over the clip: its tokens (tubelets in
    time order) pooled by `pool_over_time`. Output: (D,) (the mean over all tokens) or (tokens, D)."""

    input = "frames"

    def __init__(self, folder: str | Path, device: str = "cpu", batch_size: int = 4, layer: int = -1,
                 tokens: int = 1):
        from transformers import VideoMAEForPreTraining, VideoMAEModel

        folder = _check_folder(folder, "VideoMAE")
        check_model_type(folder, ("videomae",), "videomae")
        self.model = _frozen(load_encoder(folder, VideoMAEModel, VideoMAEForPreTraining, "videomae"), device)
        _check_layer(layer, self.model.config.num_hidden_layers, "videomae")
        self.device, self.batch_size, self.layer, self.tokens = device, batch_size, layer, tokens
        self.dim = self.model.config.hidden_size
        self.image_size = self.model.config.image_size
        self.num_frames = self.model.config.num_frames

    def sample(self, crops: np.ndarray) -> np.ndarray:
        """The crops VideoMAE sees for one clip: uint8 [num_frames, H, W, 3]."""
        return crops[sample_clip_indices(len(crops), self.num_frames)]

    @torch.no_grad()
    def encode_batch(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Several clips of face crops (each uint8 [T,H,W,3]) -> one (D,) or (tokens, D) array each."""
        vectors = []
        for start in range(0, len(clips), self.batch_size):
            group = np.stack([self.sample(c) for c in clips[start:start + self.batch_size]])
            pixels = images_to_tensor(group, self.image_size).to(self.device)  # [B, T, 3, S, S]
            output = self.model(pixel_values=pixels, output_hidden_states=self.layer != -1)
            vectors += [pool_over_time(h, self.tokens) for h in _select_layer(output, self.layer)]  # [tokens, D] each
        return vectors

    def encode(self, crops: np.ndarray) -> np.ndarray:
        return self.encode_batch([crops])[0]


# ------------------------------------------------------------------------------------ registry

FeatureEncoder = AudioEncoder | WhisperEncoder | LocalEncoder | TemporalEncoder
# builder(config, weights folder / file, device, batch size) -> a loaded, frozen encoder
Builder = Callable[[EncoderConfig, str, str, int], FeatureEncoder]
FEATURE_ENCODERS: Registry[Builder] = Registry("feature encoder")


def _register_audio(name: str) -> None:
    FEATURE_ENCODERS.register(name)(
        lambda cfg, weights, device, batch_size: AudioEncoder(weights, device, name, cfg.layer, cfg.tokens))


for _name in AUDIO_MODELS:
    _register_audio(_name)


@FEATURE_ENCODERS.register("whisper")
def build_whisper(cfg: EncoderConfig, weights: str, device: str, batch_size: int) -> WhisperEncoder:
    return WhisperEncoder(weights, device, cfg.layer, cfg.tokens)


@FEATURE_ENCODERS.register("mae")
def build_mae(cfg: EncoderConfig, weights: str, device: str, batch_size: int) -> LocalEncoder:
    return LocalEncoder(weights, device, batch_size, cfg.layer, cfg.pooling, cfg.tokens)


@FEATURE_ENCODERS.register("videomae")
def build_videomae(cfg: EncoderConfig, weights: str, device: str, batch_size: int) -> TemporalEncoder:
    return TemporalEncoder(weights, device, batch_size, cfg.layer, cfg.tokens)


def _register_face_tower(name: str) -> None:
    FEATURE_ENCODERS.register(name)(
        lambda cfg, weights, device, batch_size: FaceImageEncoder(
            name, weights, device, batch_size, cfg.layer, cfg.pooling, cfg.tokens, cfg.model_name, cfg.image_size))


for _name in ("clip", "siglip", "timm_vit"):
    _register_face_tower(_name)


def build_feature_encoder(kind: str, cfg: EncoderConfig, weights: str, device: str = "cpu",
                          batch_size: int = 8) -> FeatureEncoder:
    """The `kind` (audio | local | temporal) encoder `cfg.name` names, loaded from `weights`. A
    config problem is a `ConfigError` naming the key `encoders.<kind>` and the choices."""
    try:
        return FEATURE_ENCODERS.get(cfg.name)(cfg, weights, device, batch_size)
    except ConfigError as err:
        raise ConfigError(f"encoders.{kind} ({cfg.name}, weights {weights}): {err}") from None


# ------------------------------------------------------------------------------------ tiny ones

DEFAULT_TINY = ("hubert", "mae", "videomae")
TINY_TIMM_VIT = "test_vit"  # a timm architecture name: what `encoders.<kind>.model_name` says for the tiny one


def make_tiny_encoders(out_dir: str | Path, seed: int = 0, hidden: int = 32, image_size: int = 32,
                       names: Sequence[str] = DEFAULT_TINY) -> dict[str, Path]:
    """Save random-weight tiny encoders under out_dir/<name> (default: the release's HuBERT /
    ViT-MAE / VideoMAE; any of `TINY_BUILDERS` by name). The same seed gives the same weights.

    MAE and VideoMAE are saved with their pre-training decoders (`*ForPreTraining`), so
    `pretrain` can start from them and extraction loads just the encoder part. timm_vit is saved
    as a state-dict file (out_dir/timm_vit.safetensors) of timm's `test_vit` (TINY_TIMM_VIT).
    """
    out_dir = Path(out_dir)
    folders = {}
    for name in names:
        torch.manual_seed(seed * 1000 + TINY_ORDER.index(name))
        folders[name] = TINY_BUILDERS[name](out_dir, hidden, image_size)
    return folders


def _tiny_shared(hidden: int) -> dict:
    heads = 2 if hidden % 2 == 0 else 1
    return dict(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=heads, intermediate_size=2 * hidden)


def _save(model, folder: Path) -> Path:
    model.eval().save_pretrained(folder)
    return folder


def _tiny_hubert_like(name: str, config_name: str, model_name: str):
    def build(out: Path, hidden: int, image_size: int) -> Path:
        import transformers

        # The real model frames audio by a 400-sample window every 320 samples (20 ms) through seven
        # learned convolutions; the tiny one does it with one convolution of the same window and hop,
        # set to a band-pass filterbank (roughly what a trained first layer learns). Seven *random*
        # thin convolutions scramble the spectrum: a linear probe then reads the demo's voices at ~0.54
        # accuracy (7 voice classes), with the filterbank at ~0.90 (docs/results.md).
        config = getattr(transformers, config_name)(
            **_tiny_shared(hidden), conv_dim=(64,), conv_kernel=(400,), conv_stride=(320,), conv_bias=False,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
            do_stable_layer_norm=True)
        model = getattr(transformers, model_name)(config)
        conv = model.feature_extractor.conv_layers[0].conv
        with torch.no_grad():
            conv.weight.copy_(mel_filterbank(conv.out_channels, conv.kernel_size[0])[:, None])
        return _save(model, out / name)
    return build


def mel_filterbank(bands: int, width: int, sample_rate: int = 16000, low_hz: float = 60.0,
                   high_hz: float = 7000.0) -> torch.Tensor:
    """[bands, width] Hann-windowed cosines at mel-spaced centre frequencies, unit norm each: a
    convolution with these splits a waveform into frequency bands (a stand-in for a trained front end)."""
    mel = torch.linspace(_hz_to_mel(low_hz), _hz_to_mel(high_hz), bands, dtype=torch.float64)
    centres = 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    t = torch.arange(width, dtype=torch.float64) / sample_rate
    filters = torch.hann_window(width, periodic=False, dtype=torch.float64) * torch.cos(2 * math.pi * centres[:, None] * t)
    return (filters / filters.norm(dim=1, keepdim=True)).float()


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _tiny_whisper(out: Path, hidden: int, image_size: int) -> Path:
    from transformers import WhisperConfig, WhisperModel

    heads = _tiny_shared(hidden)["num_attention_heads"]
    # Whisper's fixed 30 s input (1500 encoder positions) with 2 thin layers and 80 mel bins
    config = WhisperConfig(d_model=hidden, encoder_layers=2, decoder_layers=1, encoder_attention_heads=heads,
                           decoder_attention_heads=heads, encoder_ffn_dim=2 * hidden, decoder_ffn_dim=2 * hidden,
                           num_mel_bins=80, max_source_positions=1500, max_target_positions=32, vocab_size=64,
                           pad_token_id=0, bos_token_id=1, eos_token_id=1, decoder_start_token_id=2,
                           suppress_tokens=[], begin_suppress_tokens=[])
    return _save(WhisperModel(config), out / "whisper")


def _tiny_mae(out: Path, hidden: int, image_size: int) -> Path:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    config = ViTMAEConfig(**_tiny_shared(hidden), **_tiny_decoder(hidden), image_size=image_size,
                          patch_size=max(4, image_size // 4), mask_ratio=0.0)
    return _save(ViTMAEForPreTraining(config), out / "mae")


def _tiny_videomae(out: Path, hidden: int, image_size: int) -> Path:
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    config = VideoMAEConfig(**_tiny_shared(hidden), **_tiny_decoder(hidden), image_size=image_size,
                            patch_size=max(4, image_size // 4), num_frames=16, tubelet_size=2)
    return _save(VideoMAEForPreTraining(config), out / "videomae")


def _tiny_decoder(hidden: int) -> dict:
    heads = _tiny_shared(hidden)["num_attention_heads"]
    return dict(decoder_hidden_size=hidden, decoder_num_hidden_layers=1, decoder_num_attention_heads=heads,
                decoder_intermediate_size=2 * hidden)


def _tiny_tower(arch: str):
    def build(out: Path, hidden: int, image_size: int) -> Path:
        from transformers import CLIPVisionModel, SiglipVisionModel

        vision = VisionConfig(arch=arch, image_size=image_size, patch_size=max(4, image_size // 4), width=hidden,
                              depth=2, num_heads=_tiny_shared(hidden)["num_attention_heads"], mlp_dim=2 * hidden)
        model_class = CLIPVisionModel if arch == "clip" else SiglipVisionModel
        return _save(model_class(hf_tower_config(arch, vision)), out / arch)
    return build


def _tiny_timm_vit(out: Path, hidden: int, image_size: int) -> Path:
    import timm
    from safetensors.torch import save_file

    # timm's own test ViT (width 64, patch 16, 0.3 M parameters): timm_vit loads any ViT by name
    model = timm.create_model(TINY_TIMM_VIT, pretrained=False, num_classes=0)
    out.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), out / "timm_vit.safetensors")
    return out / "timm_vit.safetensors"


TINY_BUILDERS: dict[str, Callable[[Path, int, int], Path]] = {
    "hubert": _tiny_hubert_like("hubert", "HubertConfig", "HubertModel"),
    "mae": _tiny_mae,
    "videomae": _tiny_videomae,
    "wavlm": _tiny_hubert_like("wavlm", "WavLMConfig", "WavLMModel"),
    "wav2vec2": _tiny_hubert_like("wav2vec2", "Wav2Vec2Config", "Wav2Vec2Model"),
    "whisper": _tiny_whisper,
    "clip": _tiny_tower("clip"),
    "siglip": _tiny_tower("siglip"),
    "timm_vit": _tiny_timm_vit,
}
TINY_ORDER = tuple(TINY_BUILDERS)  # seeds: the release's three keep the seeds they always had
