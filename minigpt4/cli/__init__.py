"""The programs users run (`python train.py`, `emotion-llama-train`, ...): argument parsing, then one call."""
