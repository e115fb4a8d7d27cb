"""Build the tiny random-weight models the tests and `make demo` use, through the real loaders.

Nothing is downloaded: a byte-level BPE tokenizer is trained in-process, a tiny Llama and tiny
EVA tower get seeded random weights, and everything is saved in the same formats as the real
weights (Hugging Face folders, a timm/LAVIS-style `.pth`) so the very code paths that load
Llama-2-7b and EVA ViT-g load these.

Besides the Llama-2-style LLM (`llm/`, `[INST]` prompts), two chat-template backbones are built
for `model.prompt_format: chat_template`: `llm_llama3/` (Llama-3-Instruct style: byte-level BPE,
`<|begin_of_text|>`, header tokens, `<|eot_id|>`, no pad or unk token, grouped-query attention)
and `llm_qwen2/` (Qwen2.5-Instruct style: Qwen2 architecture with q/k/v biases, `<|im_start|>` /
`<|im_end|>`, no BOS, a default system turn). Their tokenizers carry the chat templates of the
real models (Llama-3's verbatim, Qwen2.5's without the tool-calling branches).

    python -m minigpt4.tools.make_tiny_models --out checkpoints/tiny
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

from minigpt4.common.errors import UserError, run_cli
from minigpt4.data.prompts import INSTRUCTION_POOLS, prompt_text
from minigpt4.features.encoders import make_tiny_encoders
from minigpt4.models.config import VisionConfig
from minigpt4.models.eva_vit import build_eva_vit

TINY_VISION = VisionConfig(image_size=56, patch_size=14, width=32, depth=2, num_heads=2, mlp_dim=64)

_LABEL_WORDS = (
    "neutral angry happy sad worried surprise fear contempt doubt disgust frustrated excited "
    "happiness sadness anger worry surprised fearful disgusted calm"
)
_CLUE_WORDS = (
    "the person face smiles frowns eyebrows raised lowered mouth open closed corners eyes wide narrow "
    "voice pitch high low loud soft fast slow trembling steady words say says said sentence tone "
    "expression shows shown suggests indicates therefore so because and with a an of in is are was "
    "clue clues video audio speech emotion label reason reasoning sounds looks seems feels"
)


LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
QWEN2_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}"
    "{%- endif %}{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

# Per style: special tokens (in id order), the tokenizer's named tokens, chat template, config class.
TINY_LLM_STYLES: dict[str, dict] = {
    "llama2": {"special": ["<unk>", "<s>", "</s>"], "dir": "llm", "config": LlamaConfig, "kv_heads": 1.0,
               "tokens": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"},
               "chat_template": None},
    "llama3": {"special": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                           "<|eot_id|>"], "dir": "llm_llama3", "config": LlamaConfig, "kv_heads": 0.5,
               "tokens": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
               "chat_template": LLAMA3_CHAT_TEMPLATE, "extra": {"rope_theta": 500000.0}},
    "qwen2": {"special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "dir": "llm_qwen2", "config": Qwen2Config,
              "kv_heads": 0.5, "tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
              "chat_template": QWEN2_CHAT_TEMPLATE, "extra": {"rope_theta": 1000000.0}},
}


def tokenizer_corpus(style: str = "llama2") -> list[str]:
    """Texts the tiny tokenizer learns its merges from (byte-level: any text still encodes)."""
    texts = [prompt_text("I can not believe it", task, ins) for task, pool in INSTRUCTION_POOLS.items() for ins in pool]
    texts += [_LABEL_WORDS] * 64 + [_CLUE_WORDS] * 16
    if TINY_LLM_STYLES[style]["chat_template"]:
        texts += ["system user assistant You are Qwen, created by Alibaba Cloud. You are a helpful assistant."] * 4
    return texts


def train_tiny_tokenizer(vocab_size: int = 512, style: str = "llama2") -> PreTrainedTokenizerFast:
    spec = TINY_LLM_STYLES[style]
    unk = spec["tokens"].get("unk_token")
    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=style == "llama2")  # Llama-2: SentencePiece "▁"
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=spec["special"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(style), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, **spec["tokens"])
    if spec["chat_template"]:
        tokenizer.chat_template = spec["chat_template"]
    return tokenizer


def make_tiny_llm(
    out_dir: Path, *, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0, init_range: float = 0.3,
    style: str = "llama2",
) -> Path:
    """A random causal LM + tokenizer of `style` (TINY_LLM_STYLES) saved as a Hugging Face folder.

    `init_range` is far above Llama's 0.02: with 0.02 a frozen random LM head can only produce
    near-uniform next-token distributions (loss stuck at ln(vocab)), so LoRA could not learn.
    """
    spec = TINY_LLM_STYLES[style]
    tokenizer = train_tiny_tokenizer(style=style)
    torch.manual_seed(seed)
    config = spec["config"](
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, int(heads * spec["kv_heads"])),
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=init_range,
        **spec.get("extra", {}),
    )
    model = AutoModelForCausalLM.from_config(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def make_tiny_eva(path: Path, cfg: VisionConfig = TINY_VISION, seed: int = 0) -> Path:
    """A random EVA tower in the timm/LAVIS state-dict format `build_eva_vit` loads."""
    tower = build_eva_vit(VisionConfig(**{**vars(cfg), "weights": None, "init_seed": seed}))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tower.state_dict(), path)
    return path


def make_tiny_models(out_dir: str | Path, seed: int = 0, with_encoders: bool = True,
                     styles: tuple[str, ...] = tuple(TINY_LLM_STYLES)) -> dict[str, str]:
    """Everything tiny under `out_dir`: llm/ (+ llm_llama3/, llm_qwen2/), eva_vit_tiny.pth and (optionally) encoders/."""
    out_dir = Path(out_dir)
    paths = {TINY_LLM_STYLES[style]["dir"]: str(make_tiny_llm(out_dir / TINY_LLM_STYLES[style]["dir"], seed=seed,
                                                               style=style)) for style in styles}
    paths["eva"] = str(make_tiny_eva(out_dir / "eva_vit_tiny.pth", seed=seed))
    if with_encoders:
        paths.update({k: str(v) for k, v in make_tiny_encoders(out_dir / "encoders", seed=seed).items()})
    (out_dir / "tiny_models.json").write_text(json.dumps(paths, indent=2))
    return paths


def make_command(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="checkpoints/tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-encoders", action="store_true", help="skip the HuBERT / MAE / VideoMAE encoders")
    args = parser.parse_args(argv)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file; give a folder for the tiny models (e.g. checkpoints/tiny)")
    print(json.dumps(make_tiny_models(args.out, args.seed, with_encoders=not args.no_encoders), indent=2))


def main(argv: list[str] | None = None) -> int:
    """The command (console script `emotion-llama-make-tiny`): a user error is one `error:` line, exit 2."""
    return run_cli(lambda: make_command(argv)) or 0


if __name__ == "__main__":
    sys.exit(main())
