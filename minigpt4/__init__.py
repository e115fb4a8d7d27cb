"""Emotion-LLaMA: multimodal emotion recognition and reasoning (MiniGPT-v2 style)."""

import os

# Every model is loaded from a local folder; never let a typo in a path turn into a hub download
# (or a minute of network retries on an offline cluster node).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

__version__ = "0.1.0"
