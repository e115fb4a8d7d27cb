"""Emotion-LLaMA: multimodal emotion recognition and reasoning (MiniGPT-v2 style)."""

__version__ = "0.1.0"
