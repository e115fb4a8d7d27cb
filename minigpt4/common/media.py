"""Reading and writing video clips: frames and audio with PyAV, one-frame reads of dataset clips with decord.

Every function here takes a file path and raises `MediaError` (a `ValueError`) naming that
file when it cannot be read, so a batch job can record the reason and carry on. A video with
no audio track raises the more specific `NoAudioError` from `load_audio`.

There is no ``ffmpeg`` binary on the machines we target: PyAV carries its own FFmpeg libraries
and is used for writing clips (tests, synthetic data, benchmarks) and for decoding audio.

Which decoder reads what (measured in benchmarks/bench_decoders.py, results/decoders_cpu.json):
PyAV, maintained and built on a current FFmpeg, decodes everything a user hands us: uploads and
`minigpt4.infer` (`probe_video` checks the header, then feature extraction's `stream_frames`).
decord (last release 2021, an FFmpeg 4.1-era libavcodec) is kept only for the *trusted* dataset
clips a training or evaluation config points at (`video_info`, `read_frames`, `read_frame`,
`iter_frame_chunks`): reading the dataset's one frame ("first" / "middle") seeks several times
faster than PyAV decoding up to it, and whole clips decode about as fast, so one decoder keeps a
clip's pixels the same in every read (the two convert to RGB a few levels apart). PyAV is the
fallback for the files decord cannot open. docs/data_formats.md ("Decoders") has the numbers.
"""

from __future__ import annotations

import fractions
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import av
import cv2
import numpy as np

from minigpt4.common.errors import UserError

FRAME_CHOICES = ("first", "middle", "peak")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")  # a pre-extracted frame

# Peak-frame search works on grey frames shrunk to this many pixels a side: cheap, and blind to
# sensor noise and compression artefacts that a full-resolution difference would pick up.
PEAK_THUMB_SIZE = 32

# (video codecs to try, audio codecs to try) per container suffix; the first one that the bundled
# FFmpeg can encode wins. All of these are in PyAV's wheels; the fallbacks cover custom builds.
_CODECS_BY_SUFFIX: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    ".mp4": (("libx264", "h264", "mpeg4"), ("aac",)),
    ".mov": (("libx264", "h264", "mpeg4"), ("aac",)),
    ".mkv": (("libx264", "h264", "mpeg4"), ("aac", "libopus", "libvorbis")),
    ".avi": (("mpeg4",), ("pcm_s16le", "libmp3lame", "mp3")),
    ".webm": (("libvpx", "libvpx-vp9"), ("libopus", "libvorbis", "opus")),
}


class MediaError(UserError):
    """A media file that cannot be read or written; the message names the file and the fix."""

    def __init__(self, path: str | Path, problem: str, fix: str = ""):
        self.path = str(path)
        self.problem = problem
        message = f"{path}: {problem}"
        if fix:
            message += f". {fix}"
        super().__init__(message)


class NoAudioError(MediaError):
    """The video has no audio track, so there is no audio feature to compute."""

    def __init__(self, path: str | Path):
        super().__init__(path, "the file has no audio track",
                         "Audio features are skipped for this clip; add a soundtrack if you need them")


_CORRUPT_FIX = ("The file is damaged or incomplete: re-copy or re-download it, or re-encode it "
                "with a tool that can still read it")


@dataclass(frozen=True)
class VideoInfo:
    """What a caller needs to plan decoding: how many frames, how fast, how big, any sound."""

    num_frames: int
    fps: float
    width: int
    height: int
    has_audio: bool


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

