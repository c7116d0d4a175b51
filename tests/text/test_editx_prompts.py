from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stepaudio.errors import OptionError
from stepaudio.lm.sampling import ban_repeated_last
from stepaudio.text.editx_prompts import (
    CLONE_SYSTEM_TEMPLATE,
    EDIT_OPTIONS,
    EDIT_SYSTEM_PROMPT,
    Edit,
    audio_token_string,
    build_clone_prompt,
    build_edit_prompt,
    clone_system_prompt,
    clone_voice_id,
    edit_instruction,
)
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.tokenizer.interleave import AudioCodes

from .conftest import load_json


@pytest.fixture(scope="session")
def editx(conformance_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = load_json(conformance_dir / "editx" / "prompts.json")
    return data


def _ids(case: dict[str, Any]) -> list[int]:
    return AudioCodes(vq02=tuple(case["inputs"]["vq02"]), vq06=tuple(case["inputs"]["vq06"])).lm_ids()


@pytest.mark.conformance
def test_fixed_texts_and_options_are_the_releases(editx: dict[str, Any]) -> None:
    assert editx["system_prompts"]["clone_template"] == CLONE_SYSTEM_TEMPLATE
    assert editx["system_prompts"]["edit"] == EDIT_SYSTEM_PROMPT
    release = {k: tuple(v) for k, v in editx["edit_options"].items() if k != "clone"}
    assert release == dict(EDIT_OPTIONS)


@pytest.mark.conformance
def test_builder_pieces(editx: dict[str, Any], step_tokenizer: StepTokenizer) -> None:
    for call, ids in editx["builder_pieces"].items():
        argument = call[len("encode('") : -len("')")].encode().decode("unicode_escape")
        assert step_tokenizer.encode(argument) == ids


@pytest.mark.conformance
def test_every_case_gives_the_reference_ids(editx: dict[str, Any], step_tokenizer: StepTokenizer) -> None:
    assert editx["cases"]
    for case in editx["cases"]:
        inputs, name = case["inputs"], case["name"]
        code = _ids(case)
        assert code == case["prompt_code"], name
        assert audio_token_string(code) == case["audio_token_str"], name
        if case["task"] == "clone":
            assert clone_system_prompt(inputs["speaker"], inputs["prompt_text"], code) == case["system_prompt"], name
            ids = build_clone_prompt(step_tokenizer, target_text=inputs["target_text"],
                                     prompt_text=inputs["prompt_text"], speaker=inputs["speaker"],
                                     prompt_audio_ids=code)
        else:
            instruction = edit_instruction(inputs["audio_text"], case["edit_type"], case["edit_info"], inputs["text"])
            assert instruction == case["instruction"], name
            assert case["system_prompt"] == EDIT_SYSTEM_PROMPT, name
            ids = build_edit_prompt(step_tokenizer, instruction=instruction, prompt_audio_ids=code)
        assert ids == case["input_ids"], name
        assert len(ids) == case["num_tokens"], name


@pytest.mark.conformance
def test_edit_objects_give_the_same_instructions(editx: dict[str, Any]) -> None:
    for case in editx["cases"]:
        if case["task"] != "edit":
            continue
        inputs = case["inputs"]
        new_text = inputs["text"] if case["edit_type"] == "paralinguistic" else None
        edit = Edit(case["edit_type"], case["edit_info"], new_text)
        assert edit.instruction(inputs["audio_text"]) == case["instruction"], case["name"]


@pytest.mark.conformance
def test_chained_edit_reads_the_previous_result_text(editx: dict[str, Any]) -> None:
    cases = {case["name"]: case for case in editx["cases"]}
    chained = [case for case in editx["cases"] if case["inputs"].get("chained_from")]
    assert chained
    for case in chained:
        previous = cases[case["inputs"]["chained_from"]]
        new_text = previous["inputs"]["text"] if previous["edit_type"] == "paralinguistic" else None
        edit = Edit(previous["edit_type"], previous["edit_info"], new_text)
        assert edit.result_text(previous["inputs"]["audio_text"]) == case["inputs"]["audio_text"]


@pytest.mark.conformance
def test_clone_voice_ids(editx: dict[str, Any]) -> None:
    for case in editx["voice_id_cases"]:
        samples = np.asarray(case["samples_int16"], dtype=np.float32) / 32768
        assert samples.shape == (case["channels"], case["num_samples"])
        assert clone_voice_id(case["prompt_text"], samples) == case["voice_id"]
    by_case = [c for c in editx["cases"] if "speaker_from_voice_id_case" in c["inputs"]]
    for case in by_case:
        assert case["inputs"]["speaker"] == editx["voice_id_cases"][case["inputs"]["speaker_from_voice_id_case"]][
            "voice_id"]


@pytest.mark.conformance
def test_repetition_rule_is_the_samplers(editx: dict[str, Any]) -> None:
    vocab = editx["repetition_cases"]["vocab_size"]
    for case in editx["repetition_cases"]["cases"]:
        logits = ban_repeated_last(torch.zeros(1, vocab), torch.tensor([case["input_ids"]]))
        assert sorted(torch.nonzero(torch.isinf(logits[0])).flatten().tolist()) == sorted(case["banned"])


def test_edit_checks_types_and_options() -> None:
    with pytest.raises(OptionError, match="unknown edit type"):
        Edit("clone")
    with pytest.raises(OptionError, match="happy"):
        Edit("emotion", "ecstatic")
    with pytest.raises(OptionError, match="takes no option"):
        Edit("denoise", "hard")
    with pytest.raises(OptionError, match="new text"):
        Edit("paralinguistic")
    with pytest.raises(OptionError, match="unsupported edit type"):
        edit_instruction("x", "pitch", "up")
    assert Edit("speed", "more faster").instruction("hi").startswith("Make the following audio more more faster.")
    assert Edit("style", "whisper").label == "style:whisper"
    assert Edit("vad").result_text("said") == "said"


def test_audio_string_refuses_text_ids() -> None:
    with pytest.raises(ValueError, match="not an <audio_N>"):
        audio_token_string([65536, 42])
