"""Feature extraction from raw video: frames, face crops, audio and the utterance encoders.

Decoding and writing clips lives on the ground floor (`minigpt4.common.media`); face detection
and tracking live in `faces`, the encoders in `encoders`, the batch job in `extract`, and clips
made from a real photograph (for tests and benchmarks) in `sample_clips`.
"""
