"""Every encoder by name, at tiny size (random weights saved and loaded back with from_pretrained):
output shape, frozen, k-token pooling, layer choice, and the config errors of a wrong choice.

The end-to-end path (extraction CLI == live model, a trained checkpoint loading back) is in
tests/test_encoders_end_to_end.py; the entry points' one `error:` line for a wrong encoder name in
tests/test_entry_point_errors.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from minigpt4.common.config import ConfigError, load_config
from minigpt4.features.config import ENCODER_INPUTS, EncoderConfig, FeatureConfig
from minigpt4.features.encoders import (FEATURE_ENCODERS, TINY_BUILDERS, TINY_TIMM_VIT, build_feature_encoder,
                                        make_tiny_encoders, pool_over_time)

REPO = Path(__file__).resolve().parents[1]
ALL = tuple(TINY_BUILDERS)
WIDTH = {name: 64 if name == "timm_vit" else 16 for name in ALL}  # timm's test_vit is 64 wide


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[str, Path]:
    return make_tiny_encoders(tmp_path_factory.mktemp("all_encoders"), seed=0, hidden=16, image_size=32, names=ALL)


def build(name: str, folder: Path, **options):
    kind = "audio" if ENCODER_INPUTS[name] == "audio" else "local"
    if name == "timm_vit":
        options = {"model_name": TINY_TIMM_VIT, "image_size": 32, **options}
    return build_feature_encoder(kind, EncoderConfig(name=name, **options), str(folder))


def clip_input(name: str) -> np.ndarray:
    """A waveform whose frame count is a multiple of 4 (48 frames), or 12 face crops."""
    rng = np.random.default_rng(0)
    if ENCODER_INPUTS[name] == "audio":
        # HuBERT-style: (n - 400) // 320 + 1 frames; Whisper: ceil(n / 320)
        n = 320 * 48 if name == "whisper" else 400 + 320 * 47
        return rng.standard_normal(n).astype(np.float32)
    return rng.integers(0, 256, (12, 40, 40, 3), dtype=np.uint8)


def test_registry_and_config_agree_on_the_names():
    assert FEATURE_ENCODERS.names() == sorted(ENCODER_INPUTS) == sorted(TINY_BUILDERS)


@pytest.mark.parametrize("name", ALL)
def test_output_shape_frozen_and_k_tokens(encoders, name):
    one, four = build(name, encoders[name]), build(name, encoders[name], tokens=4)
    data = clip_input(name)
    vector, tokens = one.encode(data), four.encode(data)
    assert one.dim == WIDTH[name]
    assert vector.shape == (WIDTH[name],) and vector.dtype == np.float32 and np.isfinite(vector).all()
    assert tokens.shape == (4, WIDTH[name]) and np.isfinite(tokens).all()
    np.testing.assert_array_equal(vector, one.encode(data))  # repeatable
    # frozen: eval mode, no parameter takes a gradient
    params = list(one.model.parameters())
    assert params and not any(p.requires_grad for p in params) and not one.model.training
    # the 4 tokens are the means of 4 equal stretches of the clip, so their mean is the clip vector
    np.testing.assert_allclose(tokens.mean(axis=0), vector, rtol=1e-4, atol=1e-5)
    assert not np.allclose(tokens[0], tokens[-1])  # and they differ over time


@pytest.mark.parametrize("name", [n for n in ALL if n != "timm_vit"])
def test_layer_picks_a_hidden_state(encoders, name):
    data = clip_input(name)
    last, first = build(name, encoders[name]).encode(data), build(name, encoders[name], layer=0).encode(data)
    assert first.shape == last.shape and not np.allclose(first, last)
    with pytest.raises(ConfigError, match=rf"encoders\.(audio|local) \({name}.*layer=7 is outside the 2-layer"):
        build(name, encoders[name], layer=7)


def test_image_encoders_cls_pooling_uses_the_summary_token(encoders):
    crops = clip_input("clip")
    mean, cls = build("clip", encoders["clip"]).encode(crops), build("clip", encoders["clip"], pooling="cls").encode(crops)
    encoder = build("clip", encoders["clip"], pooling="cls")
    assert cls.shape == mean.shape and not np.allclose(cls, mean)
    np.testing.assert_allclose(encoder.encode_frames(crops).mean(0), cls, rtol=1e-6)


def test_pool_over_time_hand_computed():
    hidden = torch.arange(10, dtype=torch.float32).view(5, 2)  # rows [0,1] [2,3] [4,5] [6,7] [8,9]
    np.testing.assert_array_equal(pool_over_time(hidden, 1), [4.0, 5.0])
    # 5 rows into 2 stretches: rows 0-2 and rows 2-4 (adaptive pooling shares the middle row)
    np.testing.assert_array_equal(pool_over_time(hidden, 2), [[2.0, 3.0], [6.0, 7.0]])
    # more tokens than rows repeats rows
    np.testing.assert_array_equal(pool_over_time(hidden[:2], 4), [[0, 1], [0, 1], [2, 3], [2, 3]])


def test_whisper_pools_only_the_frames_that_hold_audio(encoders):
    whisper = build("whisper", encoders["whisper"])
    wave = clip_input("whisper")  # 48 frames of audio in Whisper's 1500-frame window
    mels = whisper.features([wave], sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        hidden = whisper.model(input_features=mels).last_hidden_state[0]
    np.testing.assert_allclose(whisper.encode(wave), hidden[:48].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(whisper.encode(wave), hidden.mean(0).numpy())
    # over 30 s: several windows, each pooled over its own audio
    assert whisper.encode(np.tile(wave, 40)).shape == (16,)


# ---- config errors: one line naming the key and the choices ---------------------------------

def test_unknown_or_misplaced_encoder_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"encoders\.audio\.name='whispr' is unknown encoder; choices for audio: "
                                          r"hubert, wavlm, wav2vec2, whisper"):
        load_config(FeatureConfig, None, ["encoders.audio.name=whispr"])
    with pytest.raises(ConfigError, match=r"encoders\.local\.name='whisper' is an encoder of another input; "
                                          r"choices for local: mae, videomae, clip, siglip, timm_vit"):
        load_config(FeatureConfig, None, ["encoders.local.name=whisper"])
    with pytest.raises(ConfigError, match=r"encoders has unknown kind\(s\) \['voice'\]"):
        load_config(FeatureConfig, None, ["encoders.voice.name=whisper"])
    with pytest.raises(ConfigError, match=r"encoders\.audio\.tokens must be >= 1"):
        load_config(FeatureConfig, None, ["encoders.audio.tokens=0"])


def test_weights_folder_of_another_architecture(encoders):
    with pytest.raises(ConfigError, match=r"encoders\.audio \(whisper, weights .*hubert\): .*holds a 'hubert' model, "
                                          r"not a whisper one \(accepted model_type: whisper\)"):
        build("whisper", encoders["hubert"])
    with pytest.raises(ConfigError, match=r"encoders\.local \(clip, .*holds a 'siglip_vision_model' model, not a clip vision tower"):
        build("clip", encoders["siglip"])


def test_output_folders_follow_the_encoder_names():
    release = load_config(FeatureConfig)
    assert [release.output_folder(k) for k in ("audio", "local", "temporal")] == ["HL-UTT", "mae_340_UTT", "maeV_399_UTT"]
    other = load_config(FeatureConfig, None, ["encoders.audio.name=whisper", "encoders.local.tokens=2",
                                              "encoders.temporal.output=my_video_feats"])
    assert [other.output_folder(k) for k in ("audio", "local", "temporal")] == ["audio_whisper", "local_mae", "my_video_feats"]
    with pytest.raises(ConfigError, match="two feature kinds write to the same folder"):
        load_config(FeatureConfig, None, ["encoders.temporal.output=HL-UTT"])


# ---- the model side: frame towers, feature slots, the merge's count check --------------------

def test_model_config_errors_name_the_key_and_the_choices(tiny_model_cfg, encoders, tmp_path):
    import dataclasses

    from minigpt4.models.vision_towers import build_vision_tower
    from minigpt4.models.config import ModelConfig

    with pytest.raises(ConfigError, match=r"unknown model\.vision\.arch 'clipp'; choices: clip, eva_vit_g, siglip, timm_vit"):
        build_vision_tower(dataclasses.replace(tiny_model_cfg.vision, arch="clipp"))
    tower = TINY_BUILDERS["siglip"](tmp_path, 32, 56)  # a SigLIP folder where a CLIP one is expected
    with pytest.raises(ConfigError, match=r"holds a 'siglip_vision_model' model, not a clip vision tower"):
        build_vision_tower(dataclasses.replace(tiny_model_cfg.vision, arch="clip", weights=str(tower)))
    with pytest.raises(ConfigError, match=r"model\.vision\.width=48 but siglip weights .* has width 32; set model\.vision\.width: 32"):
        build_vision_tower(dataclasses.replace(tiny_model_cfg.vision, arch="siglip", weights=str(tower), width=48))
    # a patch grid the 4-patch tokens do not tile, a feature slot of no tokens, an unknown kind
    with pytest.raises(ConfigError, match=r"27x27 patch grid whose patch count is not divisible by patches_per_token=4"):
        load_config(ModelConfig, None, ["vision.arch=siglip", "vision.image_size=378", "vision.patch_size=14"])
    with pytest.raises(ConfigError, match=r"model\.feature_slots\.audio: tokens and width must be >= 1"):
        load_config(ModelConfig, None, ["feature_slots.audio.tokens=0"])
    with pytest.raises(ConfigError, match=r"model\.feature_slots has unknown kind\(s\) \['voice'\]"):
        load_config(ModelConfig, None, ["feature_slots.voice.tokens=2"])


def test_feature_rows_of_another_layout_are_refused_naming_the_encoders(tiny_model_cfg):
    import dataclasses

    from minigpt4.data.collator import EmotionCollator
    from minigpt4.models.builder import build_model
    from minigpt4.models.config import FeatureSlotConfig
    from minigpt4.models.emotion_llama import merge_visual_tokens
    from tests.conftest import make_sample

    slots = {"local": FeatureSlotConfig(), "temporal": FeatureSlotConfig(),
             "audio": FeatureSlotConfig(encoder="whisper", width=48, tokens=2)}
    cfg = dataclasses.replace(tiny_model_cfg, feature_slots=slots)
    assert cfg.num_features == 4 and cfg.num_visual_tokens == cfg.num_patch_tokens + 4 + 1
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.feats_llama_proj3.weight.shape == (model.feats_llama_proj1.weight.shape[0], 48)
    release_rows = EmotionCollator(model.tokenizer, cfg.num_patch_tokens, train=True)([make_sample()])  # 3 x 32
    with pytest.raises(ValueError, match=r"features have shape \(3, 32\) per clip, but the model's feature encoders give "
                                         r"local \(mae\) 1 x 32 \+ temporal \(videomae\) 1 x 32 \+ audio \(whisper\) 2 x 48"):
        model(release_rows)
    # rows of the right layout pass, and a sample whose slots disagree with its tokens names the encoders too
    features, present = cfg.feature_layout.stack({"local": np.ones(32), "temporal": np.ones(32), "audio": np.ones((2, 48))})
    sample = make_sample() | {"features": torch.from_numpy(features), "feature_present": torch.from_numpy(present)}
    batch = EmotionCollator(model.tokenizer, cfg.num_patch_tokens, train=True)([sample])
    assert batch["visual_mask"].sum() == cfg.num_visual_tokens and torch.isfinite(model(batch).loss)
    tokens, present_tokens = model.encode_visual(batch)
    short_mask = batch["visual_mask"].clone()
    short_mask[0, short_mask[0].nonzero()[-1]] = False
    embeds = model.llama_model.get_input_embeddings()(batch["input_ids"])
    with pytest.raises(ValueError, match=r"8 visual placeholder slots .* but 9 visual tokens.*audio \(whisper\) 2 x 48"):
        merge_visual_tokens(embeds, short_mask, tokens, present_tokens, layout=cfg.feature_layout.describe())


def test_real_size_encoder_configs_meta_counts():
    """The counts README and docs/model.md state, by hand: each projection is as wide as its encoder."""
    from minigpt4.tools.inspect_model import inspect_command as main

    hidden = 4096
    whisper = main(["--cfg-path", "minigpt4/configs/models/emotion_llama_whisper.yaml", "--meta"])
    assert whisper["parameters"]["feats_llama_proj"] == 2 * (1024 * hidden + hidden) + (1280 * hidden + hidden) == 13_643_776
    assert whisper["parameters"]["trainable"] == 74_993_664 - (1024 * hidden) + 1280 * hidden == 76_042_240
    clip = main(["--cfg-path", "minigpt4/configs/models/emotion_llama_clip_hubert.yaml", "--meta"])
    counts = clip["parameters"]
    assert counts["llama_proj"] == 4 * 1024 * hidden + hidden and counts["cls_tk_llama_proj"] == 1024 * hidden + hidden
    assert counts["visual_encoder"] == 303_179_776 + 2 * 1024  # CLIP ViT-L/14 vision tower + ln_vision
    assert counts["trainable"] == 67_129_344 and counts["total"] == 7_108_726_784
    assert clip["token_layout"]["visual_tokens_per_clip"] == 64 + 6 + 1


def test_demo_encoders_option():
    from minigpt4.demo import StepFailed, parse_encoders

    assert parse_encoders("whisper,siglip") == {"frame": "siglip", "local": "siglip", "temporal": "siglip", "audio": "whisper"}
    assert parse_encoders("audio=wavlm,local=clip") == {"frame": "eva_vit_g", "local": "clip", "temporal": "videomae",
                                                        "audio": "wavlm"}
    with pytest.raises(StepFailed, match=r"kind must be one of frame, local, temporal, audio and the encoder one of "
                                         r"whisper, wavlm, wav2vec2, hubert"):
        parse_encoders("audio=clip")
    # the command's one error line: tests/test_entry_point_errors.py (demo-unknown-encoder)


def test_timm_vit_loads_its_state_dict_file_and_resamples_the_position_embedding(encoders):
    from safetensors.torch import load_file

    from minigpt4.models.vision_towers import create_timm_vit

    saved = load_file(encoders["timm_vit"])
    model = create_timm_vit(TINY_TIMM_VIT, 32, encoders["timm_vit"], init_seed=5)  # 160 px saved, 32 px built
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items() if k != "pos_embed")
    assert saved["pos_embed"].shape == (1, 1 + 10 * 10, 64) and model.pos_embed.shape == (1, 1 + 2 * 2, 64)
    with pytest.raises(ConfigError, match=r"model_name='vit_nope' is not a timm architecture"):
        create_timm_vit("vit_nope", 32)


# ---- the data side: rows of the model's layout, in folders and in shards ---------------------

@pytest.fixture
def multi_token_corpus(tmp_path):
    """The release fixtures with local (8,), temporal (2, 8) and audio (12,) features per clip."""
    import shutil

    import cv2

    from tests.test_data_dataset import FIXTURES

    for name in ("MERR_coarse_grained.txt", "MERR_coarse_grained.json", "MERR_fine_grained.json", "transcripts.csv"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    shapes = {"local_mae": (8,), "temporal_siglip": (2, 8), "audio_whisper": (12,)}
    for i, name in enumerate(["samplenew_00006611", "samplenew_00006612", "sample_00000042", "samplenew_00006613"]):
        for k, (folder, shape) in enumerate(shapes.items()):
            (tmp_path / folder).mkdir(exist_ok=True)
            np.save(tmp_path / folder / f"{name}.npy", np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 100 * k + i)
        (tmp_path / "frames").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "frames" / f"{name}.png"), np.full((20, 24, 3), 9 * i, np.uint8))
    return tmp_path


def test_datasets_and_shards_build_the_models_rows(multi_token_corpus, tmp_path):
    from minigpt4.data.annotations import AnnotationError
    from minigpt4.data.config import DatasetConfig
    from minigpt4.data.datasets import build_dataset
    from minigpt4.models.feature_layout import FeatureLayout
    from minigpt4.data.shards import write_shards
    from tests.test_data_dataset import _cfg

    layout = FeatureLayout(tokens=(1, 2, 1), widths=(8, 8, 12), encoders=("mae", "siglip", "whisper"))
    dirs = {"local": "local_mae", "temporal": "temporal_siglip", "audio": "audio_whisper"}
    dataset = build_dataset(_cfg(multi_token_corpus, feature_dirs=dirs, tasks=["emotion"]), None, train=False,
                            feature_layout=layout)
    sample = dataset[1]  # clip index 1: values + 1
    features = sample["features"].numpy()
    assert features.shape == (4, 12) and sample["feature_present"].tolist() == [True] * 4
    np.testing.assert_array_equal(features[0], np.r_[np.arange(8) + 1, np.zeros(4)])  # local, zero beyond width 8
    np.testing.assert_array_equal(features[1:3, :8], np.arange(16).reshape(2, 8) + 101)  # temporal's 2 tokens
    np.testing.assert_array_equal(features[3], np.arange(12) + 201)  # audio, 12 wide
    dropped = build_dataset(_cfg(multi_token_corpus, feature_dirs=dirs, tasks=["emotion"], drop_modalities=["temporal"]),
                            None, train=False, feature_layout=layout)[1]
    assert dropped["feature_present"].tolist() == [True, False, False, True] and not dropped["features"][1:3].any()
    # the release's layout cannot read these files: refused up front, naming the file, encoder and key
    with pytest.raises(AnnotationError, match=r"temporal_siglip/.*\.npy: temporal feature has shape \(2, 8\), expected "
                                              r"\(8,\) or \(1, 8\): the model's temporal slot \(encoder videomae\)"):
        build_dataset(_cfg(multi_token_corpus, feature_dirs=dirs, tasks=["emotion"]), None, train=False,
                      feature_layout=FeatureLayout.uniform(8))
    # shards keep the rows; a model of another layout is told at start-up
    write_shards(dataset, tmp_path / "shards", max_per_shard=3)
    sharded = build_dataset(DatasetConfig(reader="shards", shards=str(tmp_path / "shards"), tasks=["emotion"]), None,
                            train=False, feature_layout=layout)
    assert torch.equal(sharded[1]["features"], sample["features"])
    with pytest.raises(AnnotationError, match=r"features have shape \(4, 12\), the model's layout is .*audio \(hubert\) 1 x 8"):
        build_dataset(DatasetConfig(reader="shards", shards=str(tmp_path / "shards"), tasks=["emotion"]), None,
                      train=False, feature_layout=FeatureLayout.uniform(8))


def test_towers_renormalise_from_the_frame_transforms_statistics():
    from minigpt4 import processors
    from minigpt4.models import vision_towers

    assert (vision_towers.CLIP_MEAN, vision_towers.CLIP_STD) == (processors.CLIP_MEAN, processors.CLIP_STD)
    to_siglip = vision_towers.Renormalise((0.5,) * 3, (0.5,) * 3)
    raw = torch.rand(1, 3, 4, 4)  # [0, 1] pixels
    clip_normalised = (raw - torch.tensor(processors.CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(processors.CLIP_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(to_siglip(clip_normalised), (raw - 0.5) / 0.5)
