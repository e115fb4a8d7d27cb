"""`make demo`: the whole method on a CPU in minutes, with nothing downloaded.

    synthetic clips -> tiny models -> feature extraction -> stage 1 -> stage 2 -> evaluation
    -> evaluation with each input removed -> (--ablations) one model per input subset

The demo configs train with modality dropout (each input left out of some samples, never all at
once), so the model answers from any subset of its inputs; the evaluation with each input
removed measures how well it does, in both answer modes (generated text, scored labels).

It prints its plan with an ETA first and one screen of results at the end. Every step is the
command a user would type (printed before it runs, then run by calling that program's `main` in
the demo's process, so the heavy imports are paid once), so the demo doubles as a walk-through. Steps
whose outputs exist are skipped or resumed, so a second `make demo` is quick. Results go to
`outputs/demo/results.json` and `outputs/demo/results.md`.

`--quick`: the same corpus and stages with fewer epochs, evaluated with all inputs only, under
`outputs/demo_quick/` (the full demo's outputs stay untouched).

`--grpo` then runs stage 3 (GRPO with verifiable rewards, `train_configs/demo_stage3_grpo.yaml`)
from the stage-2 model and evaluates the test split before and after, with all inputs and without
the transcript: `outputs/demo/grpo/results.json` and `reward_curve.png`.

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
import importlib
import json
import logging
import os
import shlex
import sys
import textwrap
import time
from pathlib import Path

from minigpt4.common.config import load_config
from minigpt4.common.threads import THREADS_ENV, configure_threads
from minigpt4.features.config import FeatureConfig
from minigpt4.run_config import load_train_config

# Nothing here may import torch at module level (the config modules above do not): the corpus
# step's worker processes are spawned, and a spawned child imports the parent's main module (this
# one) before it renders a clip. torch, transformers and peft load with the first step that needs them.

OUT = Path("outputs/demo")
DATA = OUT / "data"
TINY = Path("checkpoints/tiny")
EVAL_CFG = "eval_configs/demo_tiny.yaml"
TARGET_F1 = 0.95
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


# The programs the demo's steps run, by the command a user would type: each step calls the program's
# `main` in this process, so torch, transformers and peft are imported once (~12 s a process on 2 cores).
PROGRAMS = {"train.py": "minigpt4.cli.train", "eval_emotion.py": "minigpt4.cli.eval_emotion",
            "minigpt4.features": "minigpt4.features.__main__"}


def run(cmd: list[str], log: list[dict], what: str = "") -> None:
    """Print `cmd` (python train.py ..., python -m <module> ...) and run that program's `main(argv)`
    here; a non-zero exit status is a StepFailed."""
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    program, argv = (cmd[2], cmd[3:]) if cmd[1] == "-m" else (cmd[1], cmd[2:])
    main = importlib.import_module(PROGRAMS.get(program, program)).main
    try:
        code = main(argv) or 0
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code if isinstance(exit_.code, int) else 2
    if code != 0:
        raise StepFailed(f"demo step failed with exit status {code}: {shlex.join(cmd)} (its message is above; "
                         "fix that and re-run `python -m minigpt4.demo`, finished steps are kept)")
    log.append({"what": what or cmd[1], "command": shlex.join(cmd), "seconds": round(time.perf_counter() - start, 1)})


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
        result = metrics(eval_result(out / "eval", dropped))
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


GRPO_OUT = OUT / "grpo"
GRPO_CFG = "train_configs/demo_stage3_grpo.yaml"
GRPO_CONDITIONS = {"all_inputs": [], "no_transcript": ["text"]}


def eval_result(out: Path, dropped: list[str] = ()) -> Path:
    """metrics.json of the demo's evaluation under `out` (run.output_dir) with `dropped` inputs removed
    (eval_emotion.py's `result_dir`: a `without_<inputs>` folder per removed set)."""
    return out / "synthetic" / (f"without_{'_'.join(dropped)}" if dropped else "") / "metrics.json"


def evaluate(checkpoint: Path, out: Path, steps: list[dict]) -> dict[str, dict]:
    """Test-split metrics (generated answers) of `checkpoint` per GRPO condition: one process, the
    model built once (`--without text`)."""
    if not all(eval_result(out, dropped).is_file() for dropped in GRPO_CONDITIONS.values()):
        removed = ",".join(d[0] for d in GRPO_CONDITIONS.values() if d)
        run(["python", "eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic", "--without", removed,
             "--options", f"run.output_dir={out}", f"model.checkpoint={checkpoint}"], steps)
    scores = {}
    for name, dropped in GRPO_CONDITIONS.items():
        result = json.loads(eval_result(out, dropped).read_text())
        generated = result.get("by_answer_mode", {}).get("generate", result["metrics"])
        scores[name] = {k: generated[k] for k in ("weighted_f1", "accuracy", "n", "n_invalid")}
    return scores


def run_grpo(steps: list[dict], started: float) -> dict:
    """Stage 3 from the stage-2 model; the test split before and after, all inputs and no transcript."""
    stage2 = OUT / "stage2" / "best" / "trainable.safetensors"
    before = evaluate(stage2, GRPO_OUT / "eval_before", steps)
    run(["python", "train.py", "--cfg-path", GRPO_CFG, "--resume"], steps)
    stage3 = GRPO_OUT / "best" / "trainable.safetensors"
    after = evaluate(stage3, GRPO_OUT / "eval_after", steps)
    log = [json.loads(line) for line in (GRPO_OUT / "metrics.jsonl").read_text().splitlines()]
    results = {
        "test_split": str(DATA / "test.txt"),
        "config": GRPO_CFG,
        "before": {"checkpoint": str(stage2), "weighted_f1": {k: v["weighted_f1"] for k, v in before.items()},
                   "metrics": before},
        "after": {"checkpoint": str(stage3), "weighted_f1": {k: v["weighted_f1"] for k, v in after.items()},
                  "metrics": after, "best": json.loads((GRPO_OUT / "best" / "metrics.json").read_text())},
        "reward_curve": {"png": str(GRPO_OUT / "reward_curve.png"), "steps": [r["step"] for r in log],
                         "reward": [r["reward"] for r in log], "reward/accuracy": [r.get("reward/accuracy") for r in log]},
        "steps": steps,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    (GRPO_OUT / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["| test weighted F1 | stage 2 (before) | stage 3 GRPO (after) |", "|---|---|---|"]
    lines += [f"| {name.replace('_', ' ')} | {before[name]['weighted_f1']:.4f} | {after[name]['weighted_f1']:.4f} |"
              for name in GRPO_CONDITIONS]
    table = "\n".join(lines)
    first, last = log[0]["reward"], log[-1]["reward"]
    print(f"\nStage 3 (GRPO) finished in {results['total_seconds']:.0f} s. Synthetic test split:\n\n{table}\n\n"
          f"Mean reward per completion {first:.3f} (first logged step) -> {last:.3f} (last). "
          f"Written: {GRPO_OUT / 'results.json'}, {GRPO_OUT / 'reward_curve.png'}")
    return results


def eval_drops(out: Path) -> dict[str, dict]:
    """The demo model's scores with all inputs and with each input removed from every test clip (the
    evaluation's `--without each` folders), both answer modes."""
    scores = {}
    for name, dropped in EVAL_DROPS.items():
        by_mode = json.loads(eval_result(out / "eval", dropped).read_text())["by_answer_mode"]
        scores[name] = {"dropped": dropped, **{mode: {k: m[k] for k in ("weighted_f1", "accuracy", "n_invalid")}
                                               for mode, m in by_mode.items()}}
    return scores


# Rough seconds per unit of work on 2 idle cores, for the plan's ETA (the summary prints the real
# times; docs/results.md has measured runs: 2026-12-02 evening, 163 s). The steps run in this
# process, so torch / transformers / peft load once ("imports").
SECONDS_PER = {"imports": 8.0, "start": 2.0, "clip_made": 0.021, "clip_extracted": 0.031, "train_step": 0.082,
               "clip_answered": 0.012, "tiny_models": 2.0}
# --quick: the same corpus and stages, fewer epochs, no evaluation without each input; outputs/demo_quick/
QUICK_EPOCHS = {"stage1": 2, "stage2": 1}


def stage_epochs(cfg_path: str) -> tuple[int, int]:
    """(epochs, optimizer steps per epoch) of a demo stage config, for the plan."""
    cfg = load_train_config(cfg_path)
    clips = max(1, sum(1 for _ in open(DATA / "train.txt"))) if (DATA / "train.txt").is_file() else 700
    per_epoch = cfg.run.iters_per_epoch or max(1, clips * len(next(iter(cfg.datasets.values())).tasks) // cfg.run.batch_size)
    return cfg.run.max_epochs, per_epoch


def print_plan(args: argparse.Namespace, out: Path) -> float:
    """The steps the demo will run and an ETA for 2 idle cores; returns the ETA in seconds."""
    rows = []
    if not (DATA / "corpus.json").is_file():
        rows.append((f"synthetic corpus: {args.clips} clips (video, audio, transcript, captions)",
                     SECONDS_PER["start"] + args.clips * SECONDS_PER["clip_made"]))
    if not (TINY / "tiny_models.json").is_file():
        rows.append(("tiny random models (LLM, EVA ViT, HuBERT / MAE / VideoMAE)", SECONDS_PER["tiny_models"]))
    rows.append(("features: face track, MAE / VideoMAE / HuBERT vectors, frames (done clips are skipped)",
                 SECONDS_PER["start"] + (0 if (DATA / "extraction_report.json").is_file() else args.clips * SECONDS_PER["clip_extracted"])))
    for stage in ("stage1", "stage2"):
        epochs, per_epoch = stage_epochs(f"train_configs/demo_{stage}.yaml")
        epochs = QUICK_EPOCHS[stage] if args.quick else epochs
        rows.append((f"train {stage}: {epochs} epoch{'s' if epochs != 1 else ''} x {per_epoch} steps (-> {out / stage})",
                     SECONDS_PER["start"] + epochs * per_epoch * SECONDS_PER["train_step"]))
    evals = 1 if args.quick else len(EVAL_DROPS)
    test_clips = round(0.15 * args.clips)
    rows.append((f"evaluate on the test split: all inputs{'' if args.quick else ', then without each input'} "
                 f"({evals} pass{'es' if evals != 1 else ''}, the model built once)",
                 SECONDS_PER["start"] + evals * test_clips * SECONDS_PER["clip_answered"]))
    eta = SECONDS_PER["imports"] + sum(seconds for _, seconds in rows)
    print(f"Demo plan ({'--quick, ' if args.quick else ''}outputs under {out}/; steps whose outputs exist are skipped):")
    for i, (what, seconds) in enumerate(rows, 1):
        print(f"  {i}. {what}  ~{seconds:.0f} s")
    print(f"ETA ~{eta / 60:.1f} min on 2 idle cores, with ~{SECONDS_PER['imports']:.0f} s of loading torch and "
          "transformers once (a busy machine takes longer)", flush=True)
    return eta


def summary_screen(results: dict, out: Path, eta: float) -> str:
    """The one screen printed at the end: what was trained, how well it answers, where things are."""
    full, s1, s2 = results["all_inputs"], results["stage1_best"], results["stage2_best"]
    lines = [
        "",
        "=" * 78,
        f"Demo finished in {results['total_seconds']:.0f} s (plan: ~{eta:.0f} s).",
        f"Synthetic test split: {int(full['n'])} clips, 6 labels (chance weighted F1 ~0.17).",
        "",
        f"  weighted F1 {full['weighted_f1']:.3f}, accuracy {full['accuracy']:.3f} with all inputs "
        f"(target >= {TARGET_F1})",
    ]
    without = results.get("eval_without_one_input") or {}
    if without:
        lines += ["", "  evaluated without       F1 (generate)   F1 (score_labels)"]
        lines += [f"  {name:<22}  {v['generate']['weighted_f1']:>13.3f}   {v['score_labels']['weighted_f1']:>17.3f}"
                  for name, v in without.items() if v["dropped"]]
    lines += [
        "",
        f"  stage 1 best: validation F1 {s1.get('weighted_f1', float('nan')):.3f} at step {s1.get('step')}; "
        f"stage 2 best: {s2.get('weighted_f1', float('nan')):.3f} at step {s2.get('step')}",
        *textwrap.wrap("time per step: " + ", ".join(f"{step['what']} {step['seconds']:.0f} s" for step in results["steps"]),
                       width=90, initial_indent="  ", subsequent_indent="    "),
        "",
        f"  results:  {out / 'results.md'}, {out / 'results.json'}",
        f"  model:    {out / 'stage2' / 'best' / 'trainable.safetensors'} (eval_configs/demo_tiny.yaml reads it)",
        f"  curves:   tensorboard --logdir {out}",
        "=" * 78,
    ]
    return "\n".join(lines)


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
    parser.add_argument("--grpo", action="store_true",
                        help="also run stage 3 (GRPO) from the stage-2 model and compare test F1 before and after")
    parser.add_argument("--ablations", action="store_true",
                        help="also train and evaluate one emotion-only model per input subset (about 4 more minutes)")
    parser.add_argument("--quick", action="store_true",
                        help=f"fewer epochs ({QUICK_EPOCHS['stage1']} + {QUICK_EPOCHS['stage2']}), evaluation with all "
                             "inputs only; outputs under outputs/demo_quick/ (the corpus and features are shared)")
    parser.add_argument("--threads", type=int, help="intra-op CPU threads of every step (default: chosen from the "
                                                     "usable cores and data-loader workers, minigpt4/common/threads.py)")
    args = parser.parse_args(argv)
    plan = parse_encoders(args.encoders) if args.encoders else None
    if not Path("train.py").is_file():
        raise StepFailed(f"run the demo from the repository root (the folder with train.py), not {Path.cwd()}")
    if args.threads is not None:
        os.environ[THREADS_ENV] = str(args.threads)  # read by every step's configure_threads
    configure_threads(threads=args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no "Loading weights" bars in every step (ours stay)
    out = Path(f"{OUT}_quick") if args.quick else OUT
    started = time.perf_counter()  # the total includes the imports the steps need (~8 s on 2 cores)
    eta = print_plan(args, out) if args.backbone == "llama2" and plan is None else 0.0
    steps: list[dict] = []

    if not (DATA / "corpus.json").is_file():
        run(["python", "-m", "minigpt4.data.synthetic", "--out", str(DATA), "--clips", str(args.clips), "--seed", str(args.seed)],
            steps, "corpus")
    if not (TINY / "tiny_models.json").is_file():
        run(["python", "-m", "minigpt4.tools.make_tiny_models", "--out", str(TINY)], steps, "tiny models")
    run(["python", "-m", "minigpt4.features", "extract", "--videos", str(DATA / "videos"), "--out", str(DATA),
         "--cfg-path", "minigpt4/configs/features/tiny.yaml"], steps, "features")
    if args.backbone != "llama2":
        return run_backbone(args.backbone, steps, started)
    if plan is not None:
        return run_encoders(plan, steps, started)
    quick1 = [f"run.output_dir={out}/stage1", f"run.max_epochs={QUICK_EPOCHS['stage1']}"] if args.quick else []
    quick2 = [f"run.output_dir={out}/stage2", f"run.max_epochs={QUICK_EPOCHS['stage2']}",
              f"run.init_from={out}/stage1/best/trainable.safetensors"] if args.quick else []
    quick_eval = [f"model.checkpoint={out}/stage2/best/trainable.safetensors", f"run.output_dir={out}/eval"] if args.quick else []
    run(["python", "train.py", "--cfg-path", "train_configs/demo_stage1.yaml", "--resume",
         *(["--options", *quick1] if quick1 else [])], steps, "stage 1")
    run(["python", "train.py", "--cfg-path", "train_configs/demo_stage2.yaml", "--resume",
         *(["--options", *quick2] if quick2 else [])], steps, "stage 2")
    if args.grpo:
        return run_grpo(steps, started)
    run(["python", "eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic",
         *([] if args.quick else ["--without", "each"]), *(["--options", *quick_eval] if quick_eval else [])],
        steps, "evaluation" if args.quick else "evaluation, then without each input")
    full = metrics(eval_result(out / "eval"))
    without = {} if args.quick else eval_drops(out)

    ablations = run_ablations(steps) if args.ablations else {}

    results = {
        "test_split": str(DATA / "test.txt"),
        "quick": args.quick,
        "all_inputs": {k: full[k] for k in ("weighted_f1", "accuracy", "n", "n_invalid")},
        "eval_without_one_input": without,
        "ablations_emotion_only_training": ablations,
        "chance_weighted_f1": round(1 / 6, 3),
        "target_weighted_f1": TARGET_F1,
        "stage1_best": json.loads((out / "stage1" / "best" / "metrics.json").read_text()),
        "stage2_best": json.loads((out / "stage2" / "best" / "metrics.json").read_text()),
        "steps": steps,
        "eta_seconds": round(eta, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = [
        "| inputs | weighted F1 | accuracy |",
        "|---|---|---|",
        f"| all (frame, face, voice, words) | {full['weighted_f1']:.4f} | {full['accuracy']:.4f} |",
        *[f"| ablation, emotion task only: {k} | {v['weighted_f1']:.4f} | {v['accuracy']:.4f} |" for k, v in ablations.items()],
    ]
    if without:
        lines += [
            "",
            "| evaluated without | weighted F1 (generate) | invalid answers (generate) | weighted F1 (score_labels) |",
            "|---|---|---|---|",
            *[f"| {k} | {v['generate']['weighted_f1']:.4f} | {int(v['generate']['n_invalid'])} | "
              f"{v['score_labels']['weighted_f1']:.4f} |" for k, v in without.items()],
        ]
    table = "\n".join(lines)
    (out / "results.md").write_text(f"# Demo results (synthetic test split)\n\n{table}\n\nTotal {results['total_seconds']} s.\n")
    print(summary_screen(results, out, eta))
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
