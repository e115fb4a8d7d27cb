"""Web demo: upload a clip (or pick an example), get the emotion and its explanation.

    python app.py --cfg-path eval_configs/infer_tiny.yaml            # after `make demo`
    python app.py --cfg-path eval_configs/infer_real.yaml --port 7860 --host 127.0.0.1

The page runs the very pipeline of `python -m minigpt4.infer` (minigpt4/infer/): the chosen
frame for EVA, face crops for the local and temporal encoders, the audio track for HuBERT and
the transcript you type, and shows the frame and the face crop it used, which inputs were
present, and a bar chart of the label probabilities (`EmotionLLaMA.score_labels`: the model's
likelihood of answering each label of the set, so it always names valid labels). Answers are sampled with the release demo's settings (temperature 0.2, top-p 0.9,
repetition penalty 1.05). A file that cannot be read, or a request over the limits of the config
(`limits:` size, duration, pixels, frames, question and transcript length, checked before any
decoding; a per-request deadline) is reported in the page, naming the file as the user gave it,
never a server path; the server keeps serving. An upload to `/predict` is deleted once it is
answered; the page's (still shown, for more questions) are swept after an hour. Only
the listed example clips can be fetched from the server, not the rest of their folder.
Concurrency (docs/http_api.md, "Limits and concurrency"): `app.concurrency` requests at once,
so one can decode while another generates; each is bounded by the limits and the deadline.

The predictor is built once in `main` and handed to the request handler; there is no
module-level state.

Programs use the HTTP API endpoint `/predict` of the same server (documented in
docs/http_api.md): one clip in, the JSON object of `python -m minigpt4.infer --json` out.
(No `from __future__ import annotations` here: gradio reads the endpoint's parameter types
from its annotations at run time.)
"""

import argparse
import functools
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from minigpt4.common.errors import report, user_errors
from minigpt4.common.media import MediaError
from minigpt4.data.labels import label_set
from minigpt4.eval.generation import check_answer_mode
from minigpt4.features.extract import find_videos, read_names_file
from minigpt4.infer import INPUT_NAMES, EmotionPredictor, InferConfig, load_infer_config, quiet_libraries

log = logging.getLogger("app")

TASK_CHOICES = [
    ("Emotion label", "emotion"),
    ("Explain the emotion (coarse reasoning)", "reason"),
    ("Explain the emotion (fine reasoning)", "reason_v2"),
]
INPUT_TITLES = {"image": "frame (EVA, global view)", "local": "face, frame by frame (MAE)",
                "temporal": "face over time (VideoMAE)", "audio": "voice (HuBERT)", "text": "transcript"}


def find_examples(cfg: InferConfig) -> list[str]:
    """Example clips from `app.examples` (only those named in `app.examples_list` when set);
    none when the folder does not exist, e.g. before `make demo` has run."""
    folder = cfg.app.examples
    if not folder or not Path(folder).is_dir():
        if folder:
            log.info("no example clips: folder %s does not exist", folder)
        return []
    names = None
    if cfg.app.examples_list and Path(cfg.app.examples_list).is_file():
        names = read_names_file(cfg.app.examples_list)
    paths, _ = find_videos(folder, names)
    return [str(p.resolve()) for p in paths[: cfg.app.max_examples]]


def request_deadline(cfg: InferConfig) -> Optional[float]:
    """When the request must be answered by (`time.monotonic()`), from `limits.request_seconds`."""
    seconds = cfg.limits.request_seconds
    return time.monotonic() + seconds if seconds and seconds > 0 else None


def public_message(message: str, path: str, name: str) -> str:
    """`message` with the server's copy of the upload (and its folder) replaced by the name the
    user gave: an error must not show where the server keeps files."""
    folder = str(Path(path).parent)
    for server_path in sorted({str(path), str(Path(path).resolve())}, key=len, reverse=True):
        message = message.replace(server_path, name)
    return message.replace(folder + os.sep, "").replace(folder, "(upload)")


