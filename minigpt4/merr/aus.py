"""Action Units: reading OpenFace CSVs, estimating AUs from landmarks, peak frame, phrases, labels.

An AU track is a float32 array [T, len(AU_NAMES)] of intensities on OpenFace's 0-5 scale (NaN
where a frame has no face). Two backends make one:

* ``openface`` -- the authors' tool. `read_openface_csv` reads a `FeatureExtraction` CSV
  (columns ``frame, face_id, timestamp, confidence, success, AU01_r ... AU45_r, AU01_c ...``;
  ``_r`` intensity 0-5, ``_c`` presence 0/1). OpenFace has no ``AU28_r``; an AU with only a
  presence column gets intensity 1.0 when present (just above the 0.8 threshold).
* ``landmarks`` -- built in, offline: 68 dlib landmarks per frame turned into *geometric
  estimates* (`landmark_aus`). Distances are measured in units of the inter-ocular distance
  after rotating the eye line level, and compared with the clip's own neutral: the
  `neutral_fraction` of frames closest to the clip's median face. A displacement of
  `FULL_SCALE` units reads as intensity 5. This is an approximation of FACS coding, not a
  trained AU detector: it sees shape changes (brows, lids, mouth, jaw), not texture (wrinkles,
  so AU06 / AU09 are read from the lid and nostril movements they cause), and an expression
  held through the whole clip becomes that clip's neutral.

Peak frame: the largest sum of all AU intensities (what the authors did), or with
``peak_rule: frequent`` the sum over the k AUs active in the most frames (the paper's appendix).
Labels follow the MER-Factory table: a label holds when at least half of its AUs are active and
their mean intensity reaches the threshold; its strength is slight / moderate / strong at 1x /
2x / 3x the threshold.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

AU_NAMES = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
            "AU20", "AU23", "AU25", "AU26", "AU28", "AU45")

# FACS name and the plain phrase used in captions ("visual expression description").
AU_PHRASES = {
    "AU01": ("inner brow raiser", "inner brows raised"),
    "AU02": ("outer brow raiser", "outer brows raised"),
    "AU04": ("brow lowerer", "brows lowered and drawn together"),
    "AU05": ("upper lid raiser", "eyes widened"),
    "AU06": ("cheek raiser", "cheeks raised"),
    "AU07": ("lid tightener", "eyelids tightened"),
    "AU09": ("nose wrinkler", "nose wrinkled"),
    "AU10": ("upper lip raiser", "upper lip raised"),
    "AU12": ("lip corner puller", "lip corners pulled up"),
    "AU14": ("dimpler", "dimpled mouth corners"),
    "AU15": ("lip corner depressor", "lip corners pulled down"),
    "AU17": ("chin raiser", "chin raised"),
    "AU20": ("lip stretcher", "lips stretched"),
    "AU23": ("lip tightener", "lips tightened"),
    "AU25": ("lips part", "lips parted"),
    "AU26": ("jaw drop", "wide-mouthed"),
    "AU28": ("lip suck", "lips sucked in"),
    "AU45": ("blink", "eyes closed"),
}

LABEL_TABLES = {
    # MER-Factory's table (the default).
    "full": {
        "happy": ("AU06", "AU12", "AU14"),
        "sad": ("AU01", "AU04", "AU15", "AU14"),
        "surprise": ("AU01", "AU02", "AU05", "AU26"),
        "fear": ("AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"),
        "angry": ("AU04", "AU05", "AU07", "AU23", "AU10", "AU17"),
        "contempt": ("AU12", "AU10", "AU14", "AU17"),
        "worried": ("AU28", "AU20"),
        "disgust": ("AU09", "AU15"),
    },
    # The shorter table of the release's documentation.
    "short": {
        "surprise": ("AU05", "AU26"),
        "happy": ("AU06", "AU12"),
        "sad": ("AU01", "AU04", "AU15"),
        "angry": ("AU04", "AU05", "AU07", "AU23"),
    },
}

# Landmark backend: displacement (inter-ocular units, or relative change for the eye opening)
# that reads as intensity 5.
FULL_SCALE = {"brow_inner": 0.20, "brow_outer": 0.20, "brow_gap": 0.12, "eye_open": 0.6, "nose_lip": 0.12,
              "corner_lift": 0.15, "width": 0.30, "lip_thickness": 0.12, "mouth_open": 0.45, "chin": 0.15,
              "nostril": 0.08}
SMILE_LIFT = 0.03  # corner lift (inter-ocular units) above which widening reads as a smile (AU12/14/06)


class OpenFaceError(ValueError):
    """An OpenFace CSV that cannot be used; the message names the file and the fix."""


# ------------------------------------------------------------------------------------------
# OpenFace
# ------------------------------------------------------------------------------------------

def read_openface_csv(path: str | Path, num_frames: int | None = None) -> np.ndarray:
    """AU intensities [T, len(AU_NAMES)] in decoded-frame order from a FeatureExtraction CSV.

    Rows are placed by their 1-based ``frame`` column; frames without a row, or with
    ``success`` 0, are NaN. With several faces the lowest ``face_id`` is used. `num_frames`
    (the clip's frame count) sizes the track; default: the largest frame number.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [{k.strip(): v.strip() for k, v in row.items() if k} for row in csv.DictReader(fh)]
    except OSError as err:
        raise OpenFaceError(f"{path}: cannot read ({err.strerror}); make it with OpenFace's FeatureExtraction -aus") from None
    if not rows or "frame" not in rows[0]:
        raise OpenFaceError(f"{path}: no 'frame' column; this is not an OpenFace FeatureExtraction CSV")
    columns = set(rows[0])
    if not any(f"{au}_r" in columns for au in AU_NAMES):
        raise OpenFaceError(f"{path}: no AU intensity columns (AU01_r ...); run FeatureExtraction with -aus")
    face_ids = {row.get("face_id", "0") for row in rows}
    first_face = min(face_ids, key=lambda v: float(v or 0))
    count = num_frames or max(int(float(row["frame"])) for row in rows)
    track = np.full((count, len(AU_NAMES)), np.nan, dtype=np.float32)
    for row in rows:
        if row.get("face_id", "0") != first_face or row.get("success", "1") in ("0", "0.0"):
            continue
        index = int(float(row["frame"])) - 1
        if not 0 <= index < count:
            continue
        for col, au in enumerate(AU_NAMES):
            if f"{au}_r" in row and row[f"{au}_r"] != "":
                track[index, col] = float(row[f"{au}_r"])
            elif f"{au}_c" in row and row[f"{au}_c"] != "":
                track[index, col] = 1.0 if float(row[f"{au}_c"]) > 0.5 else 0.0
            else:
                track[index, col] = 0.0
    return track


def run_openface(video: Path, binary: str, work_dir: Path) -> Path:
    """Run OpenFace's FeatureExtraction on one video; the CSV it wrote."""
    exe = shutil.which(binary)
    if exe is None:
        raise OpenFaceError(f"{video.stem}: no CSV in faces.openface_csv_dir and {binary!r} is not on PATH; "
                            "install OpenFace 2.x or point faces.openface_csv_dir at its CSVs")
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        result = subprocess.run([exe, "-f", str(video), "-out_dir", tmp, "-aus"], capture_output=True, text=True)
        produced = Path(tmp) / f"{video.stem}.csv"
        if result.returncode != 0 or not produced.is_file():
            raise OpenFaceError(f"{video}: FeatureExtraction failed ({result.stderr.strip()[-200:]})")
        final = work_dir / f"{video.stem}.csv"
        produced.replace(final)
    return final


def write_openface_csv(path: str | Path, track: np.ndarray, fps: float = 25.0) -> None:
    """Write an AU track in OpenFace's FeatureExtraction layout (tests, and exporting our estimates)."""
    header = ["frame", "face_id", "timestamp", "confidence", "success"]
    header += [f"{au}_r" for au in AU_NAMES if au != "AU28"] + [f"{au}_c" for au in AU_NAMES]
    lines = [", ".join(header)]
    for index, row in enumerate(np.asarray(track, dtype=np.float32)):
        ok = not np.isnan(row).all()
        values = dict(zip(AU_NAMES, np.nan_to_num(row)))
        cells = [str(index + 1), "0", f"{index / fps:.3f}", "0.98" if ok else "0", "1" if ok else "0"]
        cells += [f"{values[au]:.2f}" for au in AU_NAMES if au != "AU28"]
        cells += ["1.00" if values[au] >= 1.0 else "0.00" for au in AU_NAMES]
        lines.append(", ".join(cells))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------
# landmarks -> AUs
# ------------------------------------------------------------------------------------------

def face_measures(points: np.ndarray) -> dict[str, float]:
    """Geometric measures of one 68-point face, in inter-ocular units, eye line made level."""
    left_eye, right_eye = points[36:42].mean(0), points[42:48].mean(0)
    iod = float(np.linalg.norm(right_eye - left_eye))
    if not np.isfinite(iod) or iod < 1e-3:
        return {}
    angle = np.arctan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0])
    c, s = np.cos(-angle), np.sin(-angle)
    centre = (left_eye + right_eye) / 2
    p = (points - centre) @ np.array([[c, s], [-s, c]], dtype=np.float32) / iod  # y grows downwards
    y = p[:, 1]
    eye_y = (p[36:48, 1]).mean()

    def opening(top, bottom, corners):
        return float((p[bottom, 1].mean() - p[top, 1].mean()) / max(np.linalg.norm(p[corners[0]] - p[corners[1]]), 1e-3))

    lip_centre_y = (y[51] + y[57]) / 2
    return {
        "brow_inner": float(eye_y - (y[21] + y[22]) / 2),
        "brow_outer": float(eye_y - (y[17] + y[26]) / 2),
        "brow_gap": float(np.linalg.norm(p[21] - p[22])),
        "eye_open": (opening([37, 38], [41, 40], (36, 39)) + opening([43, 44], [47, 46], (42, 45))) / 2,
        "nose_lip": float(y[51] - y[33]),
        "nostril": float((y[31] + y[35]) / 2 - eye_y),
        "corner_lift": float(lip_centre_y - (y[48] + y[54]) / 2),
        "width": float(np.linalg.norm(p[48] - p[54])),
        "lip_thickness": float((y[57] - y[51]) - max(y[66] - y[62], 0.0)),
        "mouth_open": float(max(y[66] - y[62], 0.0)),
        "chin": float(y[8] - y[57]),
    }


