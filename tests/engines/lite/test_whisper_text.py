"""Whisper's text around the model: language codes and the Mandarin prompt's echoes."""

from __future__ import annotations

from stepaudio.engines.lite.whisper_text import INITIAL_PROMPTS, normalize_language, without_prompt


def test_language_names_map_to_whisper_codes() -> None:
    assert normalize_language("cantonese") == "zh"
    assert normalize_language("en-US") == "en"
    assert normalize_language("auto") is None and normalize_language(None) is None


def test_echoes_of_the_mandarin_prompt_are_dropped() -> None:
    prompt = INITIAL_PROMPTS["zh"]
    assert without_prompt("以下是普通话。", prompt) == ""
    assert without_prompt(prompt, prompt) == ""
    assert without_prompt("今天天气很好。", prompt) == "今天天气很好。"
    assert without_prompt("hello", None) == "hello"
