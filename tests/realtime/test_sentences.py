"""Sentence cutting of streamed chat text."""

from __future__ import annotations

from stepaudio.realtime.sentences import SentenceSplitter


def stream(text: str, size: int, min_chars: int = 12) -> tuple[list[str], str]:
    splitter = SentenceSplitter(min_chars)
    sentences: list[str] = []
    for start in range(0, len(text), size):
        sentences += splitter.feed(text[start : start + size])
    return sentences, splitter.flush()


def test_sentences_whatever_the_delta_size() -> None:
    text = "Hello there, friend. Pi is 3.14 today! Is it? Yes it is, really. The end"
    for size in (1, 3, 7, len(text)):
        sentences, rest = stream(text, size)
        assert sentences == ["Hello there, friend.", "Pi is 3.14 today!", "Is it? Yes it is, really."]
        assert rest == "The end"


def test_cjk_punctuation_ends_at_once() -> None:
    sentences, rest = stream("今天天气很好，我们去公园吧。好的！", 2, min_chars=4)
    assert sentences == ["今天天气很好，我们去公园吧。"]
    assert rest == "好的！"


def test_nothing_lost() -> None:
    text = "a. b. c. d! e? ffff gggg hhhh. end"
    sentences, rest = stream(text, 2, min_chars=5)
    assert " ".join([*sentences, rest]).split() == text.split()
