"""The Step text tokenizer: SentencePiece pieces with the Hugging Face *fast* tokenizer's behaviour.

The reference loads `tokenizer.model` through transformers' fast LlamaTokenizer (`legacy: false`), which
differs from raw SentencePiece: control and user-defined pieces (`<|BOT|>`, `<audio_N>`, `<s>`, ...) are
atomic wherever they appear, only the text at the very start of the input gets the `▁` dummy prefix
(a word right after a special token gets none), and decoding joins pieces then strips one leading space.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from stepaudio.errors import CheckpointError
from stepaudio.text.vocab import STEP1

SPACE_PIECE = "▁"

_CANDIDATE_SPECIAL = re.compile(r"<[^<>]*>")
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")

# SentencePiece ModelProto piece types.
_UNKNOWN, _CONTROL, _USER_DEFINED, _BYTE = 2, 3, 4, 6


@dataclass(frozen=True)
class Encoding:
    """Ids with their pieces, for inspection and the CLI."""

    ids: list[int]
    pieces: list[str]


class StepTokenizer:
    """Encode and decode text exactly as the Step-Audio reference's fast tokenizer does."""

    def __init__(self, model_path: str | Path) -> None:
        path = Path(model_path)
        if path.is_dir():
            path = path / "tokenizer.model"
        if not path.is_file():
            raise CheckpointError(f"tokenizer model not found: {path}")
        proto = _load_proto(path)
        self._pieces: list[str] = [p.piece for p in proto.pieces]
        self._types: list[int] = [p.type for p in proto.pieces]
        self._atomic: dict[str, int] = {
            p.piece: i for i, p in enumerate(proto.pieces) if p.type in (_UNKNOWN, _CONTROL, _USER_DEFINED)
        }
        self._special_ids = frozenset(
            i for i, t in enumerate(self._types) if t in (_UNKNOWN, _CONTROL)
        )
        # The dummy prefix is applied here, by the rules of the fast tokenizer, not by SentencePiece.
        proto.normalizer_spec.add_dummy_prefix = False
        self._sp = spm.SentencePieceProcessor()
        self._sp.LoadFromSerializedProto(proto.SerializeToString())
        self.model_path = path

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        """Token ids of `text`; BOS first unless `add_bos` is False."""
        ids = [STEP1.bos_id] if add_bos else []
        for start, segment, is_atomic in self._split(text):
            if is_atomic:
                ids.append(self._atomic[segment])
                continue
            ids.extend(self._encode_segment(segment, at_start=start == 0))
        return ids

    def encode_batch(self, texts: Iterable[str], add_bos: bool = True) -> list[list[int]]:
        return [self.encode(text, add_bos=add_bos) for text in texts]

    def encode_with_pieces(self, text: str, add_bos: bool = True) -> Encoding:
        ids = self.encode(text, add_bos=add_bos)
        return Encoding(ids=ids, pieces=[self.id_to_piece(i) for i in ids])

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids`; byte pieces are reassembled into UTF-8, one leading space is stripped."""
        parts: list[str] = []
        pending: bytearray = bytearray()
        for token_id in ids:
            token_id = int(token_id)
            if not 0 <= token_id < len(self._pieces):
                raise ValueError(f"token id {token_id} is outside the vocabulary (0..{len(self._pieces) - 1})")
            if skip_special_tokens and token_id in self._special_ids:
                continue
            piece = self._pieces[token_id]
            if self._types[token_id] == _BYTE:
                match = _BYTE_PIECE.match(piece)
                if match:
                    pending.append(int(match.group(1), 16))
                    continue
            if pending:
                parts.append(_decode_bytes(pending))
                pending = bytearray()
            parts.append(piece.replace(SPACE_PIECE, " "))
        if pending:
            parts.append(_decode_bytes(pending))
        text = "".join(parts)
        return text[1:] if text.startswith(" ") else text

    def id_to_piece(self, token_id: int) -> str:
        return self._pieces[token_id]

    def piece_to_id(self, piece: str) -> int:
        if piece in self._atomic:
            return self._atomic[piece]
        token_id = int(self._sp.PieceToId(piece))
        if token_id == 0 and piece != self._pieces[0]:
            raise KeyError(f"{piece!r} is not a piece of this vocabulary")
        return token_id

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_ids

    def _split(self, text: str) -> Iterable[tuple[int, str, bool]]:
        """(offset, segment, is_atomic) in order; atomic pieces are matched before any normalisation."""
        cursor = 0
        for match in _CANDIDATE_SPECIAL.finditer(text):
            if match.group(0) not in self._atomic:
                continue
            if match.start() > cursor:
                yield cursor, text[cursor : match.start()], False
            yield match.start(), match.group(0), True
            cursor = match.end()
        if cursor < len(text):
            yield cursor, text[cursor:], False

    def _encode_segment(self, segment: str, at_start: bool) -> list[int]:
        normalized = segment.replace(" ", SPACE_PIECE)
        if at_start and not normalized.startswith(SPACE_PIECE):
            normalized = SPACE_PIECE + normalized
        return list(self._sp.EncodeAsIds(normalized))


def _decode_bytes(data: bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


def _load_proto(path: Path):  # type: ignore[no-untyped-def]
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as exc:  # protobuf is a declared dependency; this guards broken installs
        raise CheckpointError(f"cannot read {path}: the 'protobuf' package is required ({exc})") from exc
    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise CheckpointError(f"{path} is not a SentencePiece model: {exc}") from exc
    if not proto.pieces:
        raise CheckpointError(f"{path} holds no SentencePiece pieces")
    return proto
