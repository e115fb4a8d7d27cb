"""Other encoders end to end, at tiny size: the frame tower and the three feature encoders chosen
in the configs, features written by `python -m minigpt4.features extract` equal to those the live
model computes from the raw video, and a checkpoint trained with them loading back.

Three combinations cover every non-release encoder (the release's four are covered by
tests/test_infer.py): frame clip + whisper (2 tokens, wider than the rest) + clip per face crop
(its CLS) + siglip (2 tokens); frame siglip + wavlm + timm_vit + mae (2 tokens); frame timm_vit +
wav2vec2 (3 tokens) + videomae for both face kinds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from minigpt4.features.__main__ import main as extract_cli
from minigpt4.features.encoders import TINY_BUILDERS, TINY_TIMM_VIT, make_tiny_encoders

REPO = Path(__file__).resolve().parents[1]
TINY_CFG = REPO / "eval_configs/infer_tiny.yaml"
pytestmark = pytest.mark.filterwarnings("ignore:Passing `repetition_penalty`:UserWarning")

# frame tower; per kind: (encoder, hidden size, tokens, extra encoder options)
COMBOS = {
    "clip+whisper+siglip": ("clip", {"audio": ("whisper", 24, 2, {}), "local": ("clip", 16, 1, {"pooling": "cls"}),
                                     "temporal": ("siglip", 16, 2, {})}),
    "siglip+wavlm+timm+mae": ("siglip", {"audio": ("wavlm", 16, 1, {}),
                                         "local": ("timm_vit", 64, 1, {"model_name": TINY_TIMM_VIT, "image_size": 32}),
                                         "temporal": ("mae", 16, 2, {})}),
    "timm+wav2vec2+videomae": ("timm_vit", {"audio": ("wav2vec2", 16, 3, {}), "local": ("videomae", 16, 1, {}),
                                            "temporal": ("videomae", 16, 2, {})}),
}


def frame_options(arch: str, root: Path) -> list[str]:
    """model.vision for a tiny `arch` tower saved under root (56 px / 14 like the tiny EVA; timm's test_vit: 64 / 16)."""
    weights = TINY_BUILDERS[arch](root / "frame", 32, 56)
    options = [f"model.vision.arch={arch}", f"model.vision.weights={weights}"]
    if arch == "timm_vit":
        options += [f"model.vision.model_name={TINY_TIMM_VIT}", "model.vision.image_size=64", "model.vision.patch_size=16",
                    "model.vision.width=64"]
    return options


@pytest.fixture(scope="module", params=list(COMBOS))
def setup(request, tiny_dir, tmp_path_factory):
    from minigpt4.data.synthetic import generate_corpus

    frame_arch, kinds = COMBOS[request.param]
    root = tmp_path_factory.mktemp("e2e")
    feature_options, model_options = [], [f"model.llm.path={tiny_dir / 'llm'}", "model.checkpoint=null",
                                           *frame_options(frame_arch, root)]
    for kind, (name, hidden, tokens, extra) in kinds.items():
        weights = make_tiny_encoders(root / f"enc_{kind}", seed=1, hidden=hidden, image_size=32, names=[name])[name]
        feature_options += [f"{kind}_encoder={weights}", f"encoders.{kind}.name={name}", f"encoders.{kind}.tokens={tokens}",
                            *(f"encoders.{kind}.{key}={value}" for key, value in extra.items())]
        model_options += [f"model.feature_slots.{kind}.encoder={name}", f"model.feature_slots.{kind}.width={hidden}",
                          f"model.feature_slots.{kind}.tokens={tokens}"]
    data = generate_corpus(root / "data", clips=2, seed=1)
    names = sorted(p.stem for p in (data / "videos").glob("*.mp4"))
    (data / "all.txt").write_text("".join(f"{name} 8 happy\n" for name in names))
    # the extraction command (`python -m minigpt4.features extract ...`), run in this process to save the start-up
    code = extract_cli(["extract", "--videos", str(data / "videos"), "--out", str(data), "--cfg-path",
                        str(REPO / "minigpt4/configs/features/tiny.yaml"), "--options", *feature_options])
    assert code == 0
    return {"root": root, "data": data, "names": names, "kinds": kinds,
            "options": model_options + [f"features.{o}" for o in feature_options], "label_set": "mer2023"}


def infer_config(setup, *extra: str):
    from minigpt4.infer import load_infer_config

    return load_infer_config(TINY_CFG, [*setup["options"], *extra])


def dataset(setup, cfg, train: bool):
    from minigpt4.data.config import DatasetConfig
    from minigpt4.data.datasets import build_dataset
    from minigpt4.processors import EvaImageTransform

    data = setup["data"]
    folders = {kind: cfg.features.output_folder(kind) for kind in ("local", "temporal", "audio")}
    dcfg = DatasetConfig(reader="merr", annotation=str(data / "all.txt"), frames=str(data / "frames"),
                         label_set=setup["label_set"], tasks=["emotion"], feature_dirs=folders)
    return build_dataset(dcfg, EvaImageTransform(cfg.model.vision.image_size), train=train,
                         feature_layout=cfg.model.feature_layout)


def test_extraction_writes_a_folder_per_configured_encoder(setup):
    cfg = infer_config(setup)
    for kind, (name, hidden, tokens, _) in setup["kinds"].items():
        folder = setup["data"] / cfg.features.output_folder(kind)
        assert folder.name == f"{kind}_{name}"
        for clip in setup["names"]:
            array = np.load(folder / f"{clip}.npy")
            assert array.shape == ((hidden,) if tokens == 1 else (tokens, hidden)) and array.dtype == np.float32


def test_live_model_computes_the_extracted_features_and_trains_a_checkpoint_that_loads_back(setup):
    from minigpt4.infer import EmotionPredictor
    from minigpt4.models.builder import build_model
    from minigpt4.models.checkpoint import save_trainable

    cfg = infer_config(setup)
    predictor = EmotionPredictor(cfg)
    layout = cfg.model.feature_layout
    assert predictor.model.visual_encoder.forward_features(torch.zeros(1, 3, *(cfg.model.vision.image_size,) * 2)).shape \
        == (1, cfg.model.num_patch_tokens * cfg.model.patches_per_token + 1, cfg.model.vision.width)
    evaluation = dataset(setup, cfg, train=False)
    for index, name in enumerate(setup["names"]):
        inputs = predictor.prepare(setup["data"] / "videos" / f"{name}.mp4")  # the live path, from the raw video
        sample = evaluation[index]
        assert inputs.features.shape == (layout.rows, layout.width) and inputs.present.all()
        np.testing.assert_allclose(inputs.features, sample["features"].numpy(), atol=1e-5)
        ours, theirs = predictor.build_batch(inputs, "emotion"), predictor.collator([sample])
        for key in ("input_ids", "visual_mask", "feature_present"):
            assert torch.equal(ours[key], theirs[key]), key

    # a few training steps on the extracted features, then the checkpoint through the loader
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    assert not any(p.requires_grad for p in model.visual_encoder.parameters())
    for kind, proj in zip(("local", "temporal", "audio"), model.feature_projections):
        assert proj.weight.shape[1] == setup["kinds"][kind][1]  # each projection as wide as its encoder
    from minigpt4.data.collator import EmotionCollator

    collate = EmotionCollator(model.tokenizer, cfg.model.num_patch_tokens, train=True)
    batch = collate([dataset(setup, cfg, train=True)[i] for i in range(len(setup["names"]))])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    for _ in range(2):
        loss = model(batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in model.visual_encoder.parameters())  # frozen: no gradient reaches it
    trained = model.trainable_state_dict()
    assert not torch.equal(trained["feats_llama_proj3.weight"], before["feats_llama_proj3.weight"])
    path = setup["root"] / "trained.safetensors"
    save_trainable(model, path)
    loaded = EmotionPredictor(infer_config(setup, f"model.checkpoint={path}")).model.trainable_state_dict()
    assert loaded.keys() == trained.keys()
    for key in trained:
        assert torch.equal(loaded[key], trained[key]), key


def test_inference_refuses_encoders_that_do_not_fit_the_models_slots(setup):
    from minigpt4.common.config import ConfigError
    from minigpt4.infer import EmotionPredictor

    audio, hidden, tokens, _ = setup["kinds"]["audio"]
    with pytest.raises(ConfigError, match=rf"the audio encoder \(features\.encoders\.audio: {audio}, weights .*\) gives "
                                          rf"{tokens + 1} token\(s\) of width {hidden}, but the model's audio slot "
                                          rf"\(model\.feature_slots\.audio: {audio}\) takes {tokens} of width {hidden}"):
        EmotionPredictor(infer_config(setup, f"features.encoders.audio.tokens={tokens + 1}"))
