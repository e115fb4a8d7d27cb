"""Emotion-LLaMA: multimodal emotion recognition and reasoning (MiniGPT-v2 style)."""

import os

# Every model is loaded from a local folder; never let a typo in a path turn into a hub download
# (or a minute of network retries on an offline cluster node).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# OpenMP threads that wait sleep instead of spinning, so they do not fight the data-loader workers
# or other jobs for cores (minigpt4/common/threads.py). The OpenMP runtime reads this once, when
# torch is first imported, so it is set here, before any module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