def landmark_aus(points: np.ndarray, neutral_fraction: float = 0.3) -> np.ndarray:
    """AU intensity estimates [T, len(AU_NAMES)] from landmarks [T, 68, 2] (see module docstring)."""
    measures = [face_measures(frame) if np.isfinite(frame).all() else {} for frame in points]
    keys = list(FULL_SCALE)
    table = np.array([[m.get(k, np.nan) for k in keys] for m in measures], dtype=np.float64).reshape(len(points), len(keys))
    track = np.full((len(points), len(AU_NAMES)), np.nan, dtype=np.float32)
    valid = ~np.isnan(table).any(1)
    if not valid.any():
        return track
    rows = table[valid]
    spread = np.maximum(np.median(np.abs(rows - np.median(rows, 0)), 0), 1e-4)
    distance = (np.abs(rows - np.median(rows, 0)) / spread).sum(1)
    count = max(1, int(round(neutral_fraction * len(rows))))
    neutral = rows[np.argsort(distance, kind="stable")[:count]].mean(0)
    delta = dict(zip(keys, (rows - neutral).T))
    delta["eye_open"] = delta["eye_open"] / max(neutral[keys.index("eye_open")], 1e-3)  # relative change

    def level(value, key):
        return np.clip(5.0 * value / FULL_SCALE[key], 0.0, 5.0)

    smile = delta["corner_lift"] > SMILE_LIFT
    narrowing = level(-delta["eye_open"], "eye_open")
    widening = level(delta["width"], "width")
    au = {
        "AU01": level(delta["brow_inner"], "brow_inner"),
        "AU02": level(delta["brow_outer"], "brow_outer"),
        "AU04": np.maximum(level(-delta["brow_gap"], "brow_gap"), level(-delta["brow_inner"], "brow_inner")),
        "AU05": level(delta["eye_open"], "eye_open"),
        "AU06": np.where(smile, narrowing, 0.0),  # lids pushed up by the cheeks during a smile
        "AU07": np.where(smile, 0.0, narrowing),
        "AU09": level(-delta["nostril"], "nostril"),
        "AU10": level(-delta["nose_lip"], "nose_lip"),
        "AU12": np.maximum(level(delta["corner_lift"], "corner_lift"), np.where(smile, widening, 0.0)),
        "AU14": np.where(smile, widening, 0.0),
        "AU15": level(-delta["corner_lift"], "corner_lift"),
        "AU17": level(-delta["chin"], "chin"),
        "AU20": np.where(smile, 0.0, widening),
        "AU23": level(-delta["lip_thickness"], "lip_thickness"),
        "AU25": level(delta["mouth_open"], "mouth_open"),
        "AU26": level(delta["mouth_open"], "mouth_open"),
        "AU28": np.clip(level(-delta["lip_thickness"], "lip_thickness") - 2.5, 0.0, 5.0),  # lips vanish: beyond AU23
        "AU45": np.clip(5.0 * (-delta["eye_open"] - 0.6) / 0.4, 0.0, 5.0),  # eyes nearly shut
    }
    track[valid] = np.stack([au[name] for name in AU_NAMES], 1).astype(np.float32)
    return track


