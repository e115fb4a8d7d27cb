"""The built-in tone backend: pitch, loudness and speaking rate -> one of the ten published tone words.

Measures (16 kHz mono, 20 ms hops):

* pitch: torchcrepe (its weights ship inside the package), frames with periodicity >= 0.5 are
  voiced; median f0 in Hz, its spread in semitones (std) and its slope in semitones per second
  over the voiced frames (least squares). The pitch of a frame is the sigmoid-weighted mean of
  the nine bins around the most likely one (`weighted_argmax`): torchcrepe's own decoder of
  that name adds random dither to its bin centres, drawn once per process from an unseeded
  generator, so the same clip got a pitch up to ~1 Hz different in every run and on every
  torchrun rank; ours uses the exact bin centres, so the numbers are the same run to run (CREPE's
  logits themselves are bitwise equal run to run at a given thread count, and within ~1e-11
  across thread counts: far below the 3 decimals the measures are stored with);
* loudness: RMS energy in dBFS of the active frames (90th percentile: the level of the syllables,
  not of the gaps between them) and the share of the clip above -45 dBFS (voice activity);
* speaking rate: prominent peaks (>= 15 % of the maximum, >= 100 ms apart) of the smoothed energy
  envelope per second of voice (syllable nuclei);
* onset: how much louder the first 30 % of the speech is than the rest (a shout that fades).

Rules, first match wins (`tone_word`):

| tone | when |
|---|---|
| calm | almost no voice (< 15 % active) |
| shocked | loud (> -16 dB) with a strong onset burst (> 12 dB) or a steep rise (> 8 st/s) at a high pitch (> 190 Hz) |
| angry | very loud (> -12 dB) and fast (> 4.5 syll/s) or with a low-to-mid pitch (< 230 Hz) |
| joyful | high pitch (> 200 Hz), lively (spread > 1.5 st) and not quiet (> -26 dB) |
| sad | low pitch (< 120 Hz) or quiet (< -28 dB), and slow (< 3.2 syll/s) or falling (< -2 st/s) |
| fearful | trembling pitch (spread > 2.5 st) while not loud (< -20 dB) |
| doubtful | rising pitch at the end (> 3 st/s) while not loud |
| dismissive | short flat speech: spread < 0.8 st and quiet (< -24 dB) |
| positive | pitch above 170 Hz and rising (> 0.5 st/s) |
| negative | falling pitch (< -0.5 st/s) |
| calm | everything else |

Absolute thresholds cannot know the speaker (a deep voice reads "sad" earlier); it is a
transparent, reproducible stand-in for an audio LLM, not a trained classifier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

TONE_WORDS = ("joyful", "sad", "shocked", "fearful", "angry", "positive", "negative", "calm", "doubtful", "dismissive")
HOP = 320  # 20 ms at 16 kHz: enough for utterance statistics, half the pitch-tracker work of 10 ms
CREPE_BATCH = 512  # frames per CREPE forward pass (fixed: the same clip is always cut the same way)
PITCH_BINS = 360  # CREPE's output: 20-cent bins from 1997.38 cents (about 31.7 Hz) up
CENTS_PER_BIN = 20.0
FIRST_BIN_CENTS = 1997.3794084376191


def weighted_argmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A torchcrepe decoder: (bins [B,T], pitch in Hz [B,T]) from logits [B,360,T]. The
    sigmoid-weighted mean of the bin centres within 4 bins of the most likely bin, as
    torchcrepe's `decode.weighted_argmax` but without its random dither (see the module docstring)."""
    bins = logits.argmax(dim=1)
    index = torch.arange(logits.size(1), device=logits.device)[None, :, None]
    window = (index >= bins[:, None, :] - 4) & (index <= bins[:, None, :] + 4)
    probs = torch.sigmoid(logits) * window
    centres = CENTS_PER_BIN * torch.arange(logits.size(1), device=logits.device, dtype=logits.dtype) + FIRST_BIN_CENTS
    cents = (centres[None, :, None] * probs).sum(dim=1) / probs.sum(dim=1)
    return bins, 10 * 2 ** (cents / 1200)


@dataclass
class Prosody:
    f0_hz: float
    f0_spread_st: float
    f0_slope_st_s: float
    loudness_db: float
    active: float
    rate_syll_s: float
    onset_db: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 3) for k, v in asdict(self).items()}