def write_video(path: str | Path, frames: np.ndarray | Iterable[np.ndarray], fps: float,
                audio: np.ndarray | None = None, sample_rate: int = 16000) -> None:
    """Encode RGB `frames` (uint8 [T,H,W,3], or any iterable of uint8 [H,W,3] frames, so long
    clips can be written without holding them in memory) and optional mono `audio` (float32 in
    [-1, 1]).

    The container follows the suffix (.mp4/.mov h264+aac, .mkv h264+aac, .avi mpeg4+pcm,
    .webm vp8+opus). yuv420p needs even sizes, so an odd width or height is padded by one
    pixel, repeating the last column/row: the file is then one pixel larger than `frames`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _CODECS_BY_SUFFIX:
        raise MediaError(path, f"cannot write suffix {suffix!r}", f"use one of {sorted(_CODECS_BY_SUFFIX)}")
    if isinstance(frames, np.ndarray) and (frames.ndim != 4 or len(frames) == 0):
        raise MediaError(path, f"frames must be uint8 [T,H,W,3] with T>0, got {frames.dtype} {frames.shape}")
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise MediaError(path, "frames must be uint8 [T,H,W,3] with T>0, got no frames")
    _check_frame(path, first)
    if fps <= 0:
        raise MediaError(path, f"fps must be positive, got {fps}")
    video_codecs, audio_codecs = _CODECS_BY_SUFFIX[suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = fractions.Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        video_stream = container.add_stream(_first_encoder(video_codecs, path), rate=rate)
        video_stream.height = first.shape[0] + first.shape[0] % 2
        video_stream.width = first.shape[1] + first.shape[1] % 2
        video_stream.pix_fmt = "yuv420p"
        if video_stream.codec_context.name == "libx264":
            # x264's frame and lookahead threads make the bitstream depend on thread timing; without
            # them the same frames always encode to the same file (the synthetic corpus relies on it).
            video_stream.codec_context.options = {"tune": "zerolatency", "threads": "1"}
        if video_stream.codec_context.name in ("mpeg4", "libvpx", "libvpx-vp9"):
            video_stream.bit_rate = 4_000_000  # their defaults are blurry enough to erase small test patterns
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream(_first_encoder(audio_codecs, path), rate=sample_rate)
            audio_stream.layout = "mono"
        for rgb in itertools.chain([first], frames):
            if rgb.shape != first.shape or rgb.dtype != np.uint8:
                raise MediaError(path, f"every frame must be uint8 {first.shape}, got {rgb.dtype} {rgb.shape}")
            frame = av.VideoFrame.from_ndarray(_pad_to_even(np.ascontiguousarray(rgb)), format="rgb24")
            container.mux(video_stream.encode(frame))
        container.mux(video_stream.encode())
        if audio_stream is not None:
            _encode_audio(container, audio_stream, np.asarray(audio, dtype=np.float32), sample_rate)


def _check_frame(path: Path, rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise MediaError(path, f"frames must be uint8 [T,H,W,3] with T>0, got {rgb.dtype} frames of {rgb.shape}")


def _pad_to_even(frame: np.ndarray) -> np.ndarray:
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frame


def _first_encoder(names: Sequence[str], path: Path) -> str:
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # av raises UnknownCodecError or ValueError depending on version
            continue
    raise MediaError(path, f"none of the encoders {list(names)} is in this PyAV build",
                     "install the PyAV wheel from PyPI (it bundles them) or pick another suffix")


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    if audio.ndim != 1:
        raise MediaError(container.name, f"audio must be mono float32 [n], got shape {audio.shape}")
    codec = stream.codec_context
    frame_size = codec.frame_size or 1024  # pcm reports 0: any size works
    resampler = av.AudioResampler(format=codec.format.name, layout="mono", rate=sample_rate,
                                  frame_size=frame_size)
    samples = np.clip(audio, -1.0, 1.0).reshape(1, -1)
    source = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
    source.sample_rate = sample_rate
    pts = 0
    for chunk in resampler.resample(source) + resampler.resample(None):
        chunk.pts = pts
        pts += chunk.samples
        container.mux(stream.encode(chunk))
    container.mux(stream.encode())


# --------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------

def probe_video(path: str | Path) -> VideoInfo:
    """`VideoInfo` of an untrusted file from its header, with PyAV (current FFmpeg) and without
    decoding a frame: cheap enough to check an upload against limits before any heavy work.

    The frame count is the header's, else duration x frame rate, else the number of video
    packets (demuxed, not decoded). Size is the decoder's declared size (0 when unknown).
    """
    path = _existing_file(path)
    with _open_av(path) as container:
        stream = _video_stream(container, path)
        fps = float(stream.average_rate or 0.0)
        num_frames = int(stream.frames or 0)
        if not num_frames:
            seconds = _declared_video_seconds(container, stream)
            num_frames = round(seconds * fps) if seconds and fps > 0 else 0
        if not num_frames:
            try:
                num_frames = sum(1 for packet in container.demux(stream) if packet.size)
            except av.error.FFmpegError as err:
                raise MediaError(path, f"not a readable video ({err})", _CORRUPT_FIX) from None
        context = stream.codec_context
        return VideoInfo(num_frames, fps, int(context.width or 0), int(context.height or 0),
                         bool(container.streams.audio))


def video_info(path: str | Path) -> VideoInfo:
    """Frame count, frame rate, size and whether there is an audio track.

    The count is decord's (exact for the files we write); when decord cannot open the file the
    frames are counted by decoding with PyAV, which is slower but always right.
    """
    path = _existing_file(path)
    with _open_av(path) as container:
        has_audio = bool(container.streams.audio)
        declared_seconds = _declared_video_seconds(container, _video_stream(container, path))
    reader = _open_decord(path)
    if reader is not None:
        height, width = reader[0].shape[:2]
        info = VideoInfo(len(reader), float(reader.get_avg_fps()), width, height, has_audio)
    else:
        frames = _decode_all_with_av(path)
        with _open_av(path) as container:
            fps = float(container.streams.video[0].average_rate or 0.0)
        info = VideoInfo(len(frames), fps, frames.shape[2], frames.shape[1], has_audio)
    _check_not_truncated(path, info.num_frames, info.fps, declared_seconds)
    return info


def read_frames(path: str | Path, indices: Sequence[int] | None = None) -> np.ndarray:
    """RGB frames as uint8 [T,H,W,3]: all of them, or those at `indices` (in the given order).

    Reading all frames checks the count against the duration the container declares, so a
    truncated file raises `MediaError` instead of silently yielding a shorter clip.
    """
    path = _existing_file(path)
    if indices is None:
        indices = range(video_info(path).num_frames)  # raises on truncation
    wanted = [int(i) for i in indices]
    reader = _open_decord(path)
    if reader is not None:
        _check_indices(path, wanted, len(reader))
        if not wanted:
            return _empty_frames(reader)
        try:
            return reader.get_batch(wanted).asnumpy()
        except Exception:  # decord trusts the index and fails on damaged tails; PyAV decodes what is there
            pass
    frames = _decode_all_with_av(path)
    with _open_av(path) as container:
        stream = container.streams.video[0]
        _check_not_truncated(path, len(frames), float(stream.average_rate or 0.0),
                             _declared_video_seconds(container, stream))
    _check_indices(path, wanted, len(frames))
    return frames[wanted]


def iter_frame_chunks(path: str | Path, chunk_size: int = 64) -> Iterator[np.ndarray]:
    """All frames in order, `chunk_size` at a time, so long clips need not fit in memory."""
    count = video_info(path).num_frames
    for start in range(0, count, chunk_size):
        yield read_frames(path, range(start, min(start + chunk_size, count)))


# pixel formats whose first plane is 8-bit luma: the grey image comes free, without conversion
_LUMA_FIRST = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "yuv411p",
               "yuv440p", "yuvj440p", "gray"}


class StreamFrame:
    """One decoded frame of `stream_frames`: converted to grey or RGB only when asked."""

    def __init__(self, index: int, frame):
        self.index = index
        self._frame = frame

    @property
    def height(self) -> int:
        return self._frame.height

    @property
    def width(self) -> int:
        return self._frame.width

    def grey(self) -> np.ndarray:
        """uint8 [H,W] luma (the Y plane itself for YUV video: no conversion)."""
        frame = self._frame
        if frame.format.name in _LUMA_FIRST:
            plane = frame.planes[0]
            return np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, :frame.width]
        return frame.to_ndarray(format="gray")

    def rgb(self) -> np.ndarray:
        """uint8 [H,W,3] RGB."""
        return self.rgb_region(0, 0, self.width, self.height)

    def rgb_region(self, left: int, top: int, width: int, height: int) -> np.ndarray:
        """uint8 [height, width, 3] RGB of one region; for 4:2:0 video only that region is
        converted (a face crop costs a fraction of a full 1080p frame)."""
        frame = self._frame
        if frame.format.name not in ("yuv420p", "yuvj420p") or frame.width < 2 or frame.height < 2:
            return frame.to_ndarray(format="rgb24")[top:top + height, left:left + width]
        # chroma is subsampled 2x: convert an even-aligned region, then trim to the one asked for
        x0, y0 = left - left % 2, top - top % 2
        x1 = min(frame.width - frame.width % 2, left + width + (left + width) % 2)
        y1 = min(frame.height - frame.height % 2, top + height + (top + height) % 2)
        if x1 - x0 < 2 or y1 - y0 < 2 or x1 < left + width or y1 < top + height:  # an odd-sized edge
            return frame.to_ndarray(format="rgb24")[top:top + height, left:left + width]
        planes = [np.frombuffer(p, np.uint8).reshape(-1, p.line_size) for p in frame.planes[:3]]
        luma = planes[0][y0:y1, x0:x1]
        u = planes[1][y0 // 2:y1 // 2, x0 // 2:x1 // 2]
        v = planes[2][y0 // 2:y1 // 2, x0 // 2:x1 // 2]
        i420 = np.concatenate([luma.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(-1, x1 - x0)
        rgb = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)  # BT.601, as FFmpeg's default conversion
        return np.ascontiguousarray(rgb[top - y0:top - y0 + height, left - x0:left - x0 + width])

    def image(self, input_format: str) -> np.ndarray:
        """`grey()` or `rgb()` by name, as a face detector's `input_format` says."""
        return self.grey() if input_format == "grey" else self.rgb()


