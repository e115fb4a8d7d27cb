"""MERR construction: turn a folder of videos into MERR-format emotion-reasoning training data.

`python -m minigpt4.merr build ...`: the run and the choices across clips in `build`, the
per-clip stages in `stages`, their on-disk store in `store`, the output writers in `outputs`,
backends in `backends`, AUs in `aus`, tone rules in `prosody`, video/face access in `media`.
Documentation: MERR/README.md.
"""
