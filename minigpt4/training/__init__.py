"""Pieces of the training recipe in `train.py`: optimizer and schedule, sampling, checkpoints (process groups: `minigpt4.common.distributed`)."""
