"""Text lists from files and sentences written by a real chat model (SmolLM2 through the lite engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepaudio.data.manifest import DatasetError
from stepaudio.data.texts import ExpandOptions, expand_topics, load_texts, parse_sentences
from stepaudio.engines.base import ChatModel


def test_plain_and_jsonl_lists_are_stripped_and_deduplicated(tmp_path: Path) -> None:
    plain = tmp_path / "texts.txt"
    plain.write_text("  Hello there.\n\n今天天气真好。\nHello there.\n", encoding="utf-8")
    assert load_texts(plain) == ["Hello there.", "今天天气真好。"]
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text('{"text": "one"}\n"two"\n{"text": "one"}\n', encoding="utf-8")
    assert load_texts(jsonl) == ["one", "two"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"text": "ok"}\n{oops\n', r"bad.jsonl:2: bad JSON"),
        ("bad.jsonl", '{"txt": "ok"}\n', r":1: expected a JSON string"),
        ("tagged.txt", "fine\n(高兴1)开心\n", r"tagged.txt:2: .*高兴1.*--emotions"),
        ("empty.txt", "\n \n", "no texts"),
    ],
)
def test_bad_lists_name_file_and_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_texts(path)
    with pytest.raises(DatasetError, match="not found"):
        load_texts(tmp_path / "missing.txt")


def test_llm_replies_become_clean_sentences() -> None:
    reply = ('Here are 3 sentences about the sea:\n1. The sea is calm today.\n- "Waves crash on the rocks."\n'
             "2) The sea is calm today.\n(Note: these are short.)\n\n3、海风很凉快。\n***\nTides: The tide comes in.\n")
    assert parse_sentences(reply) == ["The sea is calm today.", "Waves crash on the rocks.", "海风很凉快。",
                                     "The tide comes in."]
    assert parse_sentences("x" * 300, max_chars=200) == []


@pytest.mark.slow
def test_topics_expand_through_a_real_chat_model(lite_chat: ChatModel) -> None:
    texts = expand_topics(lite_chat, ["the weather", "the weather"], ExpandOptions(per_topic=3, seed=0))
    assert 1 <= len(texts) <= 3
    assert len(set(texts)) == len(texts) and all(t.strip() and "\n" not in t for t in texts)
