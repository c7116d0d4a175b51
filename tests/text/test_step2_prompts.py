"""Step-Audio 2 prompts against the reference's `apply_chat_template` output (conformance/step-audio2/prompts.json)
and against the prompt ids of the LLM conformance vectors, with the conformance's toy tokenizer and with the
`tokenizers` format the release ships."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from stepaudio.audio_encoder.frontend import PIECE_SAMPLES, SAMPLE_RATE, mel_frames, placeholder_count
from stepaudio.engines.step2.tokenizer import Step2Tokenizer
from stepaudio.testing.tiny_step2 import tiny_step2_tokenizer
from stepaudio.text.step2_prompts import (
    Audio,
    Item,
    Segment,
    Tokens,
    Turn,
    audio_block,
    joined_text,
    prompt_ids,
    render,
    render_base,
    think_prefill,
    tools_content,
)

CASES = ("asr", "s2tt", "text_chat", "text_to_speech_reply", "speech_chat_s2st", "multi_turn_history",
         "tool_call_round1", "tool_call_round2", "long_audio_chunking", "think", "base_asr", "base_tts")


@pytest.fixture(scope="module")
def prompts(conformance_dir: Path) -> dict[str, Any]:
    return dict(json.loads((conformance_dir / "step-audio2" / "prompts.json").read_text(encoding="utf-8")))


def _frames(seconds: float) -> list[int]:
    samples = round(seconds * SAMPLE_RATE)
    return [mel_frames(min(PIECE_SAMPLES, samples - start)) for start in range(0, samples, PIECE_SAMPLES)]


def _item(raw: Any, durations: dict[str, float]) -> Item:
    if isinstance(raw, str):
        return raw
    if raw["type"] == "text":
        return str(raw["text"])
    if raw["type"] == "audio":
        return Audio(tuple(placeholder_count(f) for f in _frames(durations[raw["audio"]])))
    return Tokens(tuple(raw["token"]))


def _turns(messages: list[dict[str, Any]], durations: dict[str, float]) -> list[Turn]:
    turns = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = tuple(_item(raw, durations) for raw in content)
        turns.append(Turn(message["role"], content, message.get("eot", True)))
    return turns


def _render(case: dict[str, Any], durations: dict[str, float]) -> list[Segment]:
    if case["class"] == "StepAudio2Base":
        return render_base([_item(raw, durations) for raw in case["messages"]])
    return render(_turns(case["messages"], durations))


def _expected(case: dict[str, Any]) -> list[Segment]:
    return [s if isinstance(s, str) else tuple(s["token_list"]) for s in case["segments"]]


def toy_encoder(special_ids: dict[str, int]) -> Callable[[str], list[int]]:
    """The conformance's toy tokenizer: specials by their ids, every other character as its UTF-8 bytes."""
    pattern = re.compile("(" + "|".join(re.escape(s) for s in sorted(special_ids, key=len, reverse=True)) + ")")

    def encode(text: str) -> list[int]:
        ids: list[int] = []
        for part in pattern.split(text):
            ids.extend([special_ids[part]] if part in special_ids else list(part.encode("utf-8")))
        return ids

    return encode


@pytest.mark.conformance
@pytest.mark.parametrize("name", CASES)
def test_segments_are_the_reference_template(prompts: dict[str, Any], name: str) -> None:
    case = prompts[name]
    assert _render(case, prompts["audio_durations_s"]) == _expected(case)
    if all(isinstance(s, str) for s in _expected(case)):
        assert joined_text(_expected(case)) == case["prompt_text_joined"]


def _audio_names(case: dict[str, Any]) -> list[str]:
    items = case["messages"] if case["class"] == "StepAudio2Base" else [
        raw for m in case["messages"] if isinstance(m["content"], list) for raw in m["content"]]
    return [raw["audio"] for raw in items if isinstance(raw, dict) and raw["type"] == "audio"]


@pytest.mark.conformance
@pytest.mark.parametrize("name", CASES)
def test_placeholder_counts_follow_the_mel_frames(prompts: dict[str, Any], name: str) -> None:
    case = prompts[name]
    frames = [f for audio in _audio_names(case) for f in _frames(prompts["audio_durations_s"][audio])]
    assert frames == case["mel_frames"]
    assert [f - 2 for f in frames] == case["padding_mels_lens"]
    assert [placeholder_count(f) for f in frames] == case["audio_patch_counts"]


