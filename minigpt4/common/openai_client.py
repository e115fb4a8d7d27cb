"""One small client for OpenAI-compatible HTTP endpoints (vLLM, Ollama, LM Studio, hosted APIs).

Used by the EMER judge (`minigpt4.eval.judge`) and by the MERR builder (`minigpt4.merr`). It
speaks three requests with the standard library only:

- ``POST {url}/chat/completions`` with text, an image (``image_url`` data URL) or audio
  (``input_audio`` part, base64 WAV) in the user message;
- ``POST {url}/audio/transcriptions`` (multipart upload of a WAV file).

Transient failures (timeouts, refused connections, HTTP 408/409/429/5xx, malformed JSON) are
retried with exponential backoff; other HTTP errors fail at once because retrying a bad key or
model name only wastes time. A semaphore caps how many requests are in flight, so a thread pool
can call the same client. Replies are cached in a JSONL file keyed by the sha256 of the request
(endpoint, model and the whole body, images and audio included), so a re-run costs nothing.

The API key is read from an environment variable whose *name* is configured
(``api_key_env``); the key itself is only ever put in the Authorization header, never in a
config, the cache, error messages or logs. Redirects are never followed: a 3xx reply is an error
naming where it pointed (following one would carry the key to another server and turn the POST
into a GET). ``timeout_s`` bounds the whole request (connect, send, headers and body), not each
socket read, so a server that trickles its reply one byte at a time is cut at the deadline.
Proxies come from the usual ``HTTP(S)_PROXY`` / ``NO_PROXY`` variables, as in urllib.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

RETRY_STATUS = (408, 409, 429)


class EndpointError(RuntimeError):
    """The endpoint kept failing after the retries (or cannot be used at all: `EndpointConfigError`)."""


class EndpointConfigError(EndpointError):
    """The endpoint refuses the request (bad URL, key or model): retrying or moving on to the
    next item cannot help, so batch jobs stop on it instead of failing every item the same way."""


@dataclass
class EndpointConfig:
    """Where one OpenAI-compatible endpoint is and how to talk to it."""

    url: str = ""  # base URL, e.g. http://localhost:8000/v1 (a full .../chat/completions URL also works)
    model: str = ""  # model name the server knows
    api_key_env: str = "OPENAI_API_KEY"  # NAME of the environment variable holding the key ("" = no key)
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 2.0  # waits backoff_s * 2**attempt between tries
    concurrency: int = 4  # requests in flight at once
    max_tokens: int = 512
    temperature: float = 0.0

    BOUNDS: ClassVar[dict[str, str]] = {  # checked when a config file is loaded (common.config.check_bounds)
        "timeout_s": ">0", "max_retries": ">=0", "backoff_s": ">=0", "concurrency": ">0", "max_tokens": ">0",
        "temperature": ">=0"}


def base_url(url: str) -> str:
    """``http://host/v1`` from a base URL or from a full endpoint URL."""
    url = url.rstrip("/")
    for suffix in ("/chat/completions", "/audio/transcriptions"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def image_part(jpeg_bytes: bytes) -> dict[str, Any]:
    """A chat content part carrying a JPEG image as a data URL (what vLLM / Ollama / OpenAI accept)."""
    return {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes).decode()}}


def audio_part(wav_bytes: bytes) -> dict[str, Any]:
    """A chat content part carrying WAV audio (OpenAI's ``input_audio``; vLLM serves it for audio models)."""
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_bytes).decode(), "format": "wav"}}