def stream_frames(path: str | Path, stop_after: int | None = None) -> Iterator[StreamFrame]:
    """Decode a video frame by frame, in order, holding one frame at a time (PyAV).

    Long or high-resolution clips therefore need no more memory than short ones. After the
    last frame the count is checked against the duration the header declares, so a truncated
    file raises `MediaError`; a damaged tail ends the stream like the end of the file.
    `stop_after`: stop after this frame index (nothing after it is needed; no truncation check).
    """
    path = _existing_file(path)
    count = 0
    with _open_av(path) as container:
        stream = _video_stream(container, path)
        fps = float(stream.average_rate or 0.0)
        declared = _declared_video_seconds(container, stream)
        try:
            for frame in container.decode(stream):
                yield StreamFrame(count, frame)
                count += 1
                if stop_after is not None and count > stop_after:
                    return
        except av.error.FFmpegError as err:
            if count == 0:
                raise MediaError(path, f"no decodable video frames ({err})", _CORRUPT_FIX) from None
    if count == 0:
        raise MediaError(path, "no decodable video frames", _CORRUPT_FIX)
    _check_not_truncated(path, count, fps, declared)


def choose_frame_index(path_or_frames: str | Path | np.ndarray, choice: str) -> int:
    """Index of the frame that represents the clip.

    "first" is frame 0 and "middle" is frame T // 2. "peak" is the frame that differs most from
    the first: each frame is turned grey, shrunk to 32x32 (area averaging) and compared with
    the first frame by mean absolute difference; the largest wins, the earliest on ties (so a
    static clip gives 0). Pass face crops instead of a path to measure the change on the face.
    """
    if choice not in FRAME_CHOICES:
        raise ValueError(f"frame choice must be one of {FRAME_CHOICES}, got {choice!r}")
    if isinstance(path_or_frames, np.ndarray):
        count = len(path_or_frames)
        if count == 0:
            raise ValueError("cannot choose a frame from an empty clip")
        chunks: Iterator[np.ndarray] = iter([path_or_frames])
    else:
        count = video_info(path_or_frames).num_frames
        chunks = iter_frame_chunks(path_or_frames)
    if choice == "first":
        return 0
    if choice == "middle":
        return count // 2
    return _peak_index(chunks)