@pytest.mark.conformance
@pytest.mark.parametrize("name", CASES)
def test_ids_with_the_tokenizers_format_match_the_toy_tokenizer(prompts: dict[str, Any], name: str) -> None:
    """The tiny release tokenizer (byte-level BPE, byte b = id b) encodes each segment as the toy tokenizer
    with the same special ids does; every special is one id; the ids decode back to the prompt."""
    tokenizer = Step2Tokenizer(tiny_step2_tokenizer())
    specials = {t: i for t in ("<|BOT|>", "<|EOT|>", "<audio_start>", "<audio_end>", "<audio_patch>",
                               "<tts_start>", "<tts_end>") if (i := tokenizer.token_id(t)) is not None}
    segments = _expected(prompts[name])
    ids = prompt_ids(segments, tokenizer.encode)
    assert ids == prompt_ids(segments, toy_encoder(specials))
    assert ids.count(specials["<|BOT|>"]) == sum(s.count("<|BOT|>") for s in segments if isinstance(s, str))
    if all(isinstance(s, str) for s in segments):
        assert tokenizer.decode(ids) == prompts[name]["prompt_text_joined"]


def _llm_case(conformance_dir: Path) -> tuple[list[int], dict[str, Any]]:
    folder = conformance_dir / "step-audio2" / "llm"
    meta = json.loads((folder / "meta.json").read_text())
    return load_file(folder / "vectors.safetensors")["inputs.input_ids"].tolist(), meta


def _llm_conversation(meta: dict[str, Any]) -> list[Turn]:
    patches = meta["n_audio_patch"]
    return [Turn("system", "You are a helpful assistant."), Turn("user", ("Hi ", Audio((patches,)))),
            Turn("assistant", None)]


@pytest.mark.conformance
def test_the_llm_vectors_prompt_is_rebuilt_id_for_id(conformance_dir: Path) -> None:
    """The LLM conformance prompt (system, a human turn with text and audio, the open assistant turn) with the
    toy tokenizer and with a `tokenizers` tokenizer holding the specials at the same ids."""
    expected, meta = _llm_case(conformance_dir)
    segments = render(_llm_conversation(meta))
    assert segments == meta["prompt_segments"]
    special_ids = meta["tiny_special_ids"]
    assert prompt_ids(segments, toy_encoder(special_ids)) == expected
    tokenizer = _tokenizers_with(special_ids)
    assert prompt_ids(segments, lambda text: tokenizer.encode(text).ids) == expected
    starts = [i for i, t in enumerate(expected) if t == special_ids["<audio_start>"]]
    assert [p + 1 for p in starts] == meta["audio_patch_positions"][:1]


def _tokenizers_with(special_ids: dict[str, int]) -> Any:
    """The release format (byte-level BPE + added tokens) with the specials at the given ids."""
    from tokenizers import AddedToken

    tokenizer = tiny_step2_tokenizer()
    tokenizer = type(tokenizer)(tokenizer.model)  # bytes only: the specials are re-added at other ids
    reference = tiny_step2_tokenizer()
    tokenizer.pre_tokenizer, tokenizer.decoder = reference.pre_tokenizer, reference.decoder
    by_id = {i: t for t, i in special_ids.items()}
    tokens = [by_id.get(i, f"<|filler_{i}|>") for i in range(256, max(by_id) + 1)]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens])
    assert all(tokenizer.token_to_id(t) == i for t, i in special_ids.items())
    return tokenizer


def test_user_is_written_human_and_open_turns_stay_open() -> None:
    turns = [Turn("user", "hi"), Turn("assistant", "<tts_start>", eot=False)]
    assert render(turns) == ["<|BOT|>human\nhi<|EOT|>", "<|BOT|>assistant\n<tts_start>"]
    assert render([Turn("user", ("a", Tokens((5, 6))), eot=False)]) == ["<|BOT|>human\n", "a", (5, 6)]


def test_audio_blocks_and_their_checks() -> None:
    assert audio_block(2) == "<audio_start><audio_patch><audio_patch><audio_end>"
    with pytest.raises(ValueError, match="at least one placeholder"):
        Audio((3, 0))
    with pytest.raises(ValueError, match="at least one placeholder"):
        Audio(())


def test_tools_are_declared_as_the_reference_writes_them(prompts: dict[str, Any]) -> None:
    declared = prompts["tool_call_round1"]["messages"][1]["content"]
    search = json.loads(declared)[0]["function"]
    assert tools_content([search]) == declared


def test_think_prefill_before_and_after_the_thinking() -> None:
    assert think_prefill() == "\n<think>\n"
    assert think_prefill("hmm") + "<tts_start>" == "\n<think>\nhmm</think>\n\n<tts_start>"
