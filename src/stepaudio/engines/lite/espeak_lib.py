"""A ctypes binding to the libespeak-ng shipped in the `espeakng-loader` wheel (no system package needed).

libespeak-ng keeps one global state per process (voice, rate, pitch, callback), so the library is opened
once (`open_espeak` is cached) and every synthesis runs under its lock, setting all parameters each time.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stepaudio.errors import MissingExtraError, StepAudioError

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
CHARS_UTF8 = 1
END_PAUSE = 0x1000
RATE, VOLUME, PITCH, RANGE = 1, 2, 3, 4
# espeak_TextToPhonemes mode: IPA (bit 1) with '^' tying the letters of one phoneme (bit 7, tie in bits 8-23)
PHONEMES_IPA_TIED = 0x02 | 0x80 | (ord("^") << 8)
DEFAULT_RATE = 175  # words per minute, espeak's default

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _VoiceStruct(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


@dataclass(frozen=True)
class EspeakVoiceInfo:
    name: str
    language: str  # the first language code, e.g. "cmn", "yue", "en-us"
    identifier: str


class EspeakLibrary:
    """The process-wide libespeak-ng: synthesize text to float32 samples at `sample_rate`."""

    def __init__(self, library_path: str, data_path: str) -> None:
        self._lib = ctypes.CDLL(library_path)
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        # espeak wants the directory that contains espeak-ng-data
        root = data_path.rsplit("/espeak-ng-data", 1)[0]
        rate = self._lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, root.encode(), 0)
        if rate <= 0:
            raise StepAudioError(f"espeak-ng failed to initialise with data at {data_path}")
        self.sample_rate = int(rate)
        self.lock = threading.Lock()
        self._voices: tuple[EspeakVoiceInfo, ...] | None = None
        self._pieces: list[np.ndarray] = []
        self._abort: Callable[[], bool] = lambda: False
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def voices(self) -> list[EspeakVoiceInfo]:
        """The installed voices, listed once: the C listing is not thread-safe (concurrent calls abort)."""
        with self.lock:
            if self._voices is None:
                self._voices = self._list_voices()
            return list(self._voices)

    def _list_voices(self) -> tuple[EspeakVoiceInfo, ...]:
        listing = self._lib.espeak_ListVoices(None)
        found = []
        index = 0
        while listing[index]:
            voice = listing[index].contents
            languages = voice.languages or b""
            code = languages[1:].split(b"\0", 1)[0].decode(errors="replace")  # first byte is a priority
            found.append(EspeakVoiceInfo(voice.name.decode(errors="replace"), code,
                                         (voice.identifier or b"").decode(errors="replace")))
            index += 1
        return tuple(found)

    def synthesize(
        self, text: str, voice: str, rate: int = DEFAULT_RATE, pitch: int = 50, abort: Callable[[], bool] | None = None
    ) -> np.ndarray:
        """Speak `text` with espeak voice `voice` (e.g. 'cmn', 'yue', 'en-us+f3'); rate in wpm, pitch 0-99."""
        with self.lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise StepAudioError(f"espeak-ng has no voice {voice!r}")
            self._lib.espeak_SetParameter(RATE, int(max(80, min(450, rate))), 0)
            self._lib.espeak_SetParameter(PITCH, int(max(0, min(99, pitch))), 0)
            self._pieces = []
            self._abort = abort or (lambda: False)
            data = text.encode("utf-8") + b"\0"
            status = self._lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8 | END_PAUSE, None, None)
            self._lib.espeak_Synchronize()
            pieces, self._pieces = self._pieces, []
        if status != 0:
            raise StepAudioError(f"espeak-ng synthesis failed with status {status}")
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return (np.concatenate(pieces).astype(np.float32) / 32768.0).clip(-1.0, 1.0)

    def phonemes(self, text: str, voice: str) -> list[str]:
        """IPA of `text` in espeak voice `voice`, one string per clause (espeak drops the punctuation), with '^'
        tying multi-letter phonemes ('a^ɪ'): the G2P behind Kokoro's English."""
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        clauses = []
        with self.lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise StepAudioError(f"espeak-ng has no voice {voice!r}")
            while pointer.value:
                result = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), CHARS_UTF8, PHONEMES_IPA_TIED)
                clauses.append((result or b"").decode("utf-8", errors="replace").strip())
        return [clause for clause in clauses if clause]

    def _on_audio(self, samples: ctypes._Pointer[ctypes.c_short], count: int, _events: int) -> int:
        if samples and count > 0:
            self._pieces.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 1 if self._abort() else 0


@functools.lru_cache(maxsize=1)
def open_espeak() -> EspeakLibrary:
    """The bundled library, opened once per process (libespeak-ng state is global)."""
    try:
        import espeakng_loader
    except ImportError as exc:
        raise MissingExtraError("lite", "espeakng_loader") from exc
    return EspeakLibrary(espeakng_loader.get_library_path(), espeakng_loader.get_data_path())
