"""The MERR builder's output writers: release-format files, the summary and the class histogram.

Every file is written to a temporary name and renamed (`atomic_write`), so none is ever
half-written.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np

from minigpt4.common.io import atomic_write
from minigpt4.merr.config import MerrConfig
from minigpt4.merr.store import write_json

COARSE_TXT, COARSE_JSON = "MERR_coarse_grained.txt", "MERR_coarse_grained.json"
FINE_TXT, FINE_JSON = "MERR_fine_grained.txt", "MERR_fine_grained.json"


def write_outputs(out: Path, ok, coarse, fine, clips) -> None:
    """The release-format files of the clips kept (coarse and fine sets) and the per-clip details."""
    atomic_write(out / COARSE_TXT, "".join(f"{n} {clips[n]['frame_count']} {clips[n]['label']}\n" for n in coarse))
    write_json(out / COARSE_JSON, {n: {"caption": clips[n]["caption"]} for n in coarse})
    atomic_write(out / FINE_TXT, "".join(f"{n} {clips[n]['frame_count']} {clips[n]['label']}\n" for n in fine))
    write_json(out / FINE_JSON, {n: {"smp_reason_caption": clips[n]["reasoning"],
                                     "reason_caption": f"{clips[n]['caption']} {clips[n]['reasoning']}"} for n in fine})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "sentence"])
    writer.writerows([n, clips[n].get("subtitle", "")] for n in ok)
    atomic_write(out / "transcripts.csv", buffer.getvalue())
    write_json(out / "peak_frames.json", {n: clips[n]["peak_index"] for n in ok})
    fields = ("frame_count", "peak_index", "AU_list", "peak_AU_list", "expression_phrases", "visual_objective",
              "tone", "prosody", "subtitle", "au_label", "au_strength", "pseu_emotion", "model_label",
              "model_probability", "label", "label_source", "label_drop", "caption", "reasoning", "fine_drop")
    per_clip = {}
    for n in ok:
        c = clips[n]
        entry = {k: c[k] for k in fields if k in c}
        entry["visual_prior"] = c["expression_phrases"]
        entry["audio_prior"] = [c["tone"]] if c.get("tone") else []
        per_clip[n] = entry
    write_json(out / "MERR_clips.json", per_clip)


def build_summary(cfg: MerrConfig, names, ok, coarse, fine, clips, drops, failed, seconds, wall,
                  feature_report) -> dict:
    """What the run did: counts, drops and their reasons, labels, stage times, backends."""
    return {
        "clips": len(names), "analysed": len(ok), "failed": dict(sorted(failed.items())),
        "coarse": len(coarse), "fine": len(fine), "drops": dict(sorted(drops.items())),
        "coarse_labels": dict(sorted(Counter(clips[n]["label"] for n in coarse).items())),
        "fine_labels": dict(sorted(Counter(clips[n]["label"] for n in fine).items())),
        "label_sources": dict(sorted(Counter(clips[n].get("label_source", "dropped") for n in ok).items())),
        "tones": dict(sorted(Counter(clips[n].get("tone") or "none" for n in ok).items())),
        "seconds": {k: round(v, 3) for k, v in {**seconds, "wall": wall}.items()},
        "backends": {"faces": cfg.faces.backend, "visual": cfg.visual.backend, "tone": cfg.tone.backend,
                     "transcript": cfg.transcript.backend, "reason": cfg.reason.backend,
                     "labels_model": bool(cfg.labels.model_cfg)},
        "features": feature_report,
    }


def write_histogram(out: Path, summary: dict) -> None:
    """class_histogram.png: clips per label in the coarse and the fine set."""
    import matplotlib  # lazy: a heavy optional package

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted(set(summary["coarse_labels"]) | set(summary["fine_labels"]))
    fig, ax = plt.subplots(figsize=(max(4, len(labels) * 0.9), 3))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, [summary["coarse_labels"].get(l, 0) for l in labels], 0.4, label="coarse")
    ax.bar(x + 0.2, [summary["fine_labels"].get(l, 0) for l in labels], 0.4, label="fine")
    ax.set_xticks(x, labels, rotation=30)
    ax.set_ylabel("clips")
    ax.legend()
    fig.tight_layout()
    atomic_write(out / "class_histogram.png", lambda handle: fig.savefig(handle, format="png", dpi=100))
    plt.close(fig)
