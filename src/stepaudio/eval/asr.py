"""ASR evaluation: transcribe every utterance of a dataset, score WER (words) or CER (Chinese characters).

Scoring uses `stepaudio.text.metrics` with its documented normalisers. `auto` picks per utterance:
Chinese (by language code or script) -> `chinese` normaliser and CER; anything else -> `english+titles`
and WER. `english+titles` is the `english` normaliser after spelling out Mr./Mrs./Dr. (as LibriVox and
LibriSpeech transcripts do; Whisper writes the abbreviation). Totals are corpus rates (all errors over all
reference units), one per unit, and every utterance's row is kept.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stepaudio.audio.io import load_audio
from stepaudio.engines.base import Transcriber
from stepaudio.errors import AudioError
from stepaudio.eval import paper
from stepaudio.eval.datasets import AsrDataset, DatasetError
from stepaudio.eval.report import (
    Column,
    figures_markdown,
    headline_row,
    markdown_table,
    progress,
    provenance_markdown,
    spread,
    spread_note,
)
from stepaudio.text.metrics import ErrorCounts, language_unit, score

NORMALIZERS = ("auto", "english", "english+titles", "chinese", "none")
METRIC = {"word": "WER", "char": "CER"}


@dataclass(frozen=True)
class AsrRow:
    id: str
    audio: str
    language: str | None
    unit: str
    normalizer: str
    reference: str
    hypothesis: str
    normalized_reference: str
    normalized_hypothesis: str
    substitutions: int
    deletions: int
    insertions: int
    reference_length: int
    error_rate: float
    audio_seconds: float
    seconds: float


@dataclass(frozen=True)
class RateSummary:
    metric: str  # WER or CER
    unit: str
    normalizer: str
    utterances: int
    substitutions: int
    deletions: int
    insertions: int
    reference_length: int
    rate: float


@dataclass(frozen=True)
class AsrResult:
    dataset: str
    format: str
    synthetic: bool
    rows: tuple[AsrRow, ...]
    summaries: tuple[RateSummary, ...]
    audio_seconds: float
    seconds: float

    @property
    def rtf(self) -> float:
        return self.seconds / self.audio_seconds if self.audio_seconds else 0.0


def score_pair(reference: str, hypothesis: str, language: str | None, normalizer: str = "auto") -> dict[str, Any]:
    """Unit, normaliser name and counts for one utterance (the scoring rule `evaluate_asr` applies)."""
    if normalizer not in NORMALIZERS:
        raise DatasetError(f"unknown normalizer {normalizer!r}; choose one of {', '.join(NORMALIZERS)}")
    unit = language_unit(language, reference)
    name = normalizer if normalizer != "auto" else ("chinese" if unit == "char" else "english+titles")
    if name == "english+titles":
        from stepaudio.eval.bench.lite import expand_titles

        reference, hypothesis, base = expand_titles(reference), expand_titles(hypothesis), "english"
    else:
        base = name
    result = score(reference, hypothesis, unit, base)
    return {"unit": unit, "normalizer": name, "score": result}


def evaluate_asr(transcriber: Transcriber, dataset: AsrDataset, *, normalizer: str = "auto",
                 language: str | None = None, show_progress: bool = True) -> AsrResult:
    """Transcribe and score every utterance; `language` forces the decoding language (else each utterance's)."""
    rows = []
    items = progress(dataset.utterances, f"asr {dataset.name}", len(dataset.utterances)) if show_progress \
        else iter(dataset.utterances)
    for utt in items:
        try:
            audio = load_audio(utt.audio)
        except AudioError as exc:
            raise DatasetError(f"utterance {utt.id!r} ({utt.audio}): {exc}") from exc
        lang = language or utt.language
        start = time.perf_counter()
        hypothesis = transcriber.transcribe(audio, language=lang).text
        seconds = time.perf_counter() - start
        scored = score_pair(utt.text, hypothesis, lang, normalizer)
        item = scored["score"]
        counts = item.counts
        rows.append(AsrRow(utt.id, str(utt.audio), lang, scored["unit"], scored["normalizer"], utt.text, hypothesis,
                           item.normalized_reference, item.normalized_hypothesis, counts.substitutions,
                           counts.deletions, counts.insertions, counts.reference_length, counts.rate,
                           round(audio.duration, 3), round(seconds, 3)))
    return AsrResult(dataset.name, dataset.format, dataset.synthetic, tuple(rows), summarize_rows(rows),
                     sum(r.audio_seconds for r in rows), sum(r.seconds for r in rows))


def summarize_rows(rows: Sequence[AsrRow]) -> tuple[RateSummary, ...]:
    """One corpus rate per (unit, normaliser): total errors over total reference units."""
    groups: dict[tuple[str, str], list[AsrRow]] = {}
    for row in rows:
        groups.setdefault((row.unit, row.normalizer), []).append(row)
    out = []
    for (unit, name), group in sorted(groups.items()):
        total = ErrorCounts(0, 0, 0, 0)
        for row in group:
            total = total + ErrorCounts(row.substitutions, row.deletions, row.insertions, row.reference_length)
        out.append(RateSummary(METRIC[unit], unit, name, len(group), total.substitutions, total.deletions,
                               total.insertions, total.reference_length, total.rate))
    return tuple(out)


def asr_report(result: AsrResult, prov: Mapping[str, Any], *, description: str = "",
               repeats: Sequence[AsrResult] = ()) -> dict[str, Any]:
    """The JSON payload: headline rows with the nearest published benchmark, totals, rows, provenance.

    `repeats` are further runs of the same evaluation: the headline then gives the mean and the spread
    (the lite Whisper's temperature fallback samples from a generator that cannot be seeded)."""
    headline, spreads = [], {}
    for summary in result.summaries:
        ref = paper.nearest_asr_benchmark(result.dataset, summary.metric)
        notes = ["synthetic speech"] if result.synthetic else []
        value = summary.rate
        if repeats:
            rates = [summary.rate] + [s.rate for r in repeats for s in r.summaries if s.metric == summary.metric]
            spreads[summary.metric] = spread(rates)
            value = spreads[summary.metric]["mean"]
            notes.append(spread_note(spreads[summary.metric]))
        if ref is not None:
            notes.append(f"paper row is {ref.model} on {ref.benchmark}, not this set")
        headline.append(headline_row("asr", result.dataset, summary.metric, value, "%", ref, "; ".join(notes)))
    return {"schema": 1, "task": "asr", "dataset": {"name": result.dataset, "format": result.format,
                                                      "synthetic": result.synthetic, "description": description,
                                                      "utterances": len(result.rows)},
            "headline": headline, "summaries": result.summaries, "repeats": spreads,
            "audio_seconds": round(result.audio_seconds, 3), "seconds": round(result.seconds, 3),
            "rtf": round(result.rtf, 4), "rows": result.rows, "provenance": prov}


ROW_COLUMNS = (Column("id", "utterance"), Column("error_rate", "rate", "{:.1%}"), Column("reference", "reference"),
               Column("hypothesis", "hypothesis"))
SUMMARY_COLUMNS = (Column("metric", "metric"), Column("rate", "ours", "{:.2%}"), Column("paper", "paper (benchmark)"),
                   Column("utterances", "utterances"), Column("reference_length", "units"),
                   Column("substitutions", "sub"), Column("deletions", "del"), Column("insertions", "ins"),
                   Column("normalizer", "normaliser"))


def asr_markdown(payload: Mapping[str, Any], engine: str) -> str:
    """The Markdown report of `asr_report`'s payload (a JSON round trip gives the same page)."""
    data = payload["dataset"]
    lines = [f"# ASR: {data['name']} ({engine} engine)", ""]
    if data.get("synthetic"):
        lines += ["**Synthetic speech** (generated by a TTS voice, not recorded): a check of the pipeline, not a "
                  "measure of recognition of human speech.", ""]
    if data.get("description"):
        lines += [str(data["description"]), ""]
    summaries = []
    for summary in payload["summaries"]:
        item = summary if isinstance(summary, Mapping) else vars(summary)
        ref = paper.nearest_asr_benchmark(data["name"], item["metric"])
        summaries.append({**item, "paper": ref.label if ref else None})
    repeats = payload.get("repeats") or {}
    lines += [markdown_table(summaries, SUMMARY_COLUMNS), "", *figures_markdown(payload)]
    for metric, stats in repeats.items():
        lines += [f"{metric} over repeated runs: {spread_note(stats)}; the table and the rows below are the first "
                  "run (Whisper's temperature fallback samples, and its generator cannot be seeded).", ""]
    lines += [
              f"{data['utterances']} utterances, {payload['audio_seconds']:.1f} s of audio, real-time factor "
              f"{payload['rtf']:.3f}. Format `{data['format']}`. The paper column is the published Step-Audio-Chat "
              f"number on the named benchmark (a reference, not the same test set).", "",
              "## Per utterance", ""]
    rows = [r if isinstance(r, Mapping) else vars(r) for r in payload["rows"]]
    lines += [markdown_table(rows, ROW_COLUMNS), "", provenance_markdown(payload["provenance"]), ""]
    return "\n".join(lines)
