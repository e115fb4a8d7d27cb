"""Feature extraction from raw video: frames, face crops, audio and the utterance encoders.

`media` (decoding / writing clips) imports only numpy, PyAV and decord, so data generators can
use it without loading torch; the encoders live in `encoders` and the batch job in `extract`.
"""
