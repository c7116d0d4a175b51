"""The dataset format: rows round-trip, reading validates with file:line, writes survive a torn tail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stepaudio.data.manifest import (
    DatasetError,
    DatasetInfo,
    DatasetRow,
    DatasetWriter,
    TokenizerInfo,
    iter_rejects,
    iter_rows,
    read_info,
    row_id,
    shard_paths,
    write_info,
)


def _row(writer: DatasetWriter, text: str, tags: tuple[str, ...] = ()) -> DatasetRow:
    rid = row_id("lite", "amy", tags, text)
    samples = np.sin(np.linspace(0, 200, 1600)).astype(np.float32) * 0.3
    audio = writer.write_audio(rid, samples, 16000)
    return DatasetRow(
        id=rid, text=text, tags=tags, voice="amy", audio=audio, sample_rate=16000, duration_s=0.1,
        audio_tokens=(1, 2, 1024, 1025, 5119), engine="lite", cer=0.0, asr_text=text,
    )


def test_row_id_is_stable_and_depends_on_every_part() -> None:
    base = row_id("lite", "amy", ["高兴1"], "hello")
    assert base == row_id("lite", "amy", ("高兴1",), "hello") and len(base) == 16
    assert len({base, row_id("step", "amy", ["高兴1"], "hello"), row_id("lite", "bob", ["高兴1"], "hello"),
                row_id("lite", "amy", [], "hello"), row_id("lite", "amy", ["高兴1"], "hello!")}) == 5


def test_rows_round_trip_across_shards_in_order(tmp_path: Path) -> None:
    write_info(tmp_path, DatasetInfo("lite", TokenizerInfo("tok", {"a": "00"}), {"shard_size": 2}))
    writer = DatasetWriter(tmp_path, shard_size=2)
    rows = [_row(writer, f"sentence {i}", ("RAP",) if i % 2 else ()) for i in range(5)]
    for row in rows[:4]:
        writer.append(row)
    writer.reject(rows[4], "cer 0.9 > 0.3")
    assert [p.name for p in shard_paths(tmp_path)] == [
        "manifest-00000.jsonl", "manifest-00001.jsonl"]
    assert list(iter_rows(tmp_path)) == rows[:4]
    rejects = list(iter_rejects(tmp_path))
    assert [(r.row, r.reason) for r in rejects] == [(rows[4], "cer 0.9 > 0.3")]
    info = read_info(tmp_path)
    assert info.engine == "lite" and info.tokenizer.sha256 == {"a": "00"} and info.created
    with pytest.raises(DatasetError, match="already"):
        writer.append(rows[0])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: {**d, "audio_tokens": [1, 5120]}, "outside 0..5119"),
        (lambda d: {**d, "text": "  "}, "empty text"),
        (lambda d: {k: v for k, v in d.items() if k != "voice"}, "missing field"),
        (lambda d: {**d, "audio": "audio/zz/missing.wav"}, "missing"),
    ],
)
def test_reader_names_file_and_line_of_a_bad_row(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    writer = DatasetWriter(tmp_path)
    good, bad = _row(writer, "one"), _row(writer, "two")
    shard = tmp_path / "manifest-00000.jsonl"
    shard.write_text(good.to_json() + "\n" + json.dumps(edit(bad.to_dict())) + "\n")
    with pytest.raises(DatasetError, match=rf"manifest-00000.jsonl:2: .*{message}"):
        list(iter_rows(tmp_path))


def test_bad_json_and_truncated_audio_are_reported(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    row = _row(writer, "one")
    shard = tmp_path / "manifest-00000.jsonl"
    shard.write_text("{not json\n")
    with pytest.raises(DatasetError, match=r":1: bad JSON"):
        list(iter_rows(tmp_path))
    shard.write_text(row.to_json() + "\n")
    wav = tmp_path / row.audio
    wav.write_bytes(wav.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="truncated"):
        list(iter_rows(tmp_path))


def test_torn_last_line_is_dropped_on_reopen_and_ids_are_kept(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path, shard_size=10)
    first, second = _row(writer, "one"), _row(writer, "two")
    writer.append(first)
    writer.reject(second, "too short")
    shard = tmp_path / "manifest-00000.jsonl"
    with shard.open("a") as handle:
        handle.write(first.to_json()[:30])  # a kill in the middle of a write
    (tmp_path / "audio" / "xx").mkdir()
    (tmp_path / "audio" / "xx" / "half.wav.123.tmp").write_bytes(b"RIFF")
    with pytest.raises(DatasetError, match="incomplete"):
        list(iter_rows(tmp_path))
    reopened = DatasetWriter(tmp_path, shard_size=10)
    assert reopened.state.dropped_torn_lines == 1
    assert reopened.state.accepted == 1 and reopened.state.rejected == 1
    assert first.id in reopened and second.id in reopened
    assert list(iter_rows(tmp_path)) == [first]
    assert not list((tmp_path / "audio").rglob("*.tmp"))


def test_writer_refuses_a_row_whose_audio_is_missing(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    row = _row(writer, "one")
    (tmp_path / row.audio).unlink()
    with pytest.raises(DatasetError, match="missing"):
        writer.append(row)


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a stepaudio dataset"):
        list(iter_rows(tmp_path))
    with pytest.raises(DatasetError, match="not found"):
        read_info(tmp_path)


def test_an_empty_synthesis_can_be_rejected_and_read_back(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    rid = row_id("lite", "amy", (), "silence")
    audio = writer.write_audio(rid, np.zeros(0, dtype=np.float32), 22050)
    row = DatasetRow(id=rid, text="silence", tags=(), voice="amy", audio=audio, sample_rate=22050,
                     duration_s=0.0, audio_tokens=(), engine="lite")
    writer.reject(row, "silent audio")
    assert [(r.row, r.reason) for r in iter_rejects(tmp_path)] == [(row, "silent audio")]
