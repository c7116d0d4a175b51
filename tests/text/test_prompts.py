from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepaudio.text.prompts import (
    build_chat_prompt,
    build_tts_prompt,
    builtin_speaker_key,
    chat_prompt_text,
    content_text,
    tts_system_prompt,
)
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.tokenizer.interleave import AudioCodes


def _codes(item: dict) -> AudioCodes:
    return AudioCodes(vq02=tuple(item["vq02"]), vq06=tuple(item["vq06"]))


@pytest.mark.conformance
def test_tts_prompts_match_reference(step_tokenizer: StepTokenizer, text_dir: Path) -> None:
    data = json.loads((text_dir / "tts_prompts.json").read_text(encoding="utf-8"))
    assert data["cases"]
    for case in data["cases"]:
        speaker = case["prompt_speaker_passed_to_tokenize"] or None
        prompt_code = _codes(case).lm_ids()
        assert prompt_code == case["prompt_code"], case["name"]
        assert tts_system_prompt(case["text"], speaker) == case["system_prompt"], case["name"]
        assert data["sys_prompt_dict"][case["system_prompt_key"]].replace("{}", speaker or "") == case["system_prompt"]
        ids = build_tts_prompt(
            step_tokenizer,
            text=case["text"],
            prompt_text=case["prompt_text"],
            prompt_audio_ids=prompt_code,
            speaker=speaker,
        )
        assert ids == case["input_ids"], case["name"]
        if case["mode"] == "builtin":
            assert builtin_speaker_key(case["speaker"], case["text"]) == case["speakers_info_key"]
            assert data["speakers_info"][case["speakers_info_key"]] == case["prompt_text"]


@pytest.mark.conformance
def test_builder_pieces(step_tokenizer: StepTokenizer, text_dir: Path) -> None:
    data = json.loads((text_dir / "tts_prompts.json").read_text(encoding="utf-8"))
    for call, ids in data["builder_pieces"].items():
        argument = call[len("encode('") : -len("')")].encode().decode("unicode_escape")
        assert step_tokenizer.encode(argument) == ids


@pytest.mark.conformance
def test_chat_prompts_match_reference(step_tokenizer: StepTokenizer, text_dir: Path) -> None:
    data = json.loads((text_dir / "chat_prompts.json").read_text(encoding="utf-8"))
    for case in data["cases"]:
        messages = []
        for message in case["messages"]:
            content = message["content"]
            if isinstance(content, dict) and content.get("type") == "audio":
                content = {"type": "audio", "audio_tokens": _codes(case["fake_audio_codes"][content["audio"]]).lm_ids()}
            messages.append({"role": message["role"], "content": content})
        assert chat_prompt_text(messages) == case["prompt_text"]
        assert build_chat_prompt(step_tokenizer, messages) == case["input_ids"]


def test_default_system_turn_only_when_missing() -> None:
    user = [{"role": "user", "content": "hi"}]
    assert chat_prompt_text(user, default_system="S").startswith("<|BOT|>system\nS<|EOT|><|BOT|>human\nhi")
    with_system = [{"role": "system", "content": "X"}, *user]
    assert chat_prompt_text(with_system, default_system="S").count("<|BOT|>system") == 1


def test_open_assistant_turn_is_not_doubled() -> None:
    text = chat_prompt_text([{"role": "user", "content": "a"}, {"role": "assistant", "content": None}])
    assert text == "<|BOT|>human\na<|EOT|><|BOT|>assistant\n"


def test_content_parts_and_errors() -> None:
    parts = [{"type": "text", "text": "x"}, {"type": "audio", "audio_tokens": [65536, 66560]}]
    assert content_text(parts) == "x<audio_0><audio_1024>"
    with pytest.raises(ValueError, match="tokenize the wav first"):
        content_text({"type": "audio", "audio": "file.wav"})
    with pytest.raises(ValueError, match="unsupported content part"):
        content_text({"type": "image"})
    with pytest.raises(ValueError, match="role"):
        chat_prompt_text([{"content": "x"}])


def test_system_prompt_selection_rules() -> None:
    assert "RAP" in tts_system_prompt("(RAP)yo", "Tingting")
    assert "哼唱" in tts_system_prompt("（RAP)我不会哼唱", None)
    assert "[Alice]" in tts_system_prompt("(高兴1)hi", "Alice")
    assert "[" not in tts_system_prompt("hi", None)


def test_tts_prompt_rejects_text_ids_as_audio(step_tokenizer: StepTokenizer) -> None:
    with pytest.raises(ValueError, match="not an <audio_N>"):
        build_tts_prompt(step_tokenizer, text="a", prompt_text="b", prompt_audio_ids=[5])
