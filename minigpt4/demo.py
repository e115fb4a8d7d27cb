"""`make demo`: the whole method on a CPU in minutes, with nothing downloaded.

    synthetic clips -> tiny models -> feature extraction -> stage 1 -> stage 2 -> evaluation
    -> evaluation with each input removed -> (--ablations) one model per input subset

The demo configs train with modality dropout (each input left out of some samples, never all at
once), so the model answers from any subset of its inputs; the evaluation with each input
removed measures how well it does, in both answer modes (generated text, scored labels).

Every step is the command a user would type (printed before it runs), so the demo doubles as a
walk-through. Steps whose outputs exist are skipped or resumed, so a second `make demo` is quick.
Results go to `outputs/demo/results.json` and `outputs/demo/results.md`.

`--grpo` then runs stage 3 (GRPO with verifiable rewards, `train_configs/demo_stage3_grpo.yaml`)
from the stage-2 model and evaluates the test split before and after, with all inputs and without
the transcript: `outputs/demo/grpo/results.json` and `reward_curve.png`.

`--backbone llama3` or `--backbone qwen2` trains and evaluates the same model on a tiny
chat-template LLM instead (`model.prompt_format: chat_template`), on the same clips and
features; its results go to `outputs/demo_<backbone>/`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

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


class StepFailed(Exception):
    """The demo cannot go on: a step exited with an error (its message is above), or it was
    started outside the repository."""


def run(cmd: list[str], log: list[dict]) -> None:
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    code = subprocess.run([sys.executable if c == "python" else c for c in cmd]).returncode
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
GRPO_OUT = OUT / "grpo"
GRPO_CFG = "train_configs/demo_stage3_grpo.yaml"
GRPO_CONDITIONS = {"all_inputs": [], "no_transcript": ["text"]}


def evaluate(checkpoint: Path, out: Path, dropped: list[str], steps: list[dict]) -> dict:
    """Test-split metrics of `checkpoint` with `dropped` inputs removed from every clip (generated answers)."""
    if not (out / "synthetic" / "metrics.json").is_file():
        run(["python", "eval_emotion.py", "--cfg-path", EVAL_CFG, "--dataset", "synthetic", "--options",
             f"run.output_dir={out}", f"model.checkpoint={checkpoint}", f"datasets.synthetic.drop_modalities=[{','.join(dropped)}]"],
            steps)
    result = json.loads((out / "synthetic" / "metrics.json").read_text())
    generated = result.get("by_answer_mode", {}).get("generate", result["metrics"])
    return {k: generated[k] for k in ("weighted_f1", "accuracy", "n", "n_invalid")}


def run_grpo(steps: list[dict], started: float) -> dict:
    """Stage 3 from the stage-2 model; the test split before and after, all inputs and no transcript."""
    stage2 = OUT / "stage2" / "best" / "trainable.safetensors"
    before = {name: evaluate(stage2, GRPO_OUT / "eval_before" / name, dropped, steps) for name, dropped in GRPO_CONDITIONS.items()}
    run(["python", "train.py", "--cfg-path", GRPO_CFG, "--resume"], steps)
    stage3 = GRPO_OUT / "best" / "trainable.safetensors"
    after = {name: evaluate(stage3, GRPO_OUT / "eval_after" / name, dropped, steps) for name, dropped in GRPO_CONDITIONS.items()}
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
    parser.add_argument("--grpo", action="store_true",
                        help="also run stage 3 (GRPO) from the stage-2 model and compare test F1 before and after")
    parser.add_argument("--ablations", action="store_true",
                        help="also train and evaluate one emotion-only model per input subset (about 4 more minutes)")
    args = parser.parse_args(argv)
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
    run(["python", "train.py", "--cfg-path", "train_configs/demo_stage1.yaml", "--resume"], steps)
    run(["python", "train.py", "--cfg-path", "train_configs/demo_stage2.yaml", "--resume"], steps)
    if args.grpo:
        return run_grpo(steps, started)
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
