"""Emotion-LLaMA on one raw video: the emotion and its explanation from all four inputs.

    python -m minigpt4.infer --cfg-path eval_configs/infer_tiny.yaml --video clip.mp4
    python -m minigpt4.infer --cfg-path eval_configs/infer_real.yaml --video clip.mp4 \\
        --task reason --transcript "I can't believe you did that" --json

The release's demo looked at the first frame only and fed zeros for the local and temporal
features. Here a clip goes through exactly what batch extraction (`minigpt4.features.extract`)
does to the training clips: decode, crop faces, choose the frame (first / middle / peak), load
the audio, run HuBERT / ViT-MAE / VideoMAE; then the chosen frame goes to EVA inside the model
and the prompt is built in the training layout by the training collator. Nothing is written
to disk.

A clip without an audio track is still answered: the audio feature is marked absent (as in
training data without one) and the result says so. `--answer-mode score_labels` answers the
emotion by scoring every label of the label set (`EmotionLLaMA.score_labels`): the answer is then
always a valid label, and `--json` carries the probability of each label (``label_probs``). A file that cannot be read is an error that
names the file; the command line then exits with status 2.

`EmotionPredictor` loads the encoders and the model once; `app.py` (the web demo) and the MERR
``model`` backend use it. The package, by concern:

    config.py     InferConfig (the YAML schema) and load_infer_config
    inputs.py     one clip -> model inputs (check_video, ClipEncoder, ClipInputs)
    predictor.py  EmotionPredictor and its Prediction (answers through eval.generation.answer_batch)
    cli.py        the command line (main)
"""

from minigpt4.infer.cli import main, parse_args, quiet_libraries
from minigpt4.infer.config import AppConfig, InferConfig, LimitsConfig, load_infer_config
from minigpt4.infer.inputs import ClipEncoder, ClipInputs, RequestRejected, VideoRejected, check_text, check_video
from minigpt4.infer.predictor import INFER_TASKS, INPUT_NAMES, EmotionPredictor, Prediction
from minigpt4.run_config import GenerationConfig

__all__ = [
    "AppConfig", "ClipEncoder", "ClipInputs", "EmotionPredictor", "GenerationConfig", "INFER_TASKS", "INPUT_NAMES",
    "InferConfig", "LimitsConfig", "Prediction", "RequestRejected", "VideoRejected", "check_text", "check_video", "load_infer_config", "main",
    "parse_args", "quiet_libraries",
]
