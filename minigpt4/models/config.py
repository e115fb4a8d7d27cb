"""Model section of the configs. Defaults are the real-size Emotion-LLaMA (docs/model.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from minigpt4.models.feature_layout import FEATURE_ORDER, RELEASE_ENCODER_NAMES, FeatureLayout
from minigpt4.models.prompt_format import PROMPT_FORMATS

KV_CACHES = ("preallocated", "dynamic", "static")  # EmotionLLaMA.generate's kv_cache (run.kv_cache)

# Which parts of the LLM recompute their forward in the backward pass instead of keeping activations
# (docs/training.md, "Batching and activation checkpointing"): none | every_layer | every_k (decoder
# layers 0, k, 2k, ...) | mlp_only (the MLP of every layer).
ACTIVATION_CHECKPOINTING = ("none", "every_layer", "every_k", "mlp_only")


@dataclass
class VisionConfig:
    """The frozen frame encoder on the global frame; by default EVA ViT-g/14 (LAVIS layout: 39
    blocks, no final norm). `arch` names a `VISION_ENCODERS` entry (minigpt4/models/vision_towers.py):
    eva_vit_g | clip | siglip | timm_vit; the dimensions below are the tower's (docs/encoders.md)."""

    arch: str = "eva_vit_g"
    image_size: int = 448
    patch_size: int = 14
    width: int = 1408
    depth: int = 39
    num_heads: int = 16
    mlp_dim: int = 6144
    # eva_vit_g: LAVIS eva_vit_g.pth or a timm-format state dict; clip / siglip: a save_pretrained
    # folder; timm_vit: a state-dict file. None = random init
    weights: Optional[str] = None
    layer: int = -1  # clip / siglip: hidden_states index the tokens come from (-1 = final output)
    model_name: Optional[str] = None  # timm_vit: the timm architecture, e.g. vit_large_patch14_clip_224
    init_seed: int = 0  # used only when `weights` is None (tiny test towers)

    BOUNDS: ClassVar[dict[str, str]] = {  # checked at load time (common.config.check_bounds)
        "image_size": ">0", "patch_size": ">0", "width": ">0", "depth": ">0", "num_heads": ">0", "mlp_dim": ">0"}


@dataclass
class LLMConfig:
    """The language model: any Hugging Face causal-LM folder, or an architecture to build without weights."""

    # folder with config.json, weights and tokenizer (Llama-2-7b-chat-hf, Meta-Llama-3-8B-Instruct,
    # Qwen2.5-7B-Instruct, ...)
    path: Optional[str] = None
    # Architecture used when `path` holds no config.json (e.g. `inspect_model --meta`): keyword
    # arguments of the transformers config; `model_type` (default llama, e.g. qwen2) picks the class.
    architecture: dict[str, Any] = field(
        default_factory=lambda: {
            "vocab_size": 32000,
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
        }
    )
    # QLoRA: the frozen decoder's Linear layers in bitsandbytes nf4 (CUDA only); LoRA and the
    # projections stay in full precision. Lets stage 2 at 448 px / 1024 tokens fit a 24 GB GPU.
    load_in_4bit: bool = False


@dataclass
class LoraConfig:
    r: int = 64
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    BOUNDS: ClassVar[dict[str, str]] = {"r": ">=0", "alpha": ">0", "dropout": "0..<1"}  # r: 0 = no LoRA


@dataclass
class FeatureSlotConfig:
    """One utterance feature kind's place in the prompt: the encoder that made it (named in
    errors; the features config's `encoders.<kind>.name`), its width and its token count."""

    encoder: str = ""  # "" = the release's (local mae, temporal videomae, audio hubert)
    width: Optional[int] = None  # None = feature_dim
    tokens: int = 1  # 1 = one vector per clip; k = the extraction's `tokens: k`