def read_frame(path: str | Path, choice: str) -> np.ndarray:
    """The representative frame (see `choose_frame_index`) as uint8 [H,W,3]."""
    return read_frames(path, [choose_frame_index(path, choice)])[0]


def grey_thumbnails(frames: np.ndarray, size: int = PEAK_THUMB_SIZE) -> np.ndarray:
    """float32 [T,size,size] grey frames, area-averaged; the representation "peak" compares."""
    grey = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.stack([cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA) for g in grey])


def _peak_index(chunks: Iterator[np.ndarray]) -> int:
    reference = None
    best_index, best_score, offset = 0, -1.0, 0
    for chunk in chunks:
        thumbs = grey_thumbnails(chunk)
        if reference is None:
            reference = thumbs[0]
        scores = np.abs(thumbs - reference).mean(axis=(1, 2))
        local = int(np.argmax(scores))
        if scores[local] > best_score:
            best_index, best_score = offset + local, float(scores[local])
        offset += len(chunk)
    return best_index


def load_frame(path: str | Path, choice: str) -> np.ndarray:
    """A clip's frame as RGB uint8 [H, W, 3]: an image file (`IMAGE_SUFFIXES`) as it is, a video's
    `choice` frame (`read_frame`). Datasets and the EVA cache builder read frames through this."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return decode_image(path.read_bytes(), str(path))
    return read_frame(path, choice)


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Encoded JPEG / PNG bytes -> RGB uint8 [H, W, 3]; `where` names the source in the error."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(where, "cannot decode the image (corrupt or not a JPEG/PNG file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------------------------
# audio
# --------------------------------------------------------------------------------------------

# MP3 encoders put this many samples of silence in front (LAME: 576 encoder + 529 decoder delay).
# FFmpeg removes them when the container says so (.mp3 files with a LAME header, Matroska's codec
# delay); an MP3 track in AVI says nothing, so they are removed here.
MP3_DELAY_SAMPLES = 1105


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """The soundtrack as float32 mono at `sample_rate`.

    Several channels are mixed by FFmpeg's resampler, which for stereo gives (L + R) / sqrt(2),
    not the mean; the audio encoder normalises every utterance, so the scale does not matter.
    Samples the container marks as before the start (encoder delay) are dropped, and so is the
    MP3 encoder delay in AVI files, which no container field marks. Lossless tracks (PCM, as in
    our .avi) come back sample-exact. Lossy codecs pad the end: AAC rounds up to whole
    1024-sample frames, so expect up to ~2048 extra samples (0.13 s at 16 kHz), harmless for
    mean-pooled features.
    """
    path = _existing_file(path)
    with _open_av(path) as container:
        if not container.streams.audio:
            raise NoAudioError(path)
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        pieces: list[np.ndarray] = []
        skip_seconds = None
        try:
            for frame in container.decode(stream):
                if skip_seconds is None:
                    skip_seconds = _leading_delay_seconds(container, stream, frame)
                pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except av.error.FFmpegError as err:
            if not pieces:
                raise MediaError(path, f"audio track cannot be decoded ({err})", _CORRUPT_FIX) from None
            # a damaged tail: keep what decoded, like the video path does
    if not pieces:
        raise MediaError(path, "audio track holds no samples", _CORRUPT_FIX)
    waveform = np.concatenate(pieces).astype(np.float32, copy=False)
    skip = int(round((skip_seconds or 0.0) * sample_rate))
    return waveform[skip:] if 0 < skip < len(waveform) else waveform


def _leading_delay_seconds(container, stream, first_frame) -> float:
    """Seconds of encoder delay at the start of an audio track that FFmpeg did not remove."""
    if first_frame.pts is not None and first_frame.pts < 0 and first_frame.time_base:
        return float(-first_frame.pts * first_frame.time_base)  # marked by the container (Matroska)
    is_mp3 = stream.codec_context.name in ("mp3", "mp3float")
    if is_mp3 and "avi" in container.format.name and not first_frame.pts and first_frame.sample_rate:
        return MP3_DELAY_SAMPLES / first_frame.sample_rate
    return 0.0


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found", "Check the path and the file name")
    if os.path.getsize(path) == 0:
        raise MediaError(path, "the file is empty (0 bytes)", _CORRUPT_FIX)
    return path


def _text_start(path: Path) -> str | None:
    """The first line of `path` when the file is plain text (a transcript, a list, an HTML error
    page saved as .mp4), else None: such a file is not a damaged video and needs another fix."""
    head = path.read_bytes()[:512] if path.stat().st_size < 2**31 else b""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = all(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return (text.strip().splitlines() or [""])[0][:60] if printable and text.strip() else None


def _open_av(path: Path):
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        text = _text_start(path)
        if text is not None:
            raise MediaError(path, f"this is a text file, not a video (it starts with {text!r})",
                             "Give the video file itself (.mp4, .avi, .mkv, .webm, .mov)") from None
        reason = getattr(err, "strerror", None) or str(err)  # without FFmpeg's raw errno and the path
        raise MediaError(path, f"not a readable media file ({reason})", _CORRUPT_FIX) from None


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise MediaError(path, "the file has no video track", "pass a video file, not an audio-only file")
    return container.streams.video[0]


def _open_decord(path: Path):
    """A decord VideoReader, or None when decord cannot open or index the file."""
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        if len(reader) == 0:
            return None
        reader[0]  # some damaged files open but fail on the first read
        reader.seek(0)
        return reader
    except Exception:  # decord raises DECORDError, RuntimeError or IndexError; PyAV will explain
        return None


def _decode_all_with_av(path: Path) -> np.ndarray:
    frames: list[np.ndarray] = []
    with _open_av(path) as container:
        stream = _video_stream(container, path)
        try:
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as err:
            if not frames:
                raise MediaError(path, f"no decodable video frames ({err})", _CORRUPT_FIX) from None
    if not frames:
        raise MediaError(path, "no decodable video frames", _CORRUPT_FIX)
    return np.stack(frames)


def _declared_video_seconds(container, stream) -> float | None:
    """How long the header says the video track is; None when it does not say."""
    fps = float(stream.average_rate or 0.0)
    if stream.frames and fps > 0:
        return stream.frames / fps
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION")  # Matroska / WebM keep per-track durations as tags
    if tag:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if container.duration and not container.streams.audio:
        return container.duration / av.time_base
    return None


def _check_not_truncated(path: Path, num_frames: int, fps: float, declared_seconds: float | None) -> None:
    """Raise when far fewer frames decode than the header promises (a cut-off download)."""
    if declared_seconds is None or fps <= 0:
        return
    declared_frames = declared_seconds * fps
    if num_frames < 0.9 * declared_frames - 2:
        raise MediaError(path, f"truncated: the header declares {declared_seconds:.2f} s "
                               f"(~{declared_frames:.0f} frames) but only {num_frames} frames decode",
                         _CORRUPT_FIX)


def _check_indices(path: Path, indices: Sequence[int], count: int) -> None:
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise MediaError(path, f"frame indices {bad[:5]} out of range for {count} frames")


def _empty_frames(reader) -> np.ndarray:
    height, width = reader[0].shape[:2]
    return np.zeros((0, height, width, 3), dtype=np.uint8)
