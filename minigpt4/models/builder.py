"""Model builders: one plain function builds the 7B model and the tiny test model from a config."""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from pathlib import Path

import peft
import torch
import torch.utils.checkpoint
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from minigpt4.common.registry import Registry
from minigpt4.models.checkpoint import load_trainable
from minigpt4.models.config import LLMConfig, LoraConfig, ModelConfig
from minigpt4.models.emotion_llama import EmotionLLaMA
from minigpt4.models.vision_towers import frozen_frame_tower

log = logging.getLogger(__name__)

MODELS: Registry = Registry("model arch")

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_model(cfg: ModelConfig, *, meta: bool = False) -> EmotionLLaMA:
    """Build the model of `cfg.arch`. With `meta`, shapes only (no memory, no weights read)."""
    return MODELS.get(cfg.arch)(cfg, meta=meta)


@MODELS.register("emotion_llama")
def build_emotion_llama(cfg: ModelConfig, *, meta: bool = False) -> EmotionLLaMA:
    dtype = DTYPES[cfg.dtype]
    device = torch.device("meta") if meta else None
    with torch.device(device) if meta else contextlib.nullcontext():
        vision_cfg = cfg.vision if not meta else type(cfg.vision)(**{**vars(cfg.vision), "weights": None})
        visual_encoder = frozen_frame_tower(vision_cfg, dtype)
        llm = build_llm(cfg.llm, dtype, meta=meta)
        llm = apply_lora(llm, cfg.lora)
        model = EmotionLLaMA(cfg, visual_encoder, llm, tokenizer=None if meta else load_tokenizer(cfg.llm))
    set_activation_checkpointing(llm, cfg.activation_checkpointing, cfg.activation_checkpointing_k)
    if cfg.checkpoint and not meta:
        load_trainable(model, cfg.checkpoint, partial=cfg.checkpoint_partial)
    return model


def build_llm(cfg: LLMConfig, dtype: torch.dtype, *, meta: bool = False) -> torch.nn.Module:
    """The frozen causal LM (any Hugging Face architecture: Llama-2/3, Qwen2, ...): from `cfg.path`,
    or random from `cfg.architecture` (its `model_type`, default llama, picks the architecture)."""
    if cfg.load_in_4bit and not meta:
        return build_llm_4bit(cfg, dtype)
    if cfg.path is not None and not meta:
        path = Path(cfg.path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"no Hugging Face model at {path} (config.json missing). Put the LLM there "
                "(see checkpoints/README.md) or set model.llm.path"
            )
        llm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    else:
        if cfg.path is not None and (Path(cfg.path) / "config.json").is_file():  # meta: real folder's shape
            config = AutoConfig.from_pretrained(cfg.path)
        else:
            architecture = dict(cfg.architecture)
            config = AutoConfig.for_model(architecture.pop("model_type", "llama"), **architecture)
        llm = AutoModelForCausalLM.from_config(config).to(dtype)
    llm.requires_grad_(False)
    return llm


def build_llm_4bit(cfg: LLMConfig, dtype: torch.dtype) -> torch.nn.Module:
    """QLoRA base: decoder Linear layers in double-quantized nf4 with `dtype` compute, on the current GPU.

    Not exercised by CI (no GPU there): the error paths are tested, the GPU path is for GPU sessions.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("model.llm.load_in_4bit needs a CUDA GPU (bitsandbytes nf4); set it to false on a CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise RuntimeError("model.llm.load_in_4bit needs bitsandbytes: pip install 'bitsandbytes>=0.43'") from None
    from transformers import BitsAndBytesConfig

    if cfg.path is None:
        raise ValueError("model.llm.load_in_4bit quantizes pretrained weights: set model.llm.path")
    path = Path(cfg.path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no Hugging Face model at {path} (config.json missing); set model.llm.path")
    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=True, llm_int8_skip_modules=["lm_head"],
    )
    llm = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=quant, dtype=dtype, device_map={"": torch.cuda.current_device()}
    )
    llm.requires_grad_(False)
    return llm


def apply_lora(llm: torch.nn.Module, cfg: LoraConfig) -> torch.nn.Module:
    """Wrap with peft LoRA (r=0 means no adapter: the LLM stays fully frozen)."""
    if cfg.r == 0:
        return llm
    lora = peft.LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    # Wrapping reads transformers' deprecated `is_gradient_checkpointing` property inside peft itself
    # (peft 0.21.2, the newest release: PeftModel.__init__ does `getattr(model,
    # "is_gradient_checkpointing", True)`); this code checkpoints with its own wrapper
    # (`set_activation_checkpointing`) and never reads that property. The FutureWarning is about
    # peft's source, not ours, so it is silenced here and only here; remove this once peft reads
    # `is_activation_checkpointing`.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return peft.get_peft_model(llm, lora)


def checkpointed_modules(llm: torch.nn.Module, mode: str, k: int = 2) -> list[torch.nn.Module]:
    """The modules of `llm` whose forward `mode` recomputes (ACTIVATION_CHECKPOINTING): decoder layers
    (all, or 0, k, 2k, ...) or every layer's `mlp`."""
    if mode == "none":
        return []
    causal_lm = llm.get_base_model() if isinstance(llm, peft.PeftModel) else llm
    layers = list(getattr(causal_lm.get_decoder(), "layers", []))
    if not layers:
        raise ValueError(f"model.activation_checkpointing={mode}: {type(causal_lm).__name__} has no decoder `layers` list")
    if mode == "every_layer":
        return layers
    if mode == "every_k":
        return layers[::k]
    if any(getattr(layer, "mlp", None) is None for layer in layers):
        raise ValueError(f"model.activation_checkpointing=mlp_only: the decoder layers of {type(causal_lm).__name__} "
                         "have no `mlp`; use every_layer or every_k")
    return [layer.mlp for layer in layers]