@dataclass
class ModelConfig:
    arch: str = "emotion_llama"
    vision: VisionConfig = field(default_factory=VisionConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    feature_dim: int = 1024  # width of the utterance features (MAE, VideoMAE, HuBERT) unless a slot says otherwise
    # each kind's encoder, width and token count (YAML merges keys: `feature_slots: {audio: {encoder:
    # whisper, width: 1280}}` changes only audio); one projection per kind, feats_llama_proj1..3
    feature_slots: dict[str, FeatureSlotConfig] = field(
        default_factory=lambda: {kind: FeatureSlotConfig() for kind in FEATURE_ORDER})
    patches_per_token: int = 4  # consecutive raster-order patches concatenated into one LLM token
    dtype: str = "bf16"  # frozen weights and autocast: fp32 | bf16 | fp16
    checkpoint: Optional[str] = None  # trainable weights: our .safetensors or a released .pth
    checkpoint_partial: bool = False  # True for MiniGPT-v2 weights: tensors it lacks keep their init
    activation_checkpointing: str = "none"
    activation_checkpointing_k: int = 2  # every_k: layers 0, k, 2k, ... are checkpointed
    gradient_checkpointing: bool = False  # the older key: true = activation_checkpointing every_layer
    max_txt_len: int = 1024  # cap on target tokens, as in the release
    # "token": mean over all target tokens of the optimizer step, across micro-steps and processes
    # (the release, without its per-micro-step averaging). "sample": mean per sample,
    # then over samples, so a one-word label counts as much as a 50-token explanation.
    loss_reduction: str = "token"
    # How the user turn is wrapped (minigpt4/data/prompts.py, minigpt4/models/prompt_format.py): "llama2_inst" = `[INST] ... [/INST]`
    # (Llama-2-chat, the release); "chat_template" = the tokenizer's own chat template (Llama-3,
    # Qwen2.5, ... instruct models). Markers and visual tokens are the same in both.
    prompt_format: str = "llama2_inst"

    BOUNDS: ClassVar[dict[str, str]] = {"feature_dim": ">0", "num_features": ">=0", "patches_per_token": ">0",
                                        "max_txt_len": ">0", "activation_checkpointing_k": ">0"}

    def __post_init__(self) -> None:
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"model.prompt_format must be one of {', '.join(PROMPT_FORMATS)}, not {self.prompt_format!r}")
        if self.loss_reduction not in ("token", "sample"):
            raise ValueError(f"model.loss_reduction must be token or sample, not {self.loss_reduction!r}")
        if self.activation_checkpointing not in ACTIVATION_CHECKPOINTING:
            raise ValueError(f"model.activation_checkpointing must be one of {', '.join(ACTIVATION_CHECKPOINTING)}, "
                             f"not {self.activation_checkpointing!r}")
        if self.gradient_checkpointing:
            if self.activation_checkpointing not in ("none", "every_layer"):
                raise ValueError(
                    f"model.gradient_checkpointing: true (every layer) contradicts model.activation_checkpointing: "
                    f"{self.activation_checkpointing}; remove gradient_checkpointing (activation_checkpointing replaces it)")
            self.activation_checkpointing = "every_layer"
        if self.dtype not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"model.dtype must be fp32, bf16 or fp16, not {self.dtype!r}")
        unknown = sorted(set(self.feature_slots) - set(FEATURE_ORDER))
        if unknown:
            raise ValueError(f"model.feature_slots has unknown kind(s) {unknown}; choices: {', '.join(FEATURE_ORDER)}")
        for kind, slot in self.feature_slots.items():
            if slot.tokens < 1 or (slot.width is not None and slot.width < 1):
                raise ValueError(f"model.feature_slots.{kind}: tokens and width must be >= 1, got tokens={slot.tokens}, "
                                 f"width={slot.width}")
        grid = self.vision.image_size // self.vision.patch_size
        if self.vision.image_size % self.vision.patch_size or (grid * grid) % self.patches_per_token:
            raise ValueError(
                f"model.vision.image_size={self.vision.image_size} gives a {grid}x{grid} patch grid whose "
                f"patch count is not divisible by patches_per_token={self.patches_per_token}; use e.g. 224 or 448"
            )

    @property
    def num_patch_tokens(self) -> int:
        grid = self.vision.image_size // self.vision.patch_size
        return grid * grid // self.patches_per_token

    @property
    def feature_layout(self) -> FeatureLayout:
        """The rows of a sample's `features` (models/feature_layout.py), from `feature_slots`."""
        slots = [self.feature_slots.get(kind) or FeatureSlotConfig() for kind in FEATURE_ORDER]
        return FeatureLayout(tokens=tuple(s.tokens for s in slots),
                             widths=tuple(s.width or self.feature_dim for s in slots),
                             encoders=tuple(s.encoder or RELEASE_ENCODER_NAMES[k] for k, s in zip(FEATURE_ORDER, slots)))

    @property
    def num_features(self) -> int:
        """Feature tokens per clip with every input present (3 in the release: one per kind)."""
        return self.feature_layout.rows

    @property
    def num_visual_tokens(self) -> int:
        """Per clip with every input present: patch tokens, then features, then CLS."""
        return self.num_patch_tokens + self.num_features + 1
