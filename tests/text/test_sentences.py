from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepaudio.text.sentences import SentenceSplitter, has_cjk, sentence_segments, split_sentences

TEXTS = [
    'Hello there! Mr. Smith went to Washington. He said "hi." Then he left... OK? Fine',
    "今天天气很好。我们一起去公园散步吧！好吗？“当然。”走吧",
    "これはペンです。あれは何ですか？ 分かりません",
    "Dr. J. K. Rowling wrote it in 1997. The price is 3.50 dollars!\n1. First item\n2. Second item",
    "Mixed 中文 and English. 好的。Done",
]


def test_english_sentences_keep_abbreviations_initials_and_decimals() -> None:
    assert split_sentences(TEXTS[3]) == [
        "Dr. J. K. Rowling wrote it in 1997.", "The price is 3.50 dollars!", "1. First item", "2. Second item",
    ]


def test_closing_quotes_stay_with_their_sentence() -> None:
    assert split_sentences(TEXTS[0]) == [
        "Hello there!", "Mr. Smith went to Washington.", 'He said "hi."', "Then he left...", "OK?", "Fine",
    ]


def test_chinese_and_japanese_full_stops_end_sentences_without_spaces() -> None:
    assert split_sentences(TEXTS[1]) == ["今天天气很好。", "我们一起去公园散步吧！", "好吗？", "“当然。”", "走吧"]
    assert split_sentences(TEXTS[2]) == ["これはペンです。", "あれは何ですか？", "分かりません"]


def test_an_unfinished_sentence_waits_for_more_text() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("The capital is Paris.") == []  # could still be "Paris.com" or a closing quote
    assert splitter.push(" It is") == ["The capital is Paris."]
    assert splitter.push(" lovely") == []
    assert splitter.finish() == ["It is lovely"]
    assert splitter.finish() == []


def test_long_sentences_are_cut_at_a_comma_and_the_first_one_sooner() -> None:
    text = "Paris is the capital of France, and it is famous for the Eiffel Tower, built in 1889. It is lovely."
    assert split_sentences(text, first_max_chars=40) == [
        "Paris is the capital of France,", "and it is famous for the Eiffel Tower, built in 1889.", "It is lovely.",
    ]
    pieces = split_sentences("word " * 100, max_chars=50)
    assert all(len(piece) <= 50 for piece in pieces)
    assert " ".join(pieces).split() == ["word"] * 100


def test_a_first_sentence_just_past_its_limit_stays_whole() -> None:
    assert split_sentences("You said what time is it. That is turn 1.", first_max_chars=24) == [
        "You said what time is it.", "That is turn 1."]  # 25 characters: not "...time is" + "it."
    assert split_sentences("The capital of France is Paris, as you know.", first_max_chars=24) == [
        "The capital of France is", "Paris, as you know."]  # 44: cut at the limit
    splitter = SentenceSplitter(first_max_chars=24)
    assert splitter.push("The capital of France is Paris") == []  # 30: it may still end within the slack
    assert splitter.push(", as") == ["The capital of France is"]  # 34 without an end: cut


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        SentenceSplitter(max_chars=3)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(TEXTS), st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=40))
def test_streaming_in_any_pieces_gives_the_offline_sentences(text: str, sizes: list[int]) -> None:
    splitter = SentenceSplitter(max_chars=40, first_max_chars=20)
    out: list[str] = []
    position, index = 0, 0
    while position < len(text):
        size = sizes[index % len(sizes)]
        out += splitter.push(text[position : position + size])
        position += size
        index += 1
    out += splitter.finish()
    assert out == split_sentences(text, max_chars=40, first_max_chars=20)
    assert "".join(out).replace(" ", "") == text.replace(" ", "").replace("\n", "")


def test_has_cjk() -> None:
    assert has_cjk("hello 你好") and has_cjk("カタカナ") and not has_cjk("hello")


