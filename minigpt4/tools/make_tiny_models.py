"""Build the tiny random-weight models the tests and `make demo` use, through the real loaders.

Nothing is downloaded: a byte-level BPE tokenizer is trained in-process, a tiny Llama and tiny
EVA tower get seeded random weights, and everything is saved in the same formats as the real
weights (Hugging Face folders, a timm/LAVIS-style `.pth`) so the very code paths that load
Llama-2-7b and EVA ViT-g load these.

    python -m minigpt4.tools.make_tiny_models --out checkpoints/tiny
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from minigpt4.common.errors import UserError, run_cli
from minigpt4.data.prompts import INSTRUCTION_POOLS, prompt_text
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


def tokenizer_corpus() -> list[str]:
    """Texts the tiny tokenizer learns its merges from (byte-level: any text still encodes)."""
    texts = [prompt_text("I can not believe it", task, ins) for task, pool in INSTRUCTION_POOLS.items() for ins in pool]
    return texts + [_LABEL_WORDS] * 64 + [_CLUE_WORDS] * 16


def train_tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)  # like SentencePiece "▁"
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>"
    )


def make_tiny_llm(
    out_dir: Path, *, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0, init_range: float = 0.3
) -> Path:
    """A random Llama + tokenizer saved as a Hugging Face folder (loads with from_pretrained).

    `init_range` is far above Llama's 0.02: with 0.02 a frozen random LM head can only produce
    near-uniform next-token distributions (loss stuck at ln(vocab)), so LoRA could not learn.
    """
    tokenizer = train_tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=init_range,
    )
    model = LlamaForCausalLM(config)
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


def make_tiny_models(out_dir: str | Path, seed: int = 0, with_encoders: bool = True) -> dict[str, str]:
    """Everything tiny under `out_dir`: llm/, eva_vit_tiny.pth and (optionally) encoders/."""
    out_dir = Path(out_dir)
    paths = {
        "llm": str(make_tiny_llm(out_dir / "llm", seed=seed)),
        "eva": str(make_tiny_eva(out_dir / "eva_vit_tiny.pth", seed=seed)),
    }
    if with_encoders:
        from minigpt4.features.encoders import make_tiny_encoders

        paths.update({k: str(v) for k, v in make_tiny_encoders(out_dir / "encoders", seed=seed).items()})
    (out_dir / "tiny_models.json").write_text(json.dumps(paths, indent=2))
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="checkpoints/tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-encoders", action="store_true", help="skip the HuBERT / MAE / VideoMAE encoders")
    args = parser.parse_args(argv)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file; give a folder for the tiny models (e.g. checkpoints/tiny)")
    print(json.dumps(make_tiny_models(args.out, args.seed, with_encoders=not args.no_encoders), indent=2))


if __name__ == "__main__":
    sys.exit(run_cli(main))
