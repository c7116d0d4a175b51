"""Streaming detokenisation: the text each new token adds, exactly as decoding the whole sequence would.

Decoding tokens one by one loses the space the tokenizer strips at the start of a decode and breaks
multi-byte characters spelled as byte pieces. Decoding a short window that starts one token back and
emitting what it adds beyond that token avoids both at constant cost per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stepaudio.text.tokenizer import StepTokenizer

_REPLACEMENT = "\ufffd"


@dataclass
class IncrementalDetokenizer:
    """`push` each token id, get the text it adds; `finish` once for what is still held back."""

    tokenizer: StepTokenizer
    skip_special_tokens: bool = False
    _ids: list[int] = field(default_factory=list)
    _prefix: int = 0  # window start
    _read: int = 0  # tokens already turned into text
    _text: list[str] = field(default_factory=list)

    def push(self, token_id: int) -> str:
        """Text added by `token_id` (empty while a multi-byte character is incomplete)."""
        self._ids.append(int(token_id))
        return self._advance(final=False)

    def finish(self) -> str:
        """Whatever is still held back (an incomplete byte sequence decodes to U+FFFD)."""
        return self._advance(final=True)

    @property
    def text(self) -> str:
        return "".join(self._text)

    def _advance(self, final: bool) -> str:
        decode = self.tokenizer.decode
        before = decode(self._ids[self._prefix : self._read], skip_special_tokens=self.skip_special_tokens)
        after = decode(self._ids[self._prefix :], skip_special_tokens=self.skip_special_tokens)
        if len(after) <= len(before) or (after.endswith(_REPLACEMENT) and not final):
            return ""
        delta = after[len(before) :]
        self._prefix, self._read = self._read, len(self._ids)
        self._text.append(delta)
        return delta
