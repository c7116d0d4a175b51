from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stepaudio.text.detokenize import IncrementalDetokenizer
from stepaudio.text.tokenizer import StepTokenizer

SAMPLES = [
    "Hello world, this is a test.",
    "今天天气真好，我们去公园吧！",
    "emoji 😀🎉 and tabs\tand\nnew lines",
    "<|BOT|>assistant\nok<|EOT|> <audio_5> done",
    "  leading spaces and   runs",
]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SAMPLES), st.booleans())
def test_streamed_text_equals_full_decode(step_tokenizer: StepTokenizer, text: str, skip: bool) -> None:
    ids = step_tokenizer.encode(text, add_bos=False)
    detok = IncrementalDetokenizer(step_tokenizer, skip_special_tokens=skip)
    pieces = [detok.push(i) for i in ids] + [detok.finish()]
    assert "".join(pieces) == step_tokenizer.decode(ids, skip_special_tokens=skip)
    assert detok.text == "".join(pieces)


def test_incomplete_utf8_is_held_back(step_tokenizer: StepTokenizer) -> None:
    ids = step_tokenizer.encode("😀", add_bos=False)
    byte_ids = [i for i in ids if step_tokenizer.id_to_piece(i).startswith("<0x")]
    assert len(byte_ids) == 4
    detok = IncrementalDetokenizer(step_tokenizer)
    out = [detok.push(i) for i in ids]
    assert "".join(out) == "😀" and all(o in ("", "😀") for o in out)
