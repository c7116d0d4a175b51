from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepaudio.tokenizer.interleave import (
    AudioCodes,
    audio_token_text,
    deinterleave,
    flow_to_lm,
    group_count,
    interleave,
    lm_to_flow,
    parse_audio_tokens,
)

vq02_codes = st.lists(st.integers(0, 1023), max_size=40)
vq06_codes = st.lists(st.integers(0, 4095), max_size=60)


@pytest.mark.conformance
def test_interleave_cases_match_reference(conformance_dir: Path) -> None:
    data = json.loads((conformance_dir / "interleave" / "interleave.json").read_text())
    assert data["cases"]
    for case in data["cases"]:
        codes = AudioCodes(vq02=tuple(case["vq02"]), vq06=tuple(case["vq06"]))
        assert codes.n_groups == case["n_groups"]
        assert codes.lm_ids() == case["wav2token_ids"]
        assert codes.text() == case["audio_token_str"]
        if case["get_audio_tokens"] is not None:
            assert parse_audio_tokens(case["audio_token_str"]) == case["get_audio_tokens"]
    for case in data["parse_cases"]:
        assert parse_audio_tokens(case["text"]) == case["get_audio_tokens"]


@given(vq02_codes, vq06_codes)
def test_round_trip_keeps_whole_groups(vq02: list[int], vq06: list[int]) -> None:
    groups = group_count(len(vq02), len(vq06))
    flow = interleave(vq02, vq06)
    assert len(flow) == 5 * groups
    back = deinterleave(flow)
    assert back.vq02 == tuple(vq02[: 2 * groups])
    assert back.vq06 == tuple(vq06[: 3 * groups])
    assert lm_to_flow(flow_to_lm(flow)) == flow
    assert parse_audio_tokens(audio_token_text(flow)) == flow_to_lm(flow)


@given(st.lists(st.integers(0, 5119), max_size=50))
def test_deinterleave_accepts_only_well_formed_groups(flow: list[int]) -> None:
    whole = len(flow) - len(flow) % 5
    well_formed = all(
        (value < 1024) == (index % 5 < 2) for index, value in enumerate(flow[:whole])
    )
    if well_formed:
        codes = deinterleave(flow)
        assert interleave(codes.vq02, codes.vq06) == flow[:whole]
    else:
        with pytest.raises(ValueError, match="2\\+3 group"):
            deinterleave(flow)


def test_codes_out_of_range_are_rejected() -> None:
    with pytest.raises(ValueError, match="vq02 code 1024"):
        interleave([1024, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="vq06 code -1"):
        interleave([0, 0], [0, -1, 0])
    with pytest.raises(ValueError, match="not an audio token"):
        lm_to_flow([3])


def test_partial_group_is_dropped() -> None:
    assert interleave([1, 2, 3], [4, 5, 6, 7]) == [1, 2, 1028, 1029, 1030]
    assert parse_audio_tokens("") == []
