"""Feature extraction from raw video: frames, face crops, audio and the utterance encoders.

`media` (decoding / writing clips) imports only numpy, PyAV and decord, so data generators can
use it without loading torch; face detection and tracking live in `faces`, the encoders in
`encoders`, the batch job in `extract`, and clips made from a real photograph (for tests and
benchmarks) in `sample_clips`.
"""