# ------------------------------------------------------------------------------------------
# peak, phrases, labels
# ------------------------------------------------------------------------------------------

def peak_index(track: np.ndarray, rule: str = "sum", threshold: float = 0.8, top_k: int = 5) -> int:
    """Row of the peak frame: largest summed intensity (earliest on ties; 0 with no face at all)."""
    filled = np.nan_to_num(np.asarray(track, dtype=np.float64), nan=-1.0)
    if rule == "frequent":
        active = (filled >= threshold).sum(0)
        keep = np.argsort(-active, kind="stable")[:top_k]
        scores = filled[:, keep].sum(1)
    elif rule == "sum":
        scores = filled.sum(1)
    else:
        raise ValueError(f"aus.peak_rule must be 'sum' or 'frequent', got {rule!r}")
    return int(np.argmax(scores))


def active_aus(intensities: np.ndarray, threshold: float = 0.8) -> dict[str, float]:
    """{AU: intensity} of the AUs at or above the threshold, strongest first."""
    row = np.nan_to_num(np.asarray(intensities, dtype=np.float64))
    found = {au: round(float(v), 2) for au, v in zip(AU_NAMES, row) if v >= threshold}
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def expression_phrases(active: dict[str, float]) -> list[str]:
    """Plain phrases for active AUs, e.g. AU26 -> "wide-mouthed" (AU25 is implied by AU26)."""
    return [AU_PHRASES[au][1] for au in active if not (au == "AU25" and "AU26" in active)]


def au_label(active: dict[str, float], threshold: float = 0.8, table: str = "full") -> tuple[str, str, float]:
    """(label, strength, score) by the AU-combination rule; ("neutral", "", 0.0) when none holds.

    Among the labels that hold, the one with the largest share of its AUs active wins, then the
    larger mean intensity.
    """
    best: tuple[float, float, str] | None = None
    for label, units in LABEL_TABLES[table].items():
        present = [active[u] for u in units if u in active]
        if len(present) * 2 < len(units):
            continue
        mean = float(np.mean(present))
        if mean < threshold:
            continue
        candidate = (len(present) / len(units), mean, label)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    if best is None:
        return "neutral", "", 0.0
    share, mean, label = best
    strength = "strong" if mean >= 3 * threshold else "moderate" if mean >= 2 * threshold else "slight"
    return label, strength, round(share * mean, 3)
