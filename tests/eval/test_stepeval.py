"""Conversation data: the StepEval-Audio-360 release layout (parquet + audios/), local JSONL, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import encode_audio
from stepaudio.eval.stepeval import DatasetError, load_conversations, load_stepeval360, select


def _wav(path: Path, seconds: float = 0.2) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_audio((0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000, "wav"))
    return path


def _release(root: Path, rows: list[dict]) -> Path:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "data" / "test-00000-of-00001.parquet")
    return root


ROWS = [
    {"conversation_id": "rp-001", "category": "Role-playing", "conversation": [
        {"role": "human", "text": "你好，扮演一个老师。", "audio_filename": "rp-001-1.wav"},
        {"role": "assistant", "text": "同学们好！", "audio_filename": None},
        {"role": "human", "text": "今天学什么？", "audio_filename": "rp-001-2.wav"}]},
    {"conversation_id": "lr-002", "category": "Logical Reasoning", "conversation": [
        {"role": "human", "text": "3 加 4 等于几？", "audio_filename": None}]},
]


def test_release_layout_reads_turns_categories_and_audio(tmp_path: Path) -> None:
    root = _release(tmp_path / "StepEval-Audio-360", ROWS)
    _wav(root / "audios" / "rp-001-1.wav")
    _wav(root / "audios" / "nested" / "rp-001-2.wav")  # found by name below audios/
    conversations = load_conversations(root)
    assert [c.id for c in conversations] == ["rp-001", "lr-002"]
    first = conversations[0]
    assert first.category == "Role-playing" and first.user_turns == 2
    assert [t.role for t in first.turns] == ["user", "assistant", "user"]  # 'human' is a user
    assert first.turns[0].audio == root / "audios" / "rp-001-1.wav"
    assert first.turns[2].audio == root / "audios" / "nested" / "rp-001-2.wav"
    assert first.turns[1].audio is None and conversations[1].turns[0].text == "3 加 4 等于几？"
    assert [c.id for c in select(conversations, ["logical reasoning"])] == ["lr-002"]
    assert len(select(conversations, limit=1)) == 1
    with pytest.raises(DatasetError, match="Role-playing"):
        select(conversations, ["gaming"])


def test_release_without_decompressed_audio_says_how(tmp_path: Path) -> None:
    root = _release(tmp_path / "se", ROWS)
    (root / "audios.tar.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match="tar -xzf"):
        load_stepeval360(root)
    assert len(load_stepeval360(root, check_audio=False)) == 2  # text-only evaluation still works


def test_missing_audio_file_is_named(tmp_path: Path) -> None:
    root = _release(tmp_path / "se", ROWS)
    _wav(root / "audios" / "rp-001-1.wav")
    with pytest.raises(DatasetError, match=r"row 1 turn 3: audio file 'rp-001-2.wav' not found"):
        load_conversations(root)


def test_jsonl_with_relative_audio_and_json_text_turns(tmp_path: Path) -> None:
    _wav(tmp_path / "clips" / "q.wav")
    lines = [
        {"id": "a", "category": "qa", "turns": [{"role": "user", "audio": "clips/q.wav"},
                                                {"role": "assistant", "text": "Paris."},
                                                {"role": "user", "text": "And Spain?"}]},
        {"id": "b", "turns": json.dumps([{"role": "system", "text": "Be brief."},
                                         {"role": "user", "content": "Hi"}])},
    ]
    file = tmp_path / "convs.jsonl"
    file.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    a, b = load_conversations(file)
    assert a.turns[0].audio == tmp_path / "clips" / "q.wav" and a.turns[0].text == ""
    assert b.category == "uncategorised" and [t.role for t in b.turns] == ["system", "user"]
    assert b.turns[1].text == "Hi"


@pytest.mark.parametrize(("content", "message"), [
    ('{"id": "x", "turns": [{"role": "user", "text": "hi"}]}\n{oops', r"line 2: not valid JSON"),
    ('{"turns": [{"role": "user", "text": "hi"}]}', r"line 1: missing 'conversation_id'"),
    ('{"id": "x", "turns": []}', r"non-empty list"),
    ('{"id": "x", "turns": [{"role": "robot", "text": "hi"}]}', r"turn 1: role 'robot'"),
    ('{"id": "x", "turns": [{"role": "user"}]}', r"needs 'text' or an audio file"),
    ('{"id": "x", "turns": [{"role": "assistant", "text": "hi"}]}', r"no user turn"),
    ('{"id": "x", "turns": [{"role": "user", "text": 5}]}', r"'text' must be a string"),
    ('{"id": "x", "turns": [{"role": "user", "text": "a"}]}\n{"id": "x", "turns": [{"role": "user", "text": "b"}]}',
     r"id 'x' repeats"),
    ('[1, 2]', r"expected an object"),
    ("", r"no conversations"),
])
def test_bad_jsonl_fails_with_the_place_named(tmp_path: Path, content: str, message: str) -> None:
    file = tmp_path / "bad.jsonl"
    file.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_conversations(file)


def test_bad_paths_and_formats(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_conversations(tmp_path / "nope.jsonl")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(DatasetError, match="expected a folder"):
        load_conversations(tmp_path / "x.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no data/\*.parquet"):
        load_conversations(tmp_path / "empty")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    pytest.importorskip("pyarrow")
    with pytest.raises(DatasetError, match="not a readable parquet"):
        load_conversations(tmp_path / "broken.parquet")
    (tmp_path / "list.json").write_text(json.dumps({"conversations": [
        {"conversation_id": 7, "conversation": [{"role": "user", "text": "hi"}]}]}))
    assert load_conversations(tmp_path / "list.json")[0].id == "7"
