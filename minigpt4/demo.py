"""`make demo`: the whole method on a CPU in minutes, with nothing downloaded.

    synthetic clips -> tiny models -> feature extraction -> stage 1 -> stage 2 -> evaluation
    -> evaluation with each input removed -> (--ablations) one model per input subset

The demo configs train with modality dropout (each input left out of some samples, never all at
once), so the model answers from any subset of its inputs; the evaluation with each input
removed measures how well it does, in both answer modes (generated text, scored labels).

Every step is the command a user would type (printed before it runs), so the demo doubles as a
walk-through. Steps whose outputs exist are skipped or resumed, so a second `make demo` is quick.
Results go to `outputs/demo/results.json` and `outputs/demo/results.md`.

`--backbone llama3` or `--backbone qwen2` trains and evaluates the same model on a tiny
chat-template LLM instead (`model.prompt_format: chat_template`), on the same clips and
features; its results go to `outputs/demo_<backbone>/`.

`--encoders whisper,siglip` trains and evaluates the same model with other encoders (tiny random
ones, docs/encoders.md) on the same clips and reports its F1 beside the default's: an audio encoder
name (whisper, wavlm, wav2vec2) replaces HuBERT; an image encoder name (clip, siglip) replaces the
frame tower and, applied per face crop, MAE and VideoMAE; `kind=name` (kind: frame, local,
temporal, audio) replaces one. Its results go to `outputs/demo_encoders_<names>/`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from minigpt4.common.config import load_config
from minigpt4.features.config import FeatureConfig

OUT = Path("outputs/demo")
DATA = OUT / "data"
TINY = Path("checkpoints/tiny")
EVAL_CFG = "eval_configs/demo_tiny.yaml"
TARGET_F1 = 0.90
# --backbone: the tiny LLM folder (minigpt4.tools.make_tiny_models) and its prompt format
BACKBONES = {"llama2": ("llm", "llama2_inst"), "llama3": ("llm_llama3", "chat_template"),
             "qwen2": ("llm_qwen2", "chat_template")}

# `--ablations`: the inputs each single-modality model is trained and evaluated WITHOUT. Dropping
# inputs only at evaluation time would measure a distribution shift, not what a modality is worth.
ABLATIONS = {
    "all inputs": [],
    "face only (frame, local, temporal)": ["audio", "text"],
    "voice only": ["image", "local", "temporal", "text"],
    "words only": ["image", "local", "temporal", "audio"],
}


# Ablation models see exactly their inputs: no random modality dropout on top.
NO_DROPOUT = [f"datasets.synthetic_coarse.modality_dropout.{m}=0.0" for m in ("image", "local", "temporal", "audio", "text")]

# Evaluation-time removal: the one demo model, each input taken away from every test clip.
EVAL_DROPS = {"all inputs": [], "no frame": ["image"], "no local face": ["local"], "no temporal face": ["temporal"],
              "no audio": ["audio"], "no transcript": ["text"]}


# --encoders: what each name replaces when no kind is given
AUDIO_NAMES = ("whisper", "wavlm", "wav2vec2", "hubert")
IMAGE_NAMES = ("clip", "siglip")  # HF towers: one tiny folder serves as frame tower and per-crop encoder
RELEASE = {"frame": "eva_vit_g", "local": "mae", "temporal": "videomae", "audio": "hubert"}
TINY_ENCODERS = TINY / "encoders_56"  # tiny other encoders; 56 px like the tiny EVA


class StepFailed(Exception):
    """The demo cannot go on: a step exited with an error (its message is above), or it was
    started outside the repository."""


def run(cmd: list[str], log: list[dict]) -> None:
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    # no "Loading weights" / "Writing model shards" bars from transformers in every step (our own bars stay)
    env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    code = subprocess.run([sys.executable if c == "python" else c for c in cmd], env=env).returncode
    if code != 0:
        raise StepFailed(f"demo step failed with exit status {code}: {shlex.join(cmd)} (its message is above; "
                         "fix that and re-run `python -m minigpt4.demo`, finished steps are kept)")
    log.append({"command": shlex.join(cmd), "seconds": round(time.perf_counter() - start, 1)})


def metrics(path: Path) -> dict:
    return json.loads(path.read_text())["metrics"]


def run_ablations(steps: list[dict]) -> dict[str, dict]:
    """One short emotion-only training per input subset, each evaluated with the same inputs."""
    scores = {}
    for name, dropped in ABLATIONS.items():
        out = OUT / "ablations" / ("_".join(dropped) or "all")
        drop = f"[{','.join(dropped)}]"
        run(["python", "train.py", "--cfg-path", "train_configs/demo_stage1.yaml", "--resume", "--options",
             f"run.output_dir={out}", "datasets.synthetic_coarse.tasks=[emotion]",
             f"datasets.synthetic_coarse.drop_modalities={drop}", f"val_datasets.synthetic_val.drop_modalities={drop}",
             *NO_DROPOUT], steps)
        run(["python", "eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic", "--options",
             f"run.output_dir={out}/eval", f"model.checkpoint={out}/best/trainable.safetensors",
             f"datasets.synthetic.drop_modalities={drop}"], steps)
        result = metrics(out / "eval" / "synthetic" / "metrics.json")
        scores[name] = {"dropped": dropped, "weighted_f1": result["weighted_f1"], "accuracy": result["accuracy"]}
    return scores


def run_backbone(backbone: str, steps: list[dict], started: float) -> dict:
    """Stage 1, stage 2 and evaluation with the demo configs, on another tiny LLM and its prompt format."""
    folder, prompt_format = BACKBONES[backbone]
    out = Path(f"{OUT}_{backbone}")
    model = [f"model.llm.path={TINY / folder}", f"model.prompt_format={prompt_format}"]
    run(["python", "train.py", "--cfg-path", "train_configs/demo_stage1.yaml", "--resume", "--options", *model,
         f"run.output_dir={out}/stage1"], steps)
    run(["python", "train.py", "--cfg-path", "train_configs/demo_stage2.yaml", "--resume", "--options", *model,
         f"run.output_dir={out}/stage2", f"run.init_from={out}/stage1/best/trainable.safetensors"], steps)
    run(["python", "eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic", "--options", *model,
         f"model.checkpoint={out}/stage2/best/trainable.safetensors", f"run.output_dir={out}/eval"], steps)
    full = metrics(out / "eval" / "synthetic" / "metrics.json")
    results = {"backbone": backbone, "llm": str(TINY / folder), "prompt_format": prompt_format,
               "test_split": str(DATA / "test.txt"), "all_inputs": {k: full[k] for k in ("weighted_f1", "accuracy", "n", "n_invalid")},
               "steps": steps, "total_seconds": round(time.perf_counter() - started, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nDemo ({backbone}, {prompt_format}) finished in {results['total_seconds']:.0f} s: weighted F1 "
          f"{full['weighted_f1']:.4f}, accuracy {full['accuracy']:.4f} on the synthetic test split. Written: {out / 'results.json'}")
    return results
def parse_encoders(spec: str) -> dict[str, str]:
    """'whisper,siglip' or 'audio=whisper,frame=clip' -> {frame, local, temporal, audio: encoder name}."""
    plan = dict(RELEASE)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, name = item.rpartition("=")
        if kind:
            if kind == "audio":
                allowed = AUDIO_NAMES
            elif kind == "frame":
                allowed = IMAGE_NAMES
            else:  # a face kind: an image encoder per crop, or either of the release's face encoders
                allowed = IMAGE_NAMES + ("mae", "videomae")
            if kind not in RELEASE or name not in allowed:
                raise StepFailed(f"--encoders {item!r}: kind must be one of {', '.join(RELEASE)} and the encoder one of "
                                 f"{', '.join(allowed) if kind in RELEASE else '...'}")
            plan[kind] = name
        elif name in AUDIO_NAMES:
            plan["audio"] = name
        elif name in IMAGE_NAMES:
            plan.update(frame=name, local=name, temporal=name)
        else:
            raise StepFailed(f"--encoders: unknown encoder {name!r}; choices: {', '.join(AUDIO_NAMES + IMAGE_NAMES)} "
                             "(or kind=name with kind frame, local, temporal, audio)")
    if plan == RELEASE:
        raise StepFailed("--encoders names only the release's encoders; the default demo already runs them")
    return plan


def run_encoders(plan: dict[str, str], steps: list[dict], started: float) -> dict:
    """Extract with the other encoders, train stages 1 and 2 and evaluate; the default model beside it."""
    names = sorted({name for kind, name in plan.items() if name != RELEASE[kind]})
    out = Path(f"{OUT}_encoders_{'_'.join(names)}")
    if not all((TINY_ENCODERS / name).exists() for name in names):
        run(["python", "-m", "minigpt4.features", "tiny-encoders", "--out", str(TINY_ENCODERS), "--image-size", "56",
             "--names", ",".join(names)], steps)
    feature_options = []
    for kind in ("local", "temporal", "audio"):
        if plan[kind] != RELEASE[kind]:
            feature_options += [f"{kind}_encoder={TINY_ENCODERS / plan[kind]}", f"encoders.{kind}.name={plan[kind]}"]
    folders = {kind: load_config(FeatureConfig, "minigpt4/configs/features/tiny.yaml", feature_options).output_folder(kind)
               for kind in ("local", "temporal", "audio")}
    run(["python", "-m", "minigpt4.features", "extract", "--videos", str(DATA / "videos"), "--out", str(DATA),
         "--cfg-path", "minigpt4/configs/features/tiny.yaml", "--options", *feature_options], steps)
    model = [f"model.feature_slots.{kind}.encoder={plan[kind]}" for kind in ("local", "temporal", "audio")]
    if plan["frame"] != RELEASE["frame"]:
        model += [f"model.vision.arch={plan['frame']}", f"model.vision.weights={TINY_ENCODERS / plan['frame']}"]

    def dirs(dataset: str) -> list[str]:
        return [f"{dataset}.feature_dirs.{kind}={folder}" for kind, folder in folders.items()]

    train = [*model, *dirs("datasets.synthetic_coarse"), *dirs("val_datasets.synthetic_val")]
    run(["python", "train.py", "--cfg-path", "train_configs/demo_stage1.yaml", "--resume", "--options", *train,
         f"run.output_dir={out}/stage1"], steps)
    run(["python", "train.py", "--cfg-path", "train_configs/demo_stage2.yaml", "--resume", "--options", *train,
         f"run.output_dir={out}/stage2", f"run.init_from={out}/stage1/best/trainable.safetensors"], steps)
    run(["python", "eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic", "--options", *model,
         *dirs("datasets.synthetic"), f"model.checkpoint={out}/stage2/best/trainable.safetensors",
         f"run.output_dir={out}/eval"], steps)
    ours = metrics(out / "eval" / "synthetic" / "metrics.json")
    default_path = OUT / "eval" / "synthetic" / "metrics.json"
    if not default_path.is_file():  # the default model on the same clips, for the comparison
        run(["python", "train.py", "--cfg-path", "train_configs/demo_stage1.yaml", "--resume"], steps)
        run(["python", "train.py", "--cfg-path", "train_configs/demo_stage2.yaml", "--resume"], steps)
        run(["python", "eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic"], steps)
    default = metrics(default_path)
    keys = ("weighted_f1", "accuracy", "n", "n_invalid")
    results = {"encoders": plan, "feature_folders": folders, "test_split": str(DATA / "test.txt"),
               "with_these_encoders": {k: ours[k] for k in keys}, "default_encoders": {k: default[k] for k in keys},
               "steps": steps, "total_seconds": round(time.perf_counter() - started, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    described = ", ".join(f"{kind} {name}" for kind, name in plan.items())
    print(f"\n| encoders | weighted F1 | accuracy |\n|---|---|---|\n"
          f"| default ({', '.join(f'{k} {v}' for k, v in RELEASE.items())}) | {default['weighted_f1']:.4f} | {default['accuracy']:.4f} |\n"
          f"| {described} | {ours['weighted_f1']:.4f} | {ours['accuracy']:.4f} |\n"
          f"\nSynthetic test split; {results['total_seconds']:.0f} s. Written: {out / 'results.json'}")
    return results


def run_eval_drops(steps: list[dict]) -> dict[str, dict]:
    """The demo model evaluated with each input removed from every test clip, both answer modes."""
    scores = {}
    for name, dropped in EVAL_DROPS.items():
        if not dropped:
            path = OUT / "eval" / "synthetic" / "metrics.json"
        else:
            out = OUT / "eval_without" / dropped[0]
            run(["python", "eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic", "--options",
                 f"run.output_dir={out}", f"datasets.synthetic.drop_modalities=[{dropped[0]}]"], steps)
            path = out / "synthetic" / "metrics.json"
        by_mode = json.loads(path.read_text())["by_answer_mode"]
        scores[name] = {"dropped": dropped, **{mode: {k: m[k] for k in ("weighted_f1", "accuracy", "n_invalid")}
                                               for mode, m in by_mode.items()}}
    return scores


def run_demo(argv: list[str] | None = None) -> dict:
    """Run every step (see the module doc) and return the results written to results.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", choices=list(BACKBONES), default="llama2",
                        help="the tiny LLM: llama2 ([INST] prompts) or a chat-template one (llama3, qwen2)")
    parser.add_argument("--encoders", default="",
                        help="other encoders, e.g. whisper,siglip or audio=wavlm,local=clip (docs/encoders.md); "
                             "reports F1 beside the default encoders'")
    parser.add_argument("--ablations", action="store_true",
                        help="also train and evaluate one emotion-only model per input subset (about 4 more minutes)")
    args = parser.parse_args(argv)
    plan = parse_encoders(args.encoders) if args.encoders else None
    if not Path("train.py").is_file():
        raise StepFailed(f"run the demo from the repository root (the folder with train.py), not {Path.cwd()}")
    started = time.perf_counter()
    steps: list[dict] = []

    if not (DATA / "corpus.json").is_file():
        run(["python", "-m", "minigpt4.data.synthetic", "--out", str(DATA), "--clips", str(args.clips), "--seed", str(args.seed)], steps)
    if not (TINY / "tiny_models.json").is_file():
        run(["python", "-m", "minigpt4.tools.make_tiny_models", "--out", str(TINY)], steps)
    run(["python", "-m", "minigpt4.features", "extract", "--videos", str(DATA / "videos"), "--out", str(DATA),
         "--cfg-path", "minigpt4/configs/features/tiny.yaml"], steps)
    if args.backbone != "llama2":
        return run_backbone(args.backbone, steps, started)
    if plan is not None:
        return run_encoders(plan, steps, started)
    run(["python", "train.py", "--cfg-path", "train_configs/demo_stage1.yaml", "--resume"], steps)
    run(["python", "train.py", "--cfg-path", "train_configs/demo_stage2.yaml", "--resume"], steps)
    run(["python", "eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic"], steps)
    full = metrics(OUT / "eval" / "synthetic" / "metrics.json")
    without = run_eval_drops(steps)

    ablations = run_ablations(steps) if args.ablations else {}

    results = {
        "test_split": "outputs/demo/data/test.txt",
        "all_inputs": {k: full[k] for k in ("weighted_f1", "accuracy", "n", "n_invalid")},
        "eval_without_one_input": without,
        "ablations_emotion_only_training": ablations,
        "chance_weighted_f1": round(1 / 6, 3),
        "target_weighted_f1": TARGET_F1,
        "stage1_best": json.loads((OUT / "stage1" / "best" / "metrics.json").read_text()),
        "stage2_best": json.loads((OUT / "stage2" / "best" / "metrics.json").read_text()),
        "steps": steps,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    lines = [
        "| inputs | weighted F1 | accuracy |",
        "|---|---|---|",
        f"| all (frame, face, voice, words) | {full['weighted_f1']:.4f} | {full['accuracy']:.4f} |",
        *[f"| ablation, emotion task only: {k} | {v['weighted_f1']:.4f} | {v['accuracy']:.4f} |" for k, v in ablations.items()],
    ]
    lines += [
        "",
        "| evaluated without | weighted F1 (generate) | invalid answers (generate) | weighted F1 (score_labels) |",
        "|---|---|---|---|",
        *[f"| {k} | {v['generate']['weighted_f1']:.4f} | {int(v['generate']['n_invalid'])} | "
          f"{v['score_labels']['weighted_f1']:.4f} |" for k, v in without.items()],
    ]
    table = "\n".join(lines)
    (OUT / "results.md").write_text(f"# Demo results (synthetic test split)\n\n{table}\n\nTotal {results['total_seconds']} s.\n")
    print(f"\nDemo finished in {results['total_seconds']:.0f} s. Synthetic test split:\n\n{table}\n")
    print(f"Weighted F1 {full['weighted_f1']:.4f} (target >= {TARGET_F1}, chance ~0.17). Written: {OUT / 'results.json'}")
    if full["weighted_f1"] < TARGET_F1:
        print(f"warning: weighted F1 is below the target {TARGET_F1}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    """The command (console script `emotion-llama-demo`): a failed step is one `error:` line, exit 2."""
    try:
        run_demo(argv)
    except StepFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
