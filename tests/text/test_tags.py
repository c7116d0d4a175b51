from __future__ import annotations

import warnings

import pytest

from stepaudio.errors import TagError
from stepaudio.text.tags import (
    KNOWN_TAGS,
    TagFamily,
    build_tagged_text,
    friendly_to_tag,
    leading_instruction,
    parse_tags,
)


def test_chained_tags_in_mixed_brackets() -> None:
    parsed = parse_tags("(高兴1)（四川话)(慢速1)今天天气真好")
    assert parsed.tags == ("高兴1", "四川话", "慢速1")
    assert parsed.body == "今天天气真好"
    assert parsed.first == "高兴1"
    assert not parsed.is_music


def test_no_tags_and_inner_brackets_are_left_alone() -> None:
    parsed = parse_tags("今天(真的)很好")
    assert parsed.tags == ()
    assert parsed.body == "今天(真的)很好"
    assert leading_instruction("今天(真的)很好") == ""


def test_music_tag_detection() -> None:
    assert parse_tags("(RAP)yo").is_music
    assert parse_tags("（哼唱）la la").is_music
    assert leading_instruction("（RAP)(高兴1)x") == "RAP"


def test_unknown_tag_policies() -> None:
    with pytest.raises(TagError, match="unknown instruction tag"):
        parse_tags("(开心)你好", on_unknown="raise")
    with pytest.warns(UserWarning, match="开心"):
        parsed = parse_tags("(开心)你好")
    assert parsed.unknown == ("开心",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_tags("(开心)你好", on_unknown="ignore").tags == ("开心",)
    with pytest.raises(ValueError):
        parse_tags("x", on_unknown="explode")


@pytest.mark.parametrize(
    ("family", "value", "tag"),
    [
        (TagFamily.EMOTION, "happy", "高兴1"),
        (TagFamily.EMOTION, "Angry2", "生气2"),
        (TagFamily.LANGUAGE, "sichuanese", "四川话"),
        (TagFamily.LANGUAGE, "Cantonese", "粤语"),
        (TagFamily.SPEED, "slow", "慢速1"),
        (TagFamily.SPEED, "faster", "快速2"),
        (TagFamily.MUSIC, "rap", "RAP"),
        (TagFamily.MUSIC, "humming", "哼唱"),
        (TagFamily.EMOTION, "悲伤1", "悲伤1"),
    ],
)
def test_friendly_options(family: TagFamily, value: str, tag: str) -> None:
    assert friendly_to_tag(family, value) == tag


def test_friendly_option_errors_name_the_choices() -> None:
    with pytest.raises(TagError, match="choose one of"):
        friendly_to_tag(TagFamily.EMOTION, "bored")
    with pytest.raises(TagError):
        friendly_to_tag(TagFamily.SPEED, "高兴1")  # a real tag, but of another family


def test_build_puts_music_first_so_it_selects_the_prompt() -> None:
    text = build_tagged_text("今天天气真好", emotion="happy", dialect="sichuanese", speed="slow", style="rap")
    assert text == "(RAP)(高兴1)(四川话)(慢速1)今天天气真好"
    assert parse_tags(text, on_unknown="raise").tags == ("RAP", "高兴1", "四川话", "慢速1")
    assert build_tagged_text("plain") == "plain"


def test_vocabulary_is_the_reference_one() -> None:
    assert len(KNOWN_TAGS) == 19
    assert sum(f is TagFamily.MUSIC for f in KNOWN_TAGS.values()) == 2
