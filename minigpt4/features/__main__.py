"""Command line: ``python -m minigpt4.features {extract,eva-cache,pretrain,tiny-encoders} ...``.

    python -m minigpt4.features tiny-encoders --out checkpoints/tiny/encoders
    python -m minigpt4.features extract --videos MER2023/videos --out MERR \\
        --cfg-path minigpt4/configs/features/real.yaml --options device=cuda decode_workers=8
    torchrun --nproc-per-node 8 -m minigpt4.features extract ...   # one share of the clips per GPU
    python -m minigpt4.features eva-cache --frames MERR/frames --out MERR/eva_cache \\
        --cfg-path train_configs/emotion_llama_stage1_coarse.yaml --device cuda   # the frozen tower, once
    python -m minigpt4.features pretrain --kind mae --crops MER2023/videos --out checkpoints/mae_face \\
        --cfg-path minigpt4/configs/features/real.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datetime import timedelta

from minigpt4.common.config import ConfigError, load_config
from minigpt4.common.distributed import init_distributed, shutdown
from minigpt4.common.threads import configure_threads
from minigpt4.features.config import FeatureConfig
from minigpt4.common.sharding import rank_device
from minigpt4.features.encoders import TINY_BUILDERS, make_tiny_encoders
from minigpt4.features.eva_cache import REPORT_NAME, build_eva_cache, find_frames, load_frame_tower
from minigpt4.features.extract import find_videos, read_names_file
from minigpt4.features.pretrain import pretrain_encoder
from minigpt4.features.sharded import extract_features_sharded
from minigpt4.models.eva_cache import MANIFEST_NAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minigpt4.features", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    extract = commands.add_parser("extract", help="videos -> HL-UTT / mae_340_UTT / maeV_399_UTT / frames")
    extract.add_argument("--videos", required=True, help="folder with .mp4/.avi/.mkv/.webm/.mov clips")
    extract.add_argument("--out", required=True, help="output folder (the release layout is created inside)")
    extract.add_argument("--names-file", help="only these clips: one name a line (annotation .txt lists work)")
    extract.add_argument("--eva-cache", action="store_true", help="also cache frozen EVA tokens of the frame")
    _add_config_arguments(extract)

    eva = commands.add_parser("eva-cache", help="frozen frame-tower tokens of every clip's frame -> tar shards")
    eva.add_argument("--frames", required=True, help="folder of <name>.jpg/.png frames, or of videos")
    eva.add_argument("--out", required=True, help="cache folder (eva-*.tar + eva_cache.json); a re-run adds missing clips")
    eva.add_argument("--cfg-path", required=True,
                     help="the model / train / eval config whose model.vision and dtype make the tokens "
                          "(or a features config: its eva_vision, in fp32)")
    eva.add_argument("--options", nargs="*", default=[], metavar="KEY=VALUE",
                     help="override keys of the model section (vision.weights=...)")
    eva.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"), help="storage dtype (default bf16)")
    eva.add_argument("--max-per-shard", type=int, default=1000, help="clips per tar shard")
    eva.add_argument("--batch-size", type=int, default=8, help="frames per tower forward pass")
    eva.add_argument("--device", default="cpu", help="cpu | cuda (under torchrun: cuda:LOCAL_RANK)")
    eva.add_argument("--frame-choice", default="first", choices=("first", "middle", "peak"),
                     help="which frame of a video (a frames folder is used as it is)")
    eva.add_argument("--names-file", help="only these clips: one name a line (annotation .txt lists work)")
    eva.add_argument("--workers", type=int, default=2, help="threads decoding frames")

    pretrain = commands.add_parser("pretrain", help="self-supervised MAE / VideoMAE pre-training on face crops")
    pretrain.add_argument("--kind", choices=("mae", "videomae"), required=True)
    pretrain.add_argument("--crops", required=True, help="folder of videos (faces are cropped) or of face images")
    pretrain.add_argument("--out", required=True, help="folder for save_pretrained")
    pretrain.add_argument("--init", help="start from this save_pretrained folder (default: the config's encoder)")
    _add_config_arguments(pretrain)

    tiny = commands.add_parser("tiny-encoders", help="save random tiny encoders (default HuBERT / ViT-MAE / VideoMAE)")
    tiny.add_argument("--out", required=True)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--hidden", type=int, default=32)
    tiny.add_argument("--image-size", type=int, default=32)
    tiny.add_argument("--names", default="hubert,mae,videomae",
                      help="comma-separated encoders: hubert, mae, videomae, wavlm, wav2vec2, whisper, clip, siglip, timm_vit")

    args = parser.parse_args(argv)
    try:
        if args.command == "tiny-encoders":
            names = [n.strip() for n in args.names.split(",") if n.strip()]
            unknown = [n for n in names if n not in TINY_BUILDERS]
            if unknown:
                raise ConfigError(f"--names: unknown encoder(s) {unknown}; choices: {', '.join(TINY_BUILDERS)}")
            for name, folder in make_tiny_encoders(Path(args.out), args.seed, args.hidden, args.image_size,
                                                   names).items():
                print(f"{name}: {folder}")
            return 0
        if args.command == "eva-cache":
            return _eva_cache(args)
        cfg = _load_cfg(args)
        configure_threads(threads=cfg.torch_threads or None)
        if args.command == "extract":
            return _extract(args, cfg)
        return _pretrain(args, cfg)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cfg-path", required=True, help="a YAML under minigpt4/configs/features/")
    parser.add_argument("--options", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")


def _load_cfg(args):
    overrides = list(args.options)
    if getattr(args, "eva_cache", False):
        overrides.append("eva_cache=true")
    return load_config(FeatureConfig, args.cfg_path, overrides)


def _extract(args, cfg) -> int:
    names = read_names_file(args.names_file) if args.names_file else None
    paths, problems = find_videos(args.videos, names)
    if not paths and not problems:
        print(f"error: no videos with a suffix .mp4/.avi/.mkv/.webm/.mov in {args.videos}", file=sys.stderr)
        return 2
    info = init_distributed("cpu", timeout=timedelta(days=7))  # under torchrun: gloo, only to meet at barriers
    try:
        report = extract_features_sharded(paths, args.out, cfg, info, problems=problems)
    finally:
        shutdown(info)
    if not info.is_main:
        return 1 if report.failed else 0  # rank 0 prints the merged report
    print(report.summary())
    print(f"report: {Path(args.out) / 'extraction_report.json'}")
    return 1 if report.failed else 0


def _eva_cache(args) -> int:
    configure_threads()
    tower = load_frame_tower(args.cfg_path, args.options)
    frames, problems = find_frames(args.frames, read_names_file(args.names_file) if args.names_file else None)
    if not frames and not problems:
        raise FileNotFoundError(f"no frames (.jpg/.png) or videos in {args.frames}")
    info = init_distributed("cpu", timeout=timedelta(days=7))  # under torchrun: gloo, only to meet at barriers
    try:
        report = build_eva_cache(frames, args.out, tower, dtype=args.dtype, max_per_shard=args.max_per_shard,
                                 batch_size=args.batch_size, device=rank_device(args.device, info.local_rank),
                                 frame_choice=args.frame_choice, workers=args.workers, problems=problems, info=info)
    finally:
        shutdown(info)
    if info.is_main:
        print(report.summary())
        print(f"cache: {Path(args.out) / MANIFEST_NAME}; report: {Path(args.out) / REPORT_NAME}")
    return 1 if report.failed else 0  # as extraction: some frames were skipped (named in the report)


def _pretrain(args, cfg) -> int:
    result = pretrain_encoder(args.kind, args.crops, args.out, cfg, init=args.init)
    print(f"saved {args.kind} to {result.out_dir} after {result.steps} steps; "
          f"loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
