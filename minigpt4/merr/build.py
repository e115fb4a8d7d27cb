"""Build MERR-style training data from a folder of videos (the paper's dataset pipeline).

Stages, each with a backend chosen in the config (`minigpt4.merr.config`):

1. faces and AU intensities per frame (`aus`), 2. the peak frame, 3. expression phrases and the
AU-rule label, 4. a visual objective description of the peak frame, 5. the voice's tone,
6. the transcript, 7. the coarse caption (the release's template), 8. fine-grained reasoning
and its filters, 9. labels for unlabeled clips, 10. release-format outputs.

Operation: every clip's results live in ``<out>/work/clips/<name>.json``, each stage stored
with a key made of its inputs, prompt and backend model, so a re-run (or a run after a crash)
recomputes only what changed; endpoint replies are also cached in ``<out>/work/cache/``. A clip
that fails is named with its reason in the summary and the rest completes. Every output file is
written to a temporary name and renamed, so none is ever half-written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from minigpt4.common.io import atomic_write
from minigpt4.common.openai_client import EndpointConfigError
from minigpt4.data.labels import label_set as label_set_named
from minigpt4.merr import aus as au_lib
from minigpt4.merr import backends as bk
from minigpt4.merr import media
from minigpt4.merr.config import MerrConfig

log = logging.getLogger(__name__)

COARSE_TXT, COARSE_JSON = "MERR_coarse_grained.txt", "MERR_coarse_grained.json"
FINE_TXT, FINE_JSON = "MERR_fine_grained.txt", "MERR_fine_grained.json"
STAGE_SECONDS = ("analyse", "visual", "tone", "transcript", "label", "reason")


# ------------------------------------------------------------------------------------------
# small helpers: atomic files, per-clip stage store
# ------------------------------------------------------------------------------------------

def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def key_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class ClipStore:
    """One clip's stage results on disk: ``{stage: {"key": ..., "value": ...}}``."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, stage: str, key: str, compute: Callable[[], Any]) -> Any:
        entry = self.data.get(stage)
        if entry is None or entry.get("key") != key:
            self.data[stage] = {"key": key, "value": compute()}
            write_json(self.path, self.data)
        return self.data[stage]["value"]

    def value(self, stage: str, default: Any = None) -> Any:
        return self.data.get(stage, {}).get("value", default)


# ------------------------------------------------------------------------------------------
# stage 1-5 offline: one decoded clip
# ------------------------------------------------------------------------------------------

def analyse_clip(video: Path, cfg: MerrConfig, out: Path, faces: media.FaceAnalyser | None) -> dict[str, Any]:
    """AUs, peak, phrases, AU label, geometry description and prosody of one clip (decoded once)."""
    frames, fps = media.decode_video(video)
    indices = list(range(0, len(frames), max(1, cfg.faces.frame_stride)))
    missing, clip_faces = 0, None
    if cfg.faces.backend == "landmarks":
        clip_faces = faces.analyse(frames, indices)
        missing = clip_faces.missing
        track = au_lib.landmark_aus(clip_faces.points, cfg.faces.neutral_fraction)
    else:
        csv_dir = Path(cfg.faces.openface_csv_dir) if cfg.faces.openface_csv_dir else None
        csv_path = csv_dir / f"{video.stem}.csv" if csv_dir else None
        if csv_path is None or not csv_path.is_file():
            csv_path = au_lib.run_openface(video, cfg.faces.openface_bin, out / "work" / "openface")
        track = au_lib.read_openface_csv(csv_path, len(frames))[indices]
    if np.isnan(track).all():
        raise ValueError("no face found in any analysed frame (try faces.face_detector: haar or center)")
    row = au_lib.peak_index(track, cfg.aus.peak_rule, cfg.aus.threshold, cfg.aus.frequent_top_k)
    peak = indices[row]
    active = au_lib.active_aus(track[row], cfg.aus.threshold)
    label, strength, score = au_lib.au_label(active, cfg.aus.threshold, cfg.aus.label_table)
    frequency = Counter(au for r in np.nan_to_num(track) for au, v in zip(au_lib.AU_NAMES, r) if v >= cfg.aus.threshold)
    atomic_write(out / "peak_frames" / f"{video.stem}.jpg", bk.jpeg_bytes(frames[peak]))
    result = {
        "frame_count": int(len(frames)), "fps": round(float(fps), 3), "peak_index": int(peak),
        "frames_analysed": len(indices), "frames_without_own_face": int(missing),
        "AU_list": dict(sorted(frequency.items())), "peak_AU_list": active,
        "expression_phrases": au_lib.expression_phrases(active),
        "au_label": label, "au_strength": strength, "au_score": score,
    }
    if cfg.visual.backend == "geometry":
        if clip_faces is not None:  # the tracked main face, as landmarked for the AUs
            points, box = clip_faces.points[row], clip_faces.boxes[row]
        else:
            points, box = faces.peak_face(frames[peak])
        result["visual_objective"] = bk.geometry_description(points, box, frames.shape[1:], "AU45" in active)
    if cfg.tone.backend == "prosody":
        from minigpt4.merr.prosody import measure, tone_word

        audio = media.decode_audio(video, cfg.sample_rate)
        if audio is not None:
            measures = measure(audio, cfg.sample_rate, cfg.tone.crepe_model)
            result["prosody"], result["tone"] = measures.as_dict(), tone_word(measures)
        else:
            result["prosody"], result["tone"] = None, ""
    return result


