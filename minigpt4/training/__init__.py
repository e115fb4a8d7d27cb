"""Pieces of the training recipe in `train.py`: optimizer and schedule, sampling, checkpoints, processes."""
