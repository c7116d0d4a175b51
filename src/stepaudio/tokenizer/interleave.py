"""Dual-codebook audio tokens: vq02 (16.7 Hz) and vq06 (25 Hz) codes merged 2:3 into one id stream.

Three forms of the same tokens travel through the system: the two code lists from the tokenizers, the
interleaved *flow ids* (vq02 code c -> c, vq06 code c -> 1024 + c; what the speech decoder embeds), and
the *LM ids* (flow id + `STEP1.audio_offset`; `<audio_N>` pieces of the text vocabulary, what the language
models read).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stepaudio.text.vocab import STEP1, audio_piece, audio_piece_numbers

VQ02_CODEBOOK = 1024
VQ06_CODEBOOK = 4096
FLOW_VOCAB = VQ02_CODEBOOK + VQ06_CODEBOOK
GROUP_VQ02 = 2
GROUP_VQ06 = 3
GROUP_SIZE = GROUP_VQ02 + GROUP_VQ06
TOKENS_PER_SECOND = GROUP_SIZE / 0.12  # 5 ids per 120 ms


@dataclass(frozen=True)
class AudioCodes:
    """The two code streams of one utterance."""

    vq02: tuple[int, ...]
    vq06: tuple[int, ...]

    @property
    def n_groups(self) -> int:
        return group_count(len(self.vq02), len(self.vq06))

    def flow_ids(self) -> list[int]:
        return interleave(self.vq02, self.vq06)

    def lm_ids(self) -> list[int]:
        return flow_to_lm(self.flow_ids())

    def text(self) -> str:
        return audio_token_text(self.flow_ids())


def group_count(n_vq02: int, n_vq06: int) -> int:
    """Whole 2+3 groups available; a trailing partial group is dropped, as in the reference."""
    return min(n_vq02 // GROUP_VQ02, n_vq06 // GROUP_VQ06)


def interleave(vq02: Sequence[int], vq06: Sequence[int]) -> list[int]:
    """Flow ids `[a0 a1 b0 b1 b2  a2 a3 b3 b4 b5 ...]` with vq06 codes shifted by 1024."""
    _check_codes(vq02, VQ02_CODEBOOK, "vq02")
    _check_codes(vq06, VQ06_CODEBOOK, "vq06")
    ids: list[int] = []
    for g in range(group_count(len(vq02), len(vq06))):
        ids.extend(int(c) for c in vq02[g * GROUP_VQ02 : (g + 1) * GROUP_VQ02])
        ids.extend(VQ02_CODEBOOK + int(c) for c in vq06[g * GROUP_VQ06 : (g + 1) * GROUP_VQ06])
    return ids


def deinterleave(flow_ids: Sequence[int]) -> AudioCodes:
    """Split flow ids back into the two code lists; a trailing partial group is dropped."""
    vq02: list[int] = []
    vq06: list[int] = []
    whole = len(flow_ids) - len(flow_ids) % GROUP_SIZE
    for start in range(0, whole, GROUP_SIZE):
        group = [int(x) for x in flow_ids[start : start + GROUP_SIZE]]
        for position, value in enumerate(group):
            expect_vq02 = position < GROUP_VQ02
            if expect_vq02 != (0 <= value < VQ02_CODEBOOK) or not 0 <= value < FLOW_VOCAB:
                raise ValueError(
                    f"flow id {value} at index {start + position} is not a "
                    f"{'vq02' if expect_vq02 else 'vq06'} id of a 2+3 group"
                )
        vq02.extend(group[:GROUP_VQ02])
        vq06.extend(v - VQ02_CODEBOOK for v in group[GROUP_VQ02:])
    return AudioCodes(vq02=tuple(vq02), vq06=tuple(vq06))


def flow_to_lm(flow_ids: Sequence[int]) -> list[int]:
    return [STEP1.audio_offset + int(i) for i in flow_ids]


def lm_to_flow(lm_ids: Sequence[int]) -> list[int]:
    """Flow ids of LM audio ids; any non-audio id is an error (the caller filters text ids first)."""
    out = []
    for i in lm_ids:
        flow = int(i) - STEP1.audio_offset
        if not 0 <= flow < FLOW_VOCAB:
            first, last = STEP1.audio_offset, STEP1.audio_offset + FLOW_VOCAB - 1
            raise ValueError(f"LM id {i} is not an audio token (expected {first}..{last})")
        out.append(flow)
    return out


def is_audio_lm_id(token_id: int) -> bool:
    return STEP1.audio_offset <= token_id < STEP1.audio_offset + FLOW_VOCAB


def audio_token_text(flow_ids: Sequence[int]) -> str:
    """The chat form: `<audio_N>` pieces with no separators."""
    return "".join(audio_piece(i) for i in flow_ids)


def parse_audio_tokens(text: str) -> list[int]:
    """LM ids of every `<audio_N>` piece in `text` (other text is ignored)."""
    return [STEP1.audio_offset + n for n in audio_piece_numbers(text)]


def _check_codes(codes: Sequence[int], codebook: int, name: str) -> None:
    for index, code in enumerate(codes):
        if not 0 <= int(code) < codebook:
            raise ValueError(f"{name} code {code} at index {index} is outside 0..{codebook - 1}")