# ------------------------------------------------------------------------------------------
# the builder
# ------------------------------------------------------------------------------------------

class MerrBuilder:
    """Runs the stages over a folder of videos; `run` returns the summary it also writes."""

    def __init__(self, cfg: MerrConfig, out: str | Path, progress: bool = True):
        bk.check_choice("faces.backend", cfg.faces.backend, ("landmarks", "openface"))
        bk.check_choice("visual.backend", cfg.visual.backend, ("geometry", "openai", "model", "none"))
        bk.check_choice("tone.backend", cfg.tone.backend, ("prosody", "openai", "none"))
        bk.check_choice("transcript.backend", cfg.transcript.backend, ("csv", "openai", "none"))
        bk.check_choice("reason.backend", cfg.reason.backend, ("clues", "openai", "model", "none"))
        bk.check_choice("aus.label_table", cfg.aus.label_table, tuple(au_lib.LABEL_TABLES))
        bk.check_choice("aus.peak_rule", cfg.aus.peak_rule, ("sum", "frequent"))
        self.cfg = cfg
        self.out = Path(out)
        self.progress = progress
        self.labels = label_set_named(cfg.labels.label_set)
        self.failed: dict[str, str] = {}
        self.seconds = {stage: 0.0 for stage in STAGE_SECONDS}
        self._models: dict[str, bk.ModelBackend] = {}
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()  # endpoint stages create their client from worker threads
        self.transcripts: dict[str, str] = {}
        if cfg.transcript.backend == "csv" and cfg.transcript.csv:
            self.transcripts = bk.read_transcripts_csv(cfg.transcript.csv, cfg.transcript.column)

    # ---- shared resources -------------------------------------------------------------

    def model(self, infer_cfg: str, key: str) -> bk.ModelBackend:
        if not infer_cfg:
            raise bk.BackendError(f"{key}: the model backend needs an infer config (eval_configs/infer_*.yaml)")
        if infer_cfg not in self._models:
            self._models[infer_cfg] = bk.ModelBackend(infer_cfg, self.cfg.device)
        return self._models[infer_cfg]

    def client(self, stage: str, endpoint) -> Any:
        with self._clients_lock:
            if stage not in self._clients:
                self._clients[stage] = bk.make_client(endpoint, self.out / "work" / "cache" / f"{stage}.jsonl", stage)
            return self._clients[stage]

    def _for_each(self, stage: str, names: Sequence[str], work: Callable[[str], None], parallel: bool) -> None:
        """Run `work` per clip (in threads for endpoint backends); a failure marks the clip failed."""
        start = time.perf_counter()

        def guarded(name: str) -> None:
            try:
                work(name)
            except (EndpointConfigError, bk.BackendError):
                raise  # a wrong URL, key, model or backend setting: every clip would fail the same way
            except Exception as err:  # one bad clip must not stop the build; its reason is reported
                self.failed[name] = f"{stage}: {type(err).__name__}: {err}"

        todo = [n for n in names if n not in self.failed]
        bar = tqdm(total=len(todo), desc=f"merr {stage}", disable=not self.progress, unit="clip")
        if parallel and self.cfg.workers > 1:
            with ThreadPoolExecutor(self.cfg.workers) as pool:
                for _ in pool.map(guarded, todo):
                    bar.update()
        else:
            for name in todo:
                guarded(name)
                bar.update()
        bar.close()
        self.seconds[stage] += time.perf_counter() - start

    # ---- the run ------------------------------------------------------------------------

    def run(self, videos: Sequence[Path], problems: dict[str, str] | None = None, with_features: bool = False,
            per_clip_only: bool = False) -> dict:
        """`per_clip_only`: stop after the stages that look at one clip at a time (analysis to
        labels, reasoning of the emotional clips), filling the per-clip stores: one torchrun
        rank's share. A full run afterwards finds them stored and only selects and writes."""
        cfg, out = self.cfg, self.out
        out.mkdir(parents=True, exist_ok=True)
        self.failed.update(problems or {})
        wall = time.perf_counter()
        paths = {v.stem: v for v in videos}
        names = sorted(paths)
        stores = {n: ClipStore(out / "work" / "clips" / f"{n}.json") for n in names}
        clips: dict[str, dict[str, Any]] = {n: {} for n in names}

        def file_id(name: str) -> list:
            stat = paths[name].stat()
            ident = [stat.st_size, int(stat.st_mtime)]
            csv = Path(cfg.faces.openface_csv_dir) / f"{name}.csv" if cfg.faces.openface_csv_dir else None
            if cfg.faces.backend == "openface" and csv is not None and csv.is_file():
                ident += [csv.stat().st_size, int(csv.stat().st_mtime)]  # a re-made CSV re-runs the clip
            return ident

        analyse_cfg = [asdict(cfg.faces), asdict(cfg.aus), cfg.visual.backend, cfg.tone.backend, cfg.tone.crepe_model]

        faces: list[media.FaceAnalyser] = []  # loaded on the first clip that is not already done

        def analyser() -> media.FaceAnalyser | None:
            if cfg.faces.backend != "landmarks" and cfg.visual.backend != "geometry":
                return None
            if not faces:
                faces.append(media.FaceAnalyser(cfg.faces.face_detector, cfg.faces.min_face_size))
            return faces[0]

        def analyse(name: str) -> None:
            clips[name].update(stores[name].get("analyse", key_of(file_id(name), analyse_cfg),
                                                lambda: analyse_clip(paths[name], cfg, out, analyser())))

        self._for_each("analyse", names, analyse, parallel=False)
        self._for_each("visual", names, lambda n: self._visual(n, paths[n], stores[n], clips[n]), cfg.visual.backend == "openai")
        self._for_each("tone", names, lambda n: self._tone(n, paths[n], stores[n], clips[n]), cfg.tone.backend == "openai")
        self._for_each("transcript", names, lambda n: self._transcript(n, paths[n], stores[n], clips[n]),
                       cfg.transcript.backend == "openai")
        known = self._known_labels()
        self._for_each("label", names, lambda n: self._label(n, paths[n], stores[n], clips[n], known), parallel=False)
        ok = [n for n in names if n not in self.failed]
        for name in ok:
            c = clips[name]
            c["caption"] = bk.COARSE_TEMPLATE.format(
                visual=c.get("visual_objective") or "not described", tone=c.get("tone") or "not described",
                expression=", ".join(c["expression_phrases"]) or "no clear facial action",
                subtitle=c.get("subtitle", ""))
        if per_clip_only:
            emotional = [n for n in ok if clips[n].get("label") and clips[n]["label"] != "neutral"]
            if cfg.reason.backend != "none":
                self._for_each("reason", emotional, lambda n: self._reason(n, paths[n], stores[n], clips[n]),
                               cfg.reason.backend == "openai")
            return {"clips": len(names), "analysed": sum(n not in self.failed for n in names), "failed": dict(self.failed)}
        drops: Counter = Counter()
        coarse = [n for n in ok if clips[n].get("label") and clips[n]["label"] not in cfg.labels.coarse_exclude]
        for n in ok:
            if not clips[n].get("label"):
                drops[f"coarse: {clips[n].get('label_drop', 'no label')}"] += 1
            elif clips[n]["label"] in cfg.labels.coarse_exclude:
                drops[f"coarse: label {clips[n]['label']} excluded (labels.coarse_exclude)"] += 1
        fine = self._fine(ok, paths, stores, clips, drops)
        self._write_outputs(names, ok, coarse, fine, clips)
        feature_report = None
        if with_features:
            feature_report = self._features([paths[n] for n in ok])
        summary = self._summary(names, ok, coarse, fine, clips, drops, time.perf_counter() - wall, feature_report)
        write_json(out / "summary.json", summary)
        self._histogram(summary)
        return summary

    # ---- stages 4-6 ---------------------------------------------------------------------

    def _visual(self, name: str, video: Path, store: ClipStore, clip: dict) -> None:
        v = self.cfg.visual
        if v.backend in ("geometry", "none"):
            clip.setdefault("visual_objective", "")
            return
        frame_path = self.out / "peak_frames" / f"{name}.jpg"
        image_id = hashlib.sha256(frame_path.read_bytes()).hexdigest()
        if v.backend == "openai":
            key = key_of(image_id, v.prompt, v.endpoint.url, v.endpoint.model)
            from PIL import Image

            frame = np.asarray(Image.open(frame_path).convert("RGB"))
            clip["visual_objective"] = store.get("visual", key, lambda: bk.openai_visual(self.client("visual", v.endpoint), frame, v.prompt))
        else:
            backend = self.model(v.model_cfg, "visual.model_cfg")
            key = key_of(image_id, v.prompt, backend.name)
            clip["visual_objective"] = store.get("visual", key, lambda: backend.ask(video, "reason", v.prompt))
        clip["visual_objective"] = clip["visual_objective"].strip().rstrip(".")

    def _tone(self, name: str, video: Path, store: ClipStore, clip: dict) -> None:
        t = self.cfg.tone
        if t.backend != "openai":
            clip.setdefault("tone", "")
            return
        audio = media.decode_audio(video, self.cfg.sample_rate)
        if audio is None:
            clip["tone"] = ""
            return
        key = key_of(hashlib.sha256(audio.tobytes()).hexdigest(), bk.TONE_PROMPT, t.endpoint.url, t.endpoint.model)
        tone = store.get("tone", key, lambda: bk.openai_tone(self.client("tone", t.endpoint), audio, self.cfg.sample_rate))
        if tone is None:
            raise ValueError("the tone endpoint answered none of the ten tone words")
        clip["tone"] = tone

    def _transcript(self, name: str, video: Path, store: ClipStore, clip: dict) -> None:
        t = self.cfg.transcript
        if t.backend == "csv":
            clip["subtitle"] = " ".join(self.transcripts.get(name, "").split())
        elif t.backend == "openai":
            audio = media.decode_audio(video, self.cfg.sample_rate)
            if audio is None:
                clip["subtitle"] = ""
                return
            wav = bk.wav_bytes(audio, self.cfg.sample_rate)
            key = key_of(hashlib.sha256(wav).hexdigest(), t.language, t.endpoint.url, t.endpoint.model)
            client = self.client("transcript", t.endpoint)
            clip["subtitle"] = " ".join(store.get("transcript", key, lambda: client.transcribe(wav, t.language)).split())
        else:
            clip["subtitle"] = ""

    # ---- stage 9: labels ------------------------------------------------------------------

    def _known_labels(self) -> dict[str, str]:
        if not self.cfg.labels.annotation:
            return {}
        from minigpt4.data.annotations import BadItems, read_list_file

        records = read_list_file(self.cfg.labels.annotation, self.cfg.labels.label_set, BadItems("error"))
        return {r.name: r.label for r in records if isinstance(r.label, str)}

    def _label(self, name: str, video: Path, store: ClipStore, clip: dict, known: dict[str, str]) -> None:
        """A known label wins; else the AU rule, checked by our model when one is configured."""
        lc = self.cfg.labels
        au = clip["au_label"]
        clip["pseu_emotion"] = au
        if name in known:
            clip["label"], clip["label_source"] = known[name], "annotation"
            return
        if not lc.model_cfg:
            if au in self.labels:
                clip["label"], clip["label_source"] = au, "au_rule"
            else:
                clip["label_drop"] = f"AU-rule label {au} not in label set {lc.label_set}"
            return
        backend = self.model(lc.model_cfg, "labels.model_cfg")
        key = key_of(file_digest(video), clip.get("subtitle", ""), backend.name)
        probs = store.get("model_label", key, lambda: backend.label_probabilities(video, clip.get("subtitle", "")))
        best = max(probs, key=probs.get)
        clip["model_label"], clip["model_probability"] = best, probs[best]
        if probs[best] >= lc.min_probability:
            clip["label"], clip["label_source"] = best, "model"
        elif lc.keep_when_agree and best == au:
            clip["label"], clip["label_source"] = best, "model_and_au_rule_agree"
        else:
            clip["label_drop"] = f"model says {best} (p={probs[best]:.2f}) and the AU rule {au}: no agreement"

    # ---- stage 8: fine-grained reasoning and its filters -------------------------------

    def _reason(self, name: str, video: Path, store: ClipStore, clip: dict) -> None:
        r, label = self.cfg.reason, clip["label"]
        messages = bk.reason_messages(clip["caption"], label)
        if r.backend == "clues":
            clip["reasoning"] = bk.clues_reasoning(clip, label)
        elif r.backend == "openai":
            key = key_of(messages, r.endpoint.url, r.endpoint.model)
            clip["reasoning"] = store.get("reason", key, lambda: self.client("reason", r.endpoint).chat(messages))
        else:
            backend = self.model(r.model_cfg, "reason.model_cfg")
            question = bk.REASON_QUESTION.format(label=label)
            key = key_of(file_digest(video), question, clip.get("subtitle", ""), backend.name)
            clip["reasoning"] = store.get("reason", key, lambda: backend.ask(video, "reason_v2", question, clip.get("subtitle", "")))
        clip["reasoning"] = " ".join(clip["reasoning"].split())

    def _fine(self, ok, paths, stores, clips, drops: Counter) -> list[str]:
        r = self.cfg.reason
        if r.backend == "none":
            return []
        labeled = [n for n in ok if clips[n].get("label")]
        emotional = [n for n in labeled if clips[n]["label"] != "neutral"]
        neutral_pool = [n for n in labeled if clips[n]["label"] == "neutral"]
        kept = self._reason_and_filter(emotional, paths, stores, clips, drops, Counter(), set())
        wanted = int(round(r.neutral_rate * len(kept)))
        if wanted and neutral_pool:
            random.Random(r.seed).shuffle(neutral_pool)
            seen = {" ".join(clips[n]["reasoning"].lower().split()) for n in kept}
            kept += self._reason_and_filter(neutral_pool[:wanted], paths, stores, clips, drops, Counter(), seen)
        counts = Counter(clips[n]["label"] for n in kept)
        small = {label for label, count in counts.items() if count < r.min_class_count}
        for n in [n for n in kept if clips[n]["label"] in small]:
            drops[f"fine: class {clips[n]['label']} has fewer than {r.min_class_count} samples"] += 1
        return sorted(n for n in kept if clips[n]["label"] not in small)

    def _reason_and_filter(self, names, paths, stores, clips, drops: Counter, per_class: Counter, seen: set) -> list[str]:
        r = self.cfg.reason
        self._for_each("reason", names, lambda n: self._reason(n, paths[n], stores[n], clips[n]), r.backend == "openai")
        kept = []
        for n in names:
            if n in self.failed:
                continue
            text, label = clips[n]["reasoning"], clips[n]["label"]
            problem = bk.check_reasoning(text, label, self.labels)
            norm = " ".join(text.lower().split())
            if not problem and r.dedupe and norm in seen:
                problem = "duplicate reasoning"
            if not problem and r.max_per_class and per_class[label] >= r.max_per_class:
                problem = f"more than {r.max_per_class} samples of {label} (reason.max_per_class)"
            if problem:
                drops[f"fine: {problem}"] += 1
                clips[n]["fine_drop"] = problem
                continue
            seen.add(norm)
            per_class[label] += 1
            kept.append(n)
        return kept

    # ---- outputs ------------------------------------------------------------------------

    def _write_outputs(self, names, ok, coarse, fine, clips) -> None:
        out = self.out
        atomic_write(out / COARSE_TXT, "".join(f"{n} {clips[n]['frame_count']} {clips[n]['label']}\n" for n in coarse))
        write_json(out / COARSE_JSON, {n: {"caption": clips[n]["caption"]} for n in coarse})
        atomic_write(out / FINE_TXT, "".join(f"{n} {clips[n]['frame_count']} {clips[n]['label']}\n" for n in fine))
        write_json(out / FINE_JSON, {n: {"smp_reason_caption": clips[n]["reasoning"],
                                         "reason_caption": f"{clips[n]['caption']} {clips[n]['reasoning']}"} for n in fine})
        import csv
        import io

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

    def feature_config(self):
        from minigpt4.common.config import load_config
        from minigpt4.features.config import FeatureConfig

        if not self.cfg.features_cfg:
            raise bk.BackendError("--with-features needs features_cfg in the MERR config "
                                  "(e.g. minigpt4/configs/features/real.yaml)")
        return load_config(FeatureConfig, self.cfg.features_cfg)

    def _features(self, videos: list[Path]) -> dict:
        from minigpt4.features.extract import extract_features

        start = time.perf_counter()
        report = extract_features(videos, self.out, self.feature_config(), progress=self.progress)
        self.seconds["features"] = time.perf_counter() - start
        return report.counts()

    def _summary(self, names, ok, coarse, fine, clips, drops, wall, feature_report) -> dict:
        return {
            "clips": len(names), "analysed": len(ok), "failed": dict(sorted(self.failed.items())),
            "coarse": len(coarse), "fine": len(fine), "drops": dict(sorted(drops.items())),
            "coarse_labels": dict(sorted(Counter(clips[n]["label"] for n in coarse).items())),
            "fine_labels": dict(sorted(Counter(clips[n]["label"] for n in fine).items())),
            "label_sources": dict(sorted(Counter(clips[n].get("label_source", "dropped") for n in ok).items())),
            "tones": dict(sorted(Counter(clips[n].get("tone") or "none" for n in ok).items())),
            "seconds": {k: round(v, 3) for k, v in {**self.seconds, "wall": wall}.items()},
            "backends": {"faces": self.cfg.faces.backend, "visual": self.cfg.visual.backend, "tone": self.cfg.tone.backend,
                         "transcript": self.cfg.transcript.backend, "reason": self.cfg.reason.backend,
                         "labels_model": bool(self.cfg.labels.model_cfg)},
            "features": feature_report,
        }

    def _histogram(self, summary: dict) -> None:
        import matplotlib

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
        atomic_write(self.out / "class_histogram.png", lambda handle: fig.savefig(handle, format="png", dpi=100))
        plt.close(fig)


def file_digest(path: Path) -> str:
    stat = path.stat()
    return key_of(str(path.name), stat.st_size, int(stat.st_mtime))