def remove_upload(path: Optional[str]) -> None:
    """Delete an uploaded file (and its folder, when empty) from gradio's upload folder once it
    is answered; example clips and any other file are left alone."""
    if not path:
        return
    from gradio.utils import get_upload_folder

    uploads, file = Path(get_upload_folder()).resolve(), Path(path).resolve()
    if uploads not in file.parents:
        return
    file.unlink(missing_ok=True)
    try:
        file.parent.rmdir()  # gradio keeps each upload in a folder of its own
    except OSError:
        pass


def inputs_markdown(used: dict[str, bool]) -> str:
    lines = [f"- **{name}** ({INPUT_TITLES[name]}): {'used' if used[name] else 'absent'}" for name in INPUT_NAMES]
    return "Inputs:\n\n" + "\n".join(lines)


def for_display(image, min_side: int = 192):
    """Small frames (the tiny demo's are 64 px) enlarged with visible pixels, so they can be seen."""
    import cv2

    scale = -(-min_side // min(image.shape[:2]))  # ceil
    if scale <= 1:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def analyse(predictor: EmotionPredictor, video: Optional[str], task: str, question: str,
            transcript: str) -> tuple[Any, ...]:
    """The click handler: (status, label, answer, inputs, frame, face, label probabilities).
    Never raises, so a bad upload becomes a message in the page instead of a broken request."""
    empty = ("", "", "", None, None, None)
    if not video:
        return ("Upload a video clip or pick an example first.", *empty)
    name = Path(video).name
    try:
        mode = "score_labels" if predictor.cfg.answer_mode == "score_labels" else "both"  # always the chart
        prediction = predictor.predict(video, task, question or None, transcript or "", sample=True, answer_mode=mode,
                                       deadline=request_deadline(predictor.cfg))
    except (MediaError, ValueError) as err:  # unreadable, over a limit, past the deadline, bad task
        return (f"**Error:** {public_message(str(err), video, name)}", *empty)
    except Exception as err:  # a demo must survive anything one request does; the log has the details
        log.exception("request for %s failed", video)
        return (f"**Error:** could not analyse {name}: {type(err).__name__}", *empty)
    label = prediction.label
    if label is None:
        likeliest = max(prediction.label_probs, key=prediction.label_probs.get)
        label = f"(no single label in the answer; most probable: {likeliest})"
    notes = "".join(f"\n- {note}" for note in prediction.notes)
    status = f"Analysed **{name}** in {prediction.seconds:.2f} s.{notes}"
    return (status, label, prediction.answer, inputs_markdown(prediction.inputs_used),
            for_display(prediction.frame), for_display(prediction.face), prediction.label_probs)


def predict_json(predictor: EmotionPredictor, video: dict[str, Any], task: str = "emotion", question: str = "",
                 transcript: str = "", sample: bool = False) -> dict[str, Any]:
    """The `/predict` endpoint: `Prediction.to_json()`, i.e. what `python -m minigpt4.infer --json`
    prints, for one uploaded clip. Greedy unless `sample`, as on the command line. `video` is
    gradio's file payload; the result names the file as uploaded, not the server's temporary
    copy. A bad clip or task raises `gradio.Error` (the client gets the message, naming the file)."""
    import gradio as gr

    path = video.get("path") if isinstance(video, dict) else None
    if not path:
        raise gr.Error("no video: send the clip as a file (gradio_client.handle_file(path))")
    name = Path(video.get("orig_name") or path).name
    try:
        result = predictor.predict(path, task, question or None, transcript or "", sample=bool(sample),
                                   deadline=request_deadline(predictor.cfg)).to_json()
    except (MediaError, ValueError) as err:  # unreadable, over a limit, past the deadline, bad task
        raise gr.Error(f"error: {public_message(str(err), path, name)}") from None
    except Exception as err:  # a bug: the log has the details, the client gets no server internals
        log.exception("request for %s failed", path)
        raise gr.Error(f"error: could not analyse {name}: {type(err).__name__}") from None
    finally:
        remove_upload(path)
    return {**result, "video": name}


def build_demo(predictor: EmotionPredictor, examples: Sequence[str]):
    """The page. `predictor` is bound into the handler; nothing is global."""
    import gradio as gr

    cfg = predictor.cfg
    limits = cfg.limits
    # `/predict` deletes its upload once answered; the page keeps the clip in view for more
    # questions, so its uploads (and any an error left) are swept hourly, once over an hour old
    with gr.Blocks(title=cfg.app.title, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            f"# {cfg.app.title}\n"
            "Upload a short clip of one person speaking (one utterance). The model looks at a chosen "
            "frame, the face over the clip and the voice, and reads what you type as the transcript. "
            f"Limits: {limits.max_upload_mb:g} MB, {limits.max_seconds:g} s, {limits.max_pixels} pixels a frame, "
            f"{limits.max_transcript_chars} characters of transcript. Labels: "
            f"{', '.join(predictor.labels)}.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video clip", sources=["upload"], elem_id="video")
                task = gr.Radio(TASK_CHOICES, value="emotion", label="Task", elem_id="task")
                question = gr.Textbox(label="Your question (optional; replaces the task's standard one)",
                                      elem_id="question")
                transcript = gr.Textbox(label="What the person says (optional transcript)", elem_id="transcript")
                run = gr.Button("Analyse", variant="primary", elem_id="run")
                if examples:
                    gr.Examples([[path] for path in examples], inputs=[video], label="Example clips", elem_id="examples")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                label = gr.Textbox(label="Emotion", interactive=False, elem_id="label")
                probs = gr.Label(label="Label probabilities (scored by the model)", num_top_classes=len(predictor.labels),
                                 elem_id="probs")
                answer = gr.Textbox(label="Answer", lines=4, interactive=False, elem_id="answer")
                used = gr.Markdown(elem_id="inputs")
                with gr.Row():
                    frame = gr.Image(label="Chosen frame", interactive=False, elem_id="frame")
                    face = gr.Image(label="Face crop", interactive=False, elem_id="face")
        gr.Markdown(f"Sampling: temperature {cfg.generation.temperature}, top-p {cfg.generation.top_p}, "
                    f"repetition penalty {cfg.generation.repetition_penalty}. "
                    "Command line: `python -m minigpt4.infer --video clip.mp4`.")
        run.click(functools.partial(analyse, predictor), inputs=[video, task, question, transcript],
                  outputs=[status, label, answer, used, frame, face, probs])
        add_api(predictor)
    return demo


def add_api(predictor: EmotionPredictor) -> None:
    """Register `/predict` (see `predict_json`) in the Blocks being built; the page does not show it."""
    import gradio as gr
    from gradio.data_classes import FileData

    def predict(video: FileData, task: str = "emotion", question: str = "", transcript: str = "",
                sample: bool = False) -> dict:
        """One clip -> the JSON of `python -m minigpt4.infer --json` (task: emotion | reason | reason_v2)."""
        return predict_json(predictor, video, task, question, transcript, sample)

    gr.api(predict, api_name="predict")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Emotion-LLaMA web demo")
    parser.add_argument("--cfg-path", default="eval_configs/infer_tiny.yaml")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. model.checkpoint=path app.examples=folder")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local demo
    quiet_libraries()
    try:
        cfg = load_infer_config(args.cfg_path, args.options)
        check_answer_mode(cfg.answer_mode, label_set(cfg.label_set))
        predictor = EmotionPredictor(cfg)
    except user_errors() as err:
        return report(err)
    examples = find_examples(cfg)
    demo = build_demo(predictor, examples)
    # the listed example files themselves, not their folder (it may hold training clips)
    demo.queue(default_concurrency_limit=max(1, cfg.app.concurrency)).launch(
        server_name=args.host, server_port=args.port, max_file_size=int(cfg.limits.max_upload_mb * 2**20),
        allowed_paths=list(examples), share=False, show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