CLAUSE_TEXTS = [
    "天空是由太阳和大气层组成的，蓝色是光。你好，世界。",
    "你好，我是小明，很高兴认识你。再见，朋友。",
    "雨が降りそうなので、傘を持って行きます。はい、そうです。",
    "Hello, world, this is it. 你好，世界。",
    "中文里写了ASCII逗号,也算;然后结束。",
]


def test_a_cjk_first_sentence_ends_at_its_first_long_enough_clause_mark() -> None:
    assert split_sentences(CLAUSE_TEXTS[0], first_clause_chars=4) == [
        "天空是由太阳和大气层组成的，", "蓝色是光。", "你好，世界。"]  # later sentences stay whole
    assert split_sentences(CLAUSE_TEXTS[1], first_clause_chars=4) == [
        "你好，我是小明，", "很高兴认识你。", "再见，朋友。"]  # "你好，" is shorter than 4: the next mark
    assert split_sentences(CLAUSE_TEXTS[2], first_clause_chars=4)[0] == "雨が降りそうなので、"
    assert split_sentences(CLAUSE_TEXTS[3], first_clause_chars=4)[0] == "Hello, world, this is it."  # not CJK
    assert split_sentences(CLAUSE_TEXTS[4], first_clause_chars=4)[0] == "中文里写了ASCII逗号,"
    assert split_sentences("一周有7天。好的，谢谢。", first_clause_chars=4) == ["一周有7天。", "好的，谢谢。"]
    off = split_sentences(CLAUSE_TEXTS[0])  # off by default
    assert off == ["天空是由太阳和大气层组成的，蓝色是光。", "你好，世界。"]
    with pytest.raises(ValueError):
        SentenceSplitter(first_clause_chars=0)


def test_a_spaced_first_sentence_ends_at_its_first_clause_with_enough_words() -> None:
    text = "Sure, the capital of France is Paris. It is big, and old."
    assert split_sentences(text, first_clause_words=1) == ["Sure,", "the capital of France is Paris.",
                                                           "It is big, and old."]  # later sentences stay whole
    assert split_sentences(text, first_clause_words=2)[0] == "Sure, the capital of France is Paris."
    assert split_sentences("Well now, it costs 1,000 dollars.", first_clause_words=2)[0] == "Well now,"
    assert split_sentences("It costs 1,000 dollars, or so.", first_clause_words=1)[0] == "It costs 1,000 dollars,"
    assert split_sentences("你好，世界。Hello, there.", first_clause_words=1)[0] == "你好，世界。"  # CJK: its own rule
    assert split_sentences(text)[0] == "Sure, the capital of France is Paris."  # off by default
    with pytest.raises(ValueError):
        SentenceSplitter(first_clause_words=0)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(CLAUSE_TEXTS + TEXTS), st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=20))
def test_the_clause_cut_is_the_same_streamed_in_any_pieces(text: str, sizes: list[int]) -> None:
    splitter = SentenceSplitter(max_chars=40, first_max_chars=20, first_clause_chars=3, first_clause_words=2)
    out: list[str] = []
    position, index = 0, 0
    while position < len(text):
        out += splitter.push(text[position : position + sizes[index % len(sizes)]])
        position += sizes[index % len(sizes)]
        index += 1
    out += splitter.finish()
    assert out == split_sentences(text, max_chars=40, first_max_chars=20, first_clause_chars=3, first_clause_words=2)
    assert "".join(out).replace(" ", "") == text.replace(" ", "").replace("\n", "")


def test_sentence_segments_merge_whole_sentences_up_to_the_limit() -> None:
    text = "你好。今天天气很好。我们出去走走吧。"
    assert sentence_segments(text, 10) == ["你好。今天天气很好。", "我们出去走走吧。"]
    assert sentence_segments(text, 100) == [text]
    assert sentence_segments("", 10) == [""]
    assert sentence_segments("One. Two. Three.", 9) == ["One. Two.", "Three."]
    assert sentence_segments("Hello there. 你好。OK.", 100) == ["Hello there.你好。OK."]  # CJK beside: no space
