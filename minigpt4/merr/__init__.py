"""MERR construction: turn a folder of videos into MERR-format emotion-reasoning training data.

`python -m minigpt4.merr build ...`; stages in `build`, backends in `backends`, AUs in `aus`,
tone rules in `prosody`, video/face access in `media`. Documentation: MERR/README.md.
"""