def set_activation_checkpointing(llm: torch.nn.Module, mode: str, k: int = 2) -> None:
    """Recompute the forward of the modules `mode` chooses in the backward pass (torch.utils.checkpoint,
    non-reentrant: LoRA weights inside them get their gradients, nothing needs `requires_grad` inputs).

    The module's own `forward` is wrapped on the instance, so parameter and state-dict names do not
    change (checkpoints stay loadable). Only training forwards with gradients are checkpointed; a
    forward with a KV cache (generation) runs as it is. Calling it again replaces the previous choice.
    """
    for module in llm.modules():
        if getattr(module.__dict__.get("forward"), "activation_checkpointed", False):
            del module.forward  # the class's forward again
    for module in checkpointed_modules(llm, mode, k):
        module.forward = _checkpointed(module)


def _checkpointed(module: torch.nn.Module):
    forward = module.forward

    def run(*args, **kwargs):
        if module.training and torch.is_grad_enabled() and kwargs.get("past_key_values") is None:
            return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    run.activation_checkpointed = True
    return run


def load_tokenizer(cfg: LLMConfig):
    """The LLM's tokenizer with a pad token: Llama-2 has none (its `<unk>`, never produced, is used),
    Llama-3 has neither (its end-of-sequence token is used: padding is masked out anyway)."""
    if cfg.path is None:
        return None
    tokenizer = AutoTokenizer.from_pretrained(cfg.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    return tokenizer


def logical_numel(param: torch.Tensor) -> int:
    """Elements of the weight a parameter stands for: a bitsandbytes 4-bit weight stores two values per
    byte (its `numel()` is half the layer's), its `quant_state.shape` is the layer's real shape."""
    quant_state = getattr(param, "quant_state", None)
    return math.prod(quant_state.shape) if quant_state is not None else param.numel()


def count_parameters(model: EmotionLLaMA) -> dict[str, int]:
    """Total, trainable and per-component parameter counts (what `inspect_model` prints), quantized
    weights counted from their logical shapes."""

    def n(params) -> int:
        return sum(logical_numel(p) for p in params)

    lora = n(p for name, p in model.llama_model.named_parameters() if "lora_" in name)
    return {
        "total": n(model.parameters()),
        "trainable": n(p for p in model.parameters() if p.requires_grad),
        "visual_encoder": n(model.visual_encoder.parameters()) + n(model.ln_vision.parameters()),
        "llm_base": n(p for name, p in model.llama_model.named_parameters() if "lora_" not in name),
        "lora": lora,
        "llama_proj": n(model.llama_proj.parameters()),
        "cls_tk_llama_proj": n(model.cls_tk_llama_proj.parameters()),
        "feats_llama_proj": n(p for proj in model.feature_projections for p in proj.parameters()),
    }


@contextlib.contextmanager
def merged_lora(model: EmotionLLaMA):
    """Fold the LoRA update into the base weights for the block (evaluation: one matmul per layer
    instead of three), then put the exact original weights back. The base weights are copied first
    (q and v of every layer: ~0.27 GB at 7B in bf16), since subtracting the update again would not
    give the same bits. A model without LoRA, or with 4-bit base weights (merging would re-quantize
    them), is left as it is."""
    llm = model.llama_model
    layers = [m for m in llm.modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
    if not layers or any(hasattr(m.get_base_layer().weight, "quant_state") for m in layers):
        yield model
        return
    saved = [m.get_base_layer().weight.detach().clone() for m in layers]
    llm.merge_adapter()
    try:
        yield model
    finally:
        for module, weight in zip(layers, saved):
            module.merged_adapters.clear()  # the flag unmerge_adapter would clear; the weights come back exactly
            module.get_base_layer().weight.data.copy_(weight)