def measure(audio: np.ndarray, sample_rate: int = 16000, crepe_model: str = "tiny") -> Prosody:
    """The prosodic measures of one utterance (see module docstring)."""
    import torchcrepe

    audio = np.asarray(audio, dtype=np.float32)
    if sample_rate != 16000:
        raise ValueError(f"prosody expects 16 kHz audio, got {sample_rate}")
    frames = max(1, len(audio) // HOP)
    rms = np.sqrt(np.mean(audio[: frames * HOP].reshape(frames, HOP) ** 2, 1) + 1e-12) if len(audio) >= HOP else np.array([1e-6])
    db = 20 * np.log10(rms + 1e-9)
    active = db > -45.0
    if len(audio) < 1024 or not active.any():
        return Prosody(0.0, 0.0, 0.0, float(db.max()), float(active.mean()), 0.0, 0.0)
    with torch.no_grad():
        pitch, periodicity = torchcrepe.predict(torch.from_numpy(audio)[None], sample_rate, hop_length=HOP, fmin=50.0,
                                                fmax=550.0, model=crepe_model, return_periodicity=True, batch_size=CREPE_BATCH,
                                                device="cpu", decoder=weighted_argmax)
    pitch, periodicity = pitch[0].numpy()[:frames], periodicity[0].numpy()[:frames]
    voiced = (periodicity >= 0.5) & active[: len(pitch)]
    if voiced.sum() >= 3:
        semitones = 12 * np.log2(pitch[voiced] / 100.0)
        times = np.nonzero(voiced)[0] * HOP / sample_rate
        slope = float(np.polyfit(times, semitones, 1)[0]) if np.ptp(times) > 0.05 else 0.0
        f0, spread = float(np.median(pitch[voiced])), float(np.std(semitones))
    else:
        f0, spread, slope = 0.0, 0.0, 0.0
    loud = float(np.percentile(db[active], 90))
    from scipy.signal import find_peaks

    envelope = np.convolve(rms, np.hanning(5) / np.hanning(5).sum(), mode="same")
    peaks, _ = find_peaks(envelope, height=10 ** (-45 / 20), prominence=0.15 * envelope.max(),
                          distance=max(1, int(0.1 * sample_rate / HOP)))  # syllable nuclei >= 100 ms apart
    seconds_active = max(active.sum() * HOP / sample_rate, 0.1)
    rate = float(len(peaks) / seconds_active)
    speech = np.nonzero(active)[0]
    cut = speech[0] + max(1, int(0.3 * (speech[-1] - speech[0] + 1)))
    head, tail = db[speech[0]:cut], db[cut:speech[-1] + 1]
    onset = float(np.median(head) - np.median(tail)) if len(tail) else 0.0
    return Prosody(f0, spread, slope, loud, float(active.mean()), rate, onset)


def tone_word(p: Prosody) -> str:
    """One of `TONE_WORDS` by the rules in the module docstring."""
    loud, quiet = p.loudness_db > -16.0, p.loudness_db < -28.0
    very_loud = p.loudness_db > -12.0
    if p.active < 0.15:
        return "calm"
    if loud and p.f0_hz > 190.0 and (p.onset_db > 12.0 or p.f0_slope_st_s > 8.0):
        return "shocked"
    if very_loud and (p.rate_syll_s > 4.5 or 0 < p.f0_hz < 230.0):
        return "angry"
    if p.f0_hz > 200.0 and p.f0_spread_st > 1.5 and p.loudness_db > -26.0:
        return "joyful"
    if (0 < p.f0_hz < 120.0 or quiet) and (p.rate_syll_s < 3.2 or p.f0_slope_st_s < -2.0):
        return "sad"
    if p.f0_spread_st > 2.5 and p.loudness_db < -20.0:
        return "fearful"
    if p.f0_slope_st_s > 3.0:
        return "doubtful"
    if p.f0_spread_st < 0.8 and p.loudness_db < -24.0:
        return "dismissive"
    if p.f0_hz > 170.0 and p.f0_slope_st_s > 0.5:
        return "positive"
    if p.f0_slope_st_s < -0.5:
        return "negative"
    return "calm"
