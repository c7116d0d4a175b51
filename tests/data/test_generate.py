"""Generation end to end on CPU: the lite engine (real Piper, espeak-ng, Whisper) and the tiny Step stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepaudio.data.generate import GenerateConfig, generate_dataset, plan_jobs, reason_kind
from stepaudio.data.grid import GridSpec, expand_grid
from stepaudio.data.info import dataset_stats
from stepaudio.data.manifest import DatasetError, iter_rejects, iter_rows, read_info, shard_paths
from stepaudio.data.producer import Producer, ProducerSpec, load_tokenizer
from stepaudio.data.quality import QualityConfig, QualityFilter
from stepaudio.engines.base import Engine
from stepaudio.tokenizer.interleave import FLOW_VOCAB, deinterleave

TEXTS = ["Good morning to you all.", "今天天气真好。"]


def _lite_producer(engine: Engine, tokenizer_dir: Path, quality: QualityConfig) -> Producer:
    assert engine.synthesizer is not None
    return Producer("lite", engine.synthesizer, load_tokenizer(tokenizer_dir),
                    QualityFilter(quality, engine.transcriber))


def test_lite_dataset_skips_emotions_filters_and_resumes(
    lite_engine: Engine, tokenizer_dir: Path, tmp_path: Path
) -> None:
    quality = QualityConfig(max_cer=0.5)
    spec = ProducerSpec("lite", tokenizer_dir, quality=quality)
    producer = _lite_producer(lite_engine, tokenizer_dir, quality)
    cells = expand_grid(GridSpec(voices=("joe", "cmn"), emotions=("none", "happy")))
    out = tmp_path / "ds"
    config = GenerateConfig(out=out, shard_size=1, progress=False)
    summary = generate_dataset(TEXTS, cells, spec, config, producer=producer)

    assert summary.planned == 8 and summary.skipped == 4 and summary.failed == 0
    assert sorted(summary.unsupported_cells) == ["cmn(高兴1)", "joe(高兴1)"]
    assert all("高兴1" in reason for reason in summary.unsupported_cells.values())
    rows = list(iter_rows(out))
    rejects = list(iter_rejects(out))
    assert summary.accepted == len(rows) >= 2 and summary.rejected == len(rejects)
    assert len(rows) + len(rejects) == 4
    assert len(shard_paths(out)) == len(rows)  # shard size 1
    # Piper's English voice cannot read Chinese: the filter catches that synthesis
    assert any(r.row.voice == "joe" and r.row.text == TEXTS[1] for r in rejects)
    assert all(r.reason for r in rejects)
    for row in rows:
        assert row.engine == "lite" and row.tags == () and row.cer is not None and row.cer <= 0.5
        assert row.audio_tokens and all(0 <= t < FLOW_VOCAB for t in row.audio_tokens)
        codes = deinterleave(row.audio_tokens)  # a real 2:3 interleave
        assert len(codes.vq02) * 3 == len(codes.vq06) * 2
        # about 41.7 ids a second of audio
        assert abs(len(row.audio_tokens) / 41.67 - row.duration_s) < 0.3
        assert row.audio == f"audio/{row.id[:2]}/{row.id}.wav" and (out / row.audio).is_file()
    stats = dataset_stats(out)
    assert (stats.rows, stats.rejects, stats.voices.get("joe", 0) + stats.voices.get("cmn", 0)) == (
        len(rows), len(rejects), len(rows))
    assert sum(stats.reject_reasons.values()) == len(rejects) and stats.seconds > 0
    info = read_info(out)
    assert info.engine == "lite" and info.tokenizer.name == "Step-Audio-Tokenizer"
    assert info.config["shard_size"] == 1 and len(info.tokenizer.sha256) >= 3

    with pytest.raises(DatasetError, match="--resume"):
        generate_dataset(TEXTS, cells, spec, config, producer=producer)
    resume = GenerateConfig(out=out, shard_size=1, resume=True, progress=False)
    again = generate_dataset(TEXTS, cells, spec, resume, producer=producer)
    assert (again.already_done, again.accepted, again.rejected) == (4, 0, 0)
    grown = generate_dataset([*TEXTS, "See you tomorrow."], cells[:1], spec, resume, producer=producer)
    assert (grown.already_done, grown.accepted + grown.rejected) == (2, 1)
    ids = [row.id for row in iter_rows(out)] + [r.row.id for r in iter_rejects(out)]
    assert len(ids) == len(set(ids)) == 5
    with pytest.raises(DatasetError, match="engine 'lite'"):
        generate_dataset(TEXTS, cells, ProducerSpec("step", tokenizer_dir), resume)


def test_output_that_is_not_a_dataset_is_refused(tokenizer_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    spec = ProducerSpec("lite", tokenizer_dir)
    with pytest.raises(DatasetError, match="not a stepaudio dataset"):
        generate_dataset(TEXTS, expand_grid(GridSpec()), spec, GenerateConfig(out=tmp_path))
    with pytest.raises(DatasetError, match="nothing to generate"):
        generate_dataset([], expand_grid(GridSpec()), spec, GenerateConfig(out=tmp_path / "x"))


def test_jobs_are_stable_and_unique() -> None:
    cells = expand_grid(GridSpec(voices=("a", "b"), styles=("none", "rap")))
    jobs = plan_jobs("lite", ["x", "y", "x"], cells)
    assert len(jobs) == 8 and [j.id for j in jobs] == [j.id for j in plan_jobs("lite", ["x", "y"], cells)]
    assert reason_kind("cer 0.45 > 0.3") == "cer" and reason_kind("duration too short: 0.1 s") == "duration too short"


def test_step_engine_on_the_tiny_stack_honours_every_tag(
    conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from stepaudio.testing.tiny_stack import write_tiny_step_stack

    stack = write_tiny_step_stack(tmp_path_factory.mktemp("step"), conformance_dir / "text" / "tokenizer.model")
    spec = ProducerSpec("step", stack, engine_options={"model_path": str(stack), "seed": 0,
                                                       "max_segment_tokens": 20},
                        quality=QualityConfig(min_s_per_char=None, max_s_per_char=None))
    cells = expand_grid(GridSpec(voices=("Tingting",), emotions=("happy",), dialects=("sichuanese",),
                                 styles=("none", "rap")))
    summary = generate_dataset(["今天天气真好。"], cells, spec, GenerateConfig(out=tmp_path, progress=False))
    assert (summary.accepted, summary.skipped, summary.failed) == (2, 0, 0), summary.format()
    rows = list(iter_rows(tmp_path))
    assert {row.tags for row in rows} == {("高兴1", "四川话"), ("RAP", "高兴1", "四川话")}
    assert all(row.voice == "Tingting" and row.sample_rate == 22050 and row.audio_tokens for row in rows)
    assert read_info(tmp_path).engine == "step"


@pytest.mark.slow
def test_worker_processes_write_the_same_rows(lite_engine: Engine, tokenizer_dir: Path, tmp_path: Path) -> None:
    texts = ["One small step.", "Two more steps.", "Three steps away.", "今天天气真好。"]
    cells = expand_grid(GridSpec(voices=("joe", "cmn"), emotions=("none", "sad")))
    spec = ProducerSpec("lite", tokenizer_dir)
    inline = generate_dataset(texts, cells, spec, GenerateConfig(out=tmp_path / "a", progress=False))
    pooled = generate_dataset(texts, cells, spec, GenerateConfig(out=tmp_path / "b", workers=2, progress=False))
    assert (pooled.accepted, pooled.rejected, pooled.skipped) == (inline.accepted, inline.rejected, inline.skipped)
    assert pooled.unsupported_cells.keys() == inline.unsupported_cells.keys()
    # Piper samples its VITS noise, so the audio (and its tokens) differ run to run; the rows must not
    a = {row.id: (row.text, row.voice, row.tags) for row in iter_rows(tmp_path / "a")}
    b = {row.id: (row.text, row.voice, row.tags) for row in iter_rows(tmp_path / "b")}
    assert a == b and len(a) == inline.accepted