def wav_bytes(waveform, sample_rate: int = 16000) -> bytes:
    """16-bit mono WAV of a float waveform in [-1, 1]."""
    import wave

    import numpy as np

    pcm = (np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


class OpenAIClient:
    """Chat and transcription requests with retries, a concurrency cap and an on-disk cache.

    `name` and `hint` only shape error messages ("judge at URL answered HTTP 401 (...); hint").
    `cache_path` may be empty for no on-disk cache. `sleep` is injectable so tests need not wait.
    """

    def __init__(self, cfg: EndpointConfig, cache_path: str | Path | None = None, name: str = "endpoint",
                 hint: str = "check the URL, the model name and the API key variable",
                 env: Mapping[str, str] | None = None, sleep: Callable[[float], None] = time.sleep):
        if not cfg.url or not cfg.model:
            raise EndpointConfigError(f"{name}: needs both a url (e.g. http://localhost:8000/v1) and a model name")
        env = os.environ if env is None else env
        self.cfg = cfg
        self.name = name
        self.hint = hint
        self.base = base_url(cfg.url)
        self._api_key = env.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        self.sleep = sleep
        self.n_requests = 0  # HTTP requests actually sent (retries included)
        self._slots = threading.BoundedSemaphore(max(1, cfg.concurrency))
        self._lock = threading.Lock()
        self.cache_path = Path(cache_path) if cache_path else None
        self._cache = self._load_cache()

    # ---- public requests ----------------------------------------------------------------

    def chat(self, messages: list[dict[str, Any]], max_tokens: int | None = None,
             sampling: Mapping[str, Any] | None = None) -> str:
        """The assistant's reply text for `messages` (cached). `sampling` adds or overrides body
        fields such as ``temperature``, ``top_p``, ``repetition_penalty`` (vLLM reads it)."""
        body = {"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature,
                "max_tokens": max_tokens or self.cfg.max_tokens, **(sampling or {})}
        return self.cached("chat/completions", body, lambda: self._chat_reply(body))

    def transcribe(self, wav: bytes, language: str = "") -> str:
        """The text of a WAV file from ``/audio/transcriptions`` (cached by the audio's hash)."""
        fields = {"model": self.cfg.model, "response_format": "json"}
        if language:
            fields["language"] = language
        key_body = {**fields, "audio_sha256": hashlib.sha256(wav).hexdigest()}
        return self.cached("audio/transcriptions", key_body, lambda: self._transcription(fields, wav))

    # ---- cache --------------------------------------------------------------------------

    def cache_key(self, endpoint: str, body: Mapping[str, Any]) -> str:
        material = json.dumps([endpoint, body], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

    def cached(self, endpoint: str, body: Mapping[str, Any], compute: Callable[[], str]) -> str:
        key = self.cache_key(endpoint, body)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        reply = compute()
        with self._lock:
            self._cache[key] = reply
            if self.cache_path is not None:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                with self.cache_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"key": key, "endpoint": endpoint, "model": self.cfg.model, "reply": reply},
                                        ensure_ascii=False) + "\n")
        return reply

    def cached_reply(self, key: str) -> str | None:
        """The cached reply stored under `key`, or None (for callers whose older caches used
        their own keys, e.g. the EMER judge's)."""
        with self._lock:
            return self._cache.get(key)

    def _load_cache(self) -> dict[str, str]:
        """Read the JSONL cache. A last line without its newline is an append cut short by a
        killed run: it is dropped from the file (that request is simply made again), so the next
        append starts on a line of its own. Any other line that is not an entry is an error."""
        cache: dict[str, str] = {}
        if self.cache_path is None or not self.cache_path.exists():
            return cache
        data = self.cache_path.read_bytes()
        *lines, partial = data.split(b"\n")  # bytes, newlines only: a cut may split a character
        if partial:
            with self.cache_path.open("r+b") as fh:
                fh.truncate(len(data) - len(partial))
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line.decode("utf-8"))
                cache[entry["key"]] = entry["reply"]
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
                raise EndpointError(f"{self.cache_path}:{lineno}: not a cache entry; delete the line or the file") from None
        return cache

    # ---- HTTP ---------------------------------------------------------------------------

    def _chat_reply(self, body: Mapping[str, Any]) -> str:
        payload = self.post(f"{self.base}/chat/completions", json.dumps(body).encode(), "application/json")
        try:
            return payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"{self.name} at {self.base} sent a reply without choices[0].message.content") from None

    def _transcription(self, fields: Mapping[str, str], wav: bytes) -> str:
        boundary = uuid.uuid4().hex
        parts = []
        for key, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="audio.wav"\r\n'
                     f"Content-Type: audio/wav\r\n\r\n".encode() + wav + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        payload = self.post(f"{self.base}/audio/transcriptions", b"".join(parts),
                            f"multipart/form-data; boundary={boundary}")
        if not isinstance(payload, dict) or "text" not in payload:
            raise EndpointError(f"{self.name} at {self.base} sent a transcription without a 'text' field")
        return str(payload["text"]).strip()

    def post(self, url: str, data: bytes, content_type: str) -> Any:
        """POST with retries and backoff inside the concurrency cap; the decoded JSON reply."""
        headers = {"Content-Type": content_type}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last_error = ""
        attempts = self.cfg.max_retries + 1
        for attempt in range(attempts):
            if attempt:
                self.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            with self._lock:
                self.n_requests += 1
            try:
                with self._slots:
                    status, reason, location, body = send_request(url, data, headers, self.cfg.timeout_s)
            except (OSError, http.client.HTTPException) as err:  # timeouts, refused or cut connections
                last_error = f"{type(err).__name__}: {err}"
                continue
            if 300 <= status < 400:
                raise EndpointConfigError(
                    f"{self.name} at {url} answered HTTP {status} redirecting to {location or '(no Location)'}; "
                    "redirects are not followed (the API key must not travel to another address): "
                    "set the url to the final address") from None
            if status >= 400:
                if status not in RETRY_STATUS and status < 500:
                    raise EndpointConfigError(f"{self.name} at {url} answered HTTP {status} ({reason}); {self.hint}") from None
                last_error = f"HTTP {status}"
                continue
            try:
                return json.loads(body.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                last_error = f"malformed response ({type(err).__name__}: {err})"
        raise EndpointError(f"{self.name} at {url} failed {attempts} times; last error: {last_error}")


def send_request(url: str, data: bytes, headers: Mapping[str, str], timeout_s: float) -> tuple[int, str, str, bytes]:
    """One POST, finished within `timeout_s` seconds in all: (status, reason, Location header, body).

    Redirects are returned, not followed. A timer shuts the socket at the deadline, so neither a
    silent server nor one that trickles its headers or body can hold the request longer;
    `TimeoutError` says so. Connection problems raise `OSError` / `http.client.HTTPException`.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointConfigError(f"{url}: not an http(s) URL")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and urllib.request.proxy_bypass(parts.hostname):
        proxy = None
    connection_class = http.client.HTTPSConnection if https else http.client.HTTPConnection
    if proxy:  # http: the proxy gets the absolute URL; https: a CONNECT tunnel, the key stays encrypted
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        conn = connection_class(proxy_parts.hostname, proxy_parts.port or 8080, timeout=timeout_s)
        if https:
            conn.set_tunnel(parts.hostname, port)
        else:
            path = url
    else:
        conn = connection_class(parts.hostname, port, timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        if conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(timeout_s, cut)
    timer.daemon = True
    timer.start()
    try:
        conn.request("POST", path, body=data, headers=dict(headers))
        resp = conn.getresponse()
        chunks = []
        while chunk := resp.read1(1 << 16):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete reply within {timeout_s:g} s")
        body = b"".join(chunks)
        if expired.is_set():
            raise TimeoutError(f"no complete reply within {timeout_s:g} s")
        return resp.status, resp.reason, resp.getheader("Location", ""), body
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise TimeoutError(f"no complete reply within {timeout_s:g} s") from None
        raise
    finally:
        timer.cancel()
        conn.close()
