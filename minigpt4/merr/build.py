"""Build MERR-style training data from a folder of videos (the paper's dataset pipeline).

Stages, each with a backend chosen in the config (`minigpt4.merr.config`):

1. faces and AU intensities per frame (`aus`), 2. the peak frame, 3. expression phrases and the
AU-rule label, 4. a visual objective description of the peak frame, 5. the voice's tone,
6. the transcript, 7. the coarse caption (the release's template), 8. fine-grained reasoning
and its filters, 9. labels for unlabeled clips, 10. release-format outputs.

Where each piece lives: the per-clip stages in `minigpt4.merr.stages`, the per-clip store in
`minigpt4.merr.store`, the output writers in `minigpt4.merr.outputs`; this module runs the
stages over the clips (`MerrBuilder.run`) and makes the choices that need all clips at once
(the coarse set, the reasoning filters, neutral samples, small classes).

Operation: every clip's results live in ``<out>/work/clips/<name>.json``, each stage stored
with a key made of its inputs, prompt and backend model, so a re-run (or a run after a crash)
recomputes only what changed; endpoint replies are also cached in ``<out>/work/cache/``. A clip
that fails is named with its reason in the summary and the rest completes. Every output file is
written to a temporary name and renamed, so none is ever half-written.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from minigpt4.common.config import load_config
from minigpt4.common.openai_client import EndpointConfigError
from minigpt4.features.config import FeatureConfig
from minigpt4.features.extract import extract_features
from minigpt4.merr import aus as au_lib
from minigpt4.merr import backends as bk
from minigpt4.merr.config import MerrConfig
from minigpt4.merr.outputs import COARSE_JSON, COARSE_TXT, FINE_JSON, FINE_TXT  # noqa: F401 (the output names)
from minigpt4.merr.outputs import build_summary, write_histogram, write_outputs
from minigpt4.merr.stages import ClipStages
from minigpt4.merr.store import ClipStore, write_json

log = logging.getLogger(__name__)

STAGE_SECONDS = ("analyse", "visual", "tone", "transcript", "label", "reason")


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
        self.out = Path(out)
        self.progress = progress
        self.stages = ClipStages(cfg, self.out)
        self.failed: dict[str, str] = {}
        self.seconds = {stage: 0.0 for stage in STAGE_SECONDS}

    @property
    def cfg(self) -> MerrConfig:
        return self.stages.cfg

    @cfg.setter
    def cfg(self, cfg: MerrConfig) -> None:  # a torchrun rank sets its own device (merr/__main__.py)
        self.stages.cfg = cfg

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
        redone = {n: store.damaged for n, store in stores.items() if store.damaged}  # damaged work files
        clips: dict[str, dict[str, Any]] = {n: {} for n in names}
        ok = self._per_clip_stages(names, paths, stores, clips)
        if per_clip_only:
            emotional = [n for n in ok if clips[n].get("label") and clips[n]["label"] != "neutral"]
            if cfg.reason.backend != "none":
                self._for_each("reason", emotional, lambda n: self.stages.reason(n, paths[n], stores[n], clips[n]),
                               cfg.reason.backend == "openai")
            return {"clips": len(names), "analysed": sum(n not in self.failed for n in names), "failed": dict(self.failed),
                    "work_files_redone": redone}
        drops: Counter = Counter()
        coarse = self._coarse(ok, clips, drops)
        fine = self._fine(ok, paths, stores, clips, drops)
        write_outputs(out, ok, coarse, fine, clips)
        feature_report = None
        if with_features:
            feature_report = self._features([paths[n] for n in ok])
        summary = build_summary(cfg, names, ok, coarse, fine, clips, drops, self.failed, self.seconds,
                                time.perf_counter() - wall, feature_report)
        summary["work_files_redone"] = dict(sorted(redone.items()))
        write_json(out / "summary.json", summary)
        write_histogram(out, summary)
        return summary

    def _per_clip_stages(self, names, paths, stores, clips) -> list[str]:
        """Stages 1-7 and 9 on every clip (endpoint stages in threads); the clips that passed."""
        cfg, stages = self.cfg, self.stages

        def each(stage: str, work: Callable[..., None], parallel: bool) -> None:
            self._for_each(stage, names, lambda n: work(n, paths[n], stores[n], clips[n]), parallel)

        each("analyse", stages.analyse, parallel=False)
        each("visual", stages.visual, cfg.visual.backend == "openai")
        each("tone", stages.tone, cfg.tone.backend == "openai")
        each("transcript", stages.transcript, cfg.transcript.backend == "openai")
        known = stages.known_labels()
        self._for_each("label", names, lambda n: stages.label(n, paths[n], stores[n], clips[n], known), parallel=False)
        ok = [n for n in names if n not in self.failed]
        for name in ok:
            clips[name]["caption"] = stages.caption(clips[name])
        return ok

    # ---- choices across clips -----------------------------------------------------------

    def _coarse(self, ok, clips, drops: Counter) -> list[str]:
        """The coarse set: labeled clips whose label is not excluded; the others counted in `drops`."""
        cfg = self.cfg
        coarse = [n for n in ok if clips[n].get("label") and clips[n]["label"] not in cfg.labels.coarse_exclude]
        for n in ok:
            if not clips[n].get("label"):
                drops[f"coarse: {clips[n].get('label_drop', 'no label')}"] += 1
            elif clips[n]["label"] in cfg.labels.coarse_exclude:
                drops[f"coarse: label {clips[n]['label']} excluded (labels.coarse_exclude)"] += 1
        return coarse

    def _fine(self, ok, paths, stores, clips, drops: Counter) -> list[str]:
        """The fine set (stage 8): reasoning for the emotional clips, filtered, plus a share of
        neutral ones; classes with too few samples dropped."""
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
        """Reason on `names`, keep those whose reasoning passes the checks, dedupe and cap."""
        r = self.cfg.reason
        self._for_each("reason", names, lambda n: self.stages.reason(n, paths[n], stores[n], clips[n]), r.backend == "openai")
        kept = []
        for n in names:
            if n in self.failed:
                continue
            text, label = clips[n]["reasoning"], clips[n]["label"]
            problem = bk.check_reasoning(text, label, self.stages.labels)
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

    # ---- features -----------------------------------------------------------------------

    def feature_config(self):
        if not self.cfg.features_cfg:
            raise bk.BackendError("--with-features needs features_cfg in the MERR config "
                                  "(e.g. minigpt4/configs/features/real.yaml)")
        return load_config(FeatureConfig, self.cfg.features_cfg)

    def _features(self, videos: list[Path]) -> dict:
        start = time.perf_counter()
        report = extract_features(videos, self.out, self.feature_config(), progress=self.progress)
        self.seconds["features"] = time.perf_counter() - start
        return report.counts()
