"""The per-clip stages of the MERR builder (the paper's dataset pipeline, one clip at a time).

1. faces and AU intensities per frame, 2. the peak frame, 3. expression phrases and the AU-rule
label, 4. a visual objective description of the peak frame, 5. the voice's tone, 6. the
transcript, 7. the coarse caption (the release's template), 8. fine-grained reasoning, 9. the
label. Stages 1-3 (and the offline backends of 4 and 5) run on one decoded clip in
`analyse_clip`; `ClipStages` runs each later stage on one clip, with the backend the config
names, storing its result in the clip's `ClipStore`. Choosing among clips (filters, neutral
samples) and writing the release files is `minigpt4.merr.build`'s and `minigpt4.merr.outputs`'.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from minigpt4.common.io import atomic_write
from minigpt4.data.annotations import BadItems, read_list_file
from minigpt4.data.labels import label_set as label_set_named
from minigpt4.merr import aus as au_lib
from minigpt4.merr import backends as bk
from minigpt4.merr import media
from minigpt4.merr.config import MerrConfig
from minigpt4.merr.prosody import measure, tone_word
from minigpt4.merr.store import ClipStore, file_digest, key_of


def analyse_clip(video: Path, cfg: MerrConfig, out: Path, faces: media.FaceAnalyser | None) -> dict[str, Any]:
    """AUs, peak, phrases, AU label, geometry description and prosody of one clip. The video is
    streamed (`media.FaceAnalyser.analyse_video`, `media.frame_at`): memory stays flat however
    long or large the clip is."""
    stride = max(1, cfg.faces.frame_stride)
    missing, clip_faces = 0, None
    if cfg.faces.backend == "landmarks":
        clip_faces, frame_count = faces.analyse_video(video, stride)
        missing = clip_faces.missing
        track = au_lib.landmark_aus(clip_faces.points, cfg.faces.neutral_fraction)
    else:
        frame_count = media.count_frames(video)
        csv_dir = Path(cfg.faces.openface_csv_dir) if cfg.faces.openface_csv_dir else None
        csv_path = csv_dir / f"{video.stem}.csv" if csv_dir else None
        if csv_path is None or not csv_path.is_file():
            csv_path = au_lib.run_openface(video, cfg.faces.openface_bin, out / "work" / "openface")
        track = au_lib.read_openface_csv(csv_path, frame_count)[::stride]
    indices = list(range(0, frame_count, stride))
    if np.isnan(track).all():
        raise ValueError("no face found in any analysed frame (try faces.face_detector: haar or center)")
    row = au_lib.peak_index(track, cfg.aus.peak_rule, cfg.aus.threshold, cfg.aus.frequent_top_k)
    peak = indices[row]
    active = au_lib.active_aus(track[row], cfg.aus.threshold)
    label, strength, score = au_lib.au_label(active, cfg.aus.threshold, cfg.aus.label_table)
    frequency = Counter(au for r in np.nan_to_num(track) for au, v in zip(au_lib.AU_NAMES, r) if v >= cfg.aus.threshold)
    peak_frame = media.frame_at(video, peak)
    atomic_write(out / "peak_frames" / f"{video.stem}.jpg", bk.jpeg_bytes(peak_frame))
    result = {
        "frame_count": int(frame_count), "fps": round(float(media.video_info(video).fps), 3), "peak_index": int(peak),
        "frames_analysed": len(indices), "frames_without_own_face": int(missing),
        "AU_list": dict(sorted(frequency.items())), "peak_AU_list": active,
        "expression_phrases": au_lib.expression_phrases(active),
        "au_label": label, "au_strength": strength, "au_score": score,
    }
    if cfg.visual.backend == "geometry":
        if clip_faces is not None:  # the tracked main face, as landmarked for the AUs
            points, box = clip_faces.points[row], clip_faces.boxes[row]
        else:
            points, box = faces.peak_face(peak_frame)
        result["visual_objective"] = bk.geometry_description(points, box, peak_frame.shape, "AU45" in active)
    if cfg.tone.backend == "prosody":
        audio = media.decode_audio(video, cfg.sample_rate)
        if audio is not None:
            measures = measure(audio, cfg.sample_rate, cfg.tone.crepe_model)
            result["prosody"], result["tone"] = measures.as_dict(), tone_word(measures)
        else:
            result["prosody"], result["tone"] = None, ""
    return result


class ClipStages:
    """The stages that look at one clip at a time, and the resources they share across clips
    (the face analyser, endpoint clients, loaded models, the transcript file)."""

    def __init__(self, cfg: MerrConfig, out: Path):
        self.cfg = cfg
        self.out = out
        self.labels = label_set_named(cfg.labels.label_set)
        self._faces: media.FaceAnalyser | None = None  # loaded on the first clip that is not already done
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

    def analyser(self) -> media.FaceAnalyser | None:
        cfg = self.cfg
        if cfg.faces.backend != "landmarks" and cfg.visual.backend != "geometry":
            return None
        if self._faces is None:
            self._faces = media.FaceAnalyser(cfg.faces.face_detector, cfg.faces.min_face_size)
        return self._faces

    # ---- stages 1-5 offline: one decoded clip ---------------------------------------------

    def file_id(self, name: str, video: Path) -> list:
        cfg = self.cfg
        stat = video.stat()
        ident = [stat.st_size, int(stat.st_mtime)]
        csv = Path(cfg.faces.openface_csv_dir) / f"{name}.csv" if cfg.faces.openface_csv_dir else None
        if cfg.faces.backend == "openface" and csv is not None and csv.is_file():
            ident += [csv.stat().st_size, int(csv.stat().st_mtime)]  # a re-made CSV re-runs the clip
        return ident

    def analyse(self, name: str, video: Path, store: ClipStore, clip: dict) -> None:
        cfg = self.cfg
        analyse_cfg = [asdict(cfg.faces), asdict(cfg.aus), cfg.visual.backend, cfg.tone.backend, cfg.tone.crepe_model]
        clip.update(store.get("analyse", key_of(self.file_id(name, video), analyse_cfg),
                              lambda: analyse_clip(video, cfg, self.out, self.analyser())))

    # ---- stages 4-6 ---------------------------------------------------------------------

    def visual(self, name: str, video: Path, store: ClipStore, clip: dict) -> None:
        v = self.cfg.visual
        if v.backend in ("geometry", "none"):
            clip.setdefault("visual_objective", "")
            return
        frame_path = self.out / "peak_frames" / f"{name}.jpg"
        image_id = hashlib.sha256(frame_path.read_bytes()).hexdigest()
        if v.backend == "openai":
            key = key_of(image_id, v.prompt, v.endpoint.url, v.endpoint.model)
            frame = np.asarray(Image.open(frame_path).convert("RGB"))
            clip["visual_objective"] = store.get("visual", key, lambda: bk.openai_visual(self.client("visual", v.endpoint), frame, v.prompt))
        else:
            backend = self.model(v.model_cfg, "visual.model_cfg")
            key = key_of(image_id, v.prompt, backend.name)
            clip["visual_objective"] = store.get("visual", key, lambda: backend.ask(video, "reason", v.prompt))
        clip["visual_objective"] = clip["visual_objective"].strip().rstrip(".")

    def tone(self, name: str, video: Path, store: ClipStore, clip: dict) -> None:
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

    def transcript(self, name: str, video: Path, store: ClipStore, clip: dict) -> None:
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

    def known_labels(self) -> dict[str, str]:
        if not self.cfg.labels.annotation:
            return {}
        records = read_list_file(self.cfg.labels.annotation, self.cfg.labels.label_set, BadItems("error"))
        return {r.name: r.label for r in records if isinstance(r.label, str)}

    def label(self, name: str, video: Path, store: ClipStore, clip: dict, known: dict[str, str]) -> None:
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

    # ---- stage 7: the coarse caption ------------------------------------------------------

    @staticmethod
    def caption(c: dict) -> str:
        return bk.COARSE_TEMPLATE.format(
            visual=c.get("visual_objective") or "not described", tone=c.get("tone") or "not described",
            expression=", ".join(c["expression_phrases"]) or "no clear facial action",
            subtitle=c.get("subtitle", ""))

    # ---- stage 8: fine-grained reasoning ----------------------------------------------------

    def reason(self, name: str, video: Path, store: ClipStore, clip: dict) -> None:
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
