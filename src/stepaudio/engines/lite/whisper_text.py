"""Whisper's text around the model: language names to Whisper codes, the languages detection chooses among, the
Mandarin prompt and its echoes, the language a text is written in, joining segments, and the words a decode
repeats from its context (the stream decodes a little before its cut).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from stepaudio.text.scripts import east_asian_language

# Whisper writes Mandarin in traditional or simplified characters at random. With `opencc` installed (as
# stepaudio.text.metrics uses it) the text is converted to simplified; without it, a simplified prompt
# steers the decoder instead, which costs accuracy (round trip of espeak's formant Mandarin: CER 23% converted vs
# 32% prompted).
INITIAL_PROMPTS = {"zh": "以下是普通话的句子。"}
# Step's dialect names -> Whisper language codes. Whisper base hallucinates on "yue"; Cantonese is decoded as zh.
LANGUAGE_CODES = {"cmn": "zh", "mandarin": "zh", "chinese": "zh", "zh-cn": "zh", "yue": "zh", "cantonese": "zh",
                  "english": "en", "japanese": "ja", "korean": "ko"}


# What detection chooses among by default: the languages Step-Audio and the lite engine's voices speak (Cantonese
# is decoded as zh, see LANGUAGE_CODES).
SPOKEN_LANGUAGES = ("zh", "en", "ja", "ko")


def repeated_words(tokenizer: Any, context: list[int], words: list[list[int]], most: int = 5) -> int:
    """How many leading `words` repeat the last words of `context` (decoding starts a little before the cut, so
    the end of the last final word may be heard again); compared without case and punctuation."""
    if not context or not words:
        return 0
    said = [_plain(tokenizer.decode(w)) for w in tokenizer.split_to_word_tokens(context)[1][-most:]]
    heard = [_plain(tokenizer.decode(w)) for w in words[:most]]
    said, heard = [w for w in said if w], heard
    for n in range(min(len(said), len(heard)), 0, -1):
        if [w for w in heard[:n] if w] == said[-n:] and heard[n - 1]:
            return n
    return 0


def _plain(word: str) -> str:
    return re.sub(r"[^\w]", "", word.lower())


def normalize_language(language: str | None) -> str | None:
    if not language or language.lower() == "auto":
        return None
    key = language.lower()
    return LANGUAGE_CODES.get(key, key.split("-")[0])


def simplifier() -> Callable[[str], str] | None:
    try:
        import opencc
    except ImportError:
        return None
    converter = opencc.OpenCC("t2s")
    return lambda text: str(converter.convert(text))


def language_of(text: str) -> str | None:
    script = east_asian_language(text)
    if script is not None:
        return script
    letters = [ch for ch in text if ch.isalpha()]
    return "en" if letters and all(ch.isascii() for ch in letters) else None


def without_prompt(text: str, prompt: str | None) -> str:
    """Whisper sometimes repeats its initial prompt when it hears nothing it knows: drop the echo."""
    if not prompt:
        return text
    core = prompt.rstrip("。.")
    for size in range(len(core), 3, -1):  # the whole prompt or its first words
        if core[:size] in text:
            return text.replace(core[:size], "").strip(" ，,。")
    return text


def join_texts(texts: list[str], language: str | None) -> str:
    separator = "" if language in ("zh", "ja", "yue") else " "
    return separator.join(t for t in texts if t).strip()
