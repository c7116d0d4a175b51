"""TTS evaluation in the SEED-TTS-eval manner: clone each prompt voice, say the target text, transcribe the
result with a named ASR model and score CER (Chinese) / WER, and compare speakers with a pinned model.

Engines that cannot clone (the lite engine) are handled honestly: with `clone="fallback"` the first case's
clone request is tried, and when it is refused while plain synthesis of the same text works, every case is
spoken with one fixed voice, the engine's default or `fallback_voice` when given, and the result says which
(`voice_mode`, `clone_error`); speaker similarity then measures how close that voice is to each prompt
speaker, not cloning quality.
With `clone="strict"` the refusal is an `UnsupportedError`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stepaudio.audio.io import Audio, load_audio, save_audio
from stepaudio.engines.base import Synthesizer, Transcriber, Voice
from stepaudio.errors import AudioError, StepAudioError, UnsupportedError
from stepaudio.eval import paper
from stepaudio.eval.asr import METRIC, score_pair
from stepaudio.eval.datasets import DatasetError, TtsCase, TtsTestset
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
from stepaudio.eval.speaker import SpeakerEncoder
from stepaudio.text.metrics import ErrorCounts

CLONE_POLICIES = ("fallback", "strict")
CLONE = "clone"
DEFAULT_VOICE = "default voice (not a clone)"


def fixed_voice_mode(voice: str | None) -> str:
    """The `voice_mode` of a run spoken by one voice: the engine's default, or the one it was given."""
    return DEFAULT_VOICE if voice is None else f"voice {voice} (not a clone)"


def _spoken_by(voice_mode: str) -> str:
    if voice_mode == DEFAULT_VOICE:
        return "the engine's default voice"
    return f"the one voice {voice_mode.removeprefix('voice ').removesuffix(' (not a clone)')}"


@dataclass(frozen=True)
class TtsEvalConfig:
    clone: str = "fallback"
    fallback_voice: str | None = None  # None: the engine's own choice for the text's language
    normalizer: str = "auto"
    wav_dir: Path | None = None  # keep the synthesised wavs here


@dataclass(frozen=True)
class TtsRow:
    id: str
    target_text: str
    hypothesis: str
    normalized_reference: str
    normalized_hypothesis: str
    unit: str
    normalizer: str
    substitutions: int
    deletions: int
    insertions: int
    reference_length: int
    error_rate: float
    similarity: float | None
    similarity_note: str
    voice_mode: str
    prompt_audio: str
    audio_seconds: float
    synth_seconds: float
    wav: str | None


@dataclass(frozen=True)
class TtsResult:
    testset: str
    language: str
    synthetic: bool
    voice_mode: str
    clone_error: str | None
    rows: tuple[TtsRow, ...]
    metric: str
    rate: float
    similarity: float | None  # mean over the cases that have one
    audio_seconds: float
    synth_seconds: float

    @property
    def rtf(self) -> float:
        return self.synth_seconds / self.audio_seconds if self.audio_seconds else 0.0


def speak(synthesizer: Synthesizer, text: str, voice: Voice | str | None) -> Audio:
    """All chunks of one synthesis as one `Audio`."""
    chunks = [c for c in synthesizer.synthesize(text, voice) if c.samples.size]
    if not chunks:
        raise AudioError(f"the synthesizer produced no audio for {text!r}")
    return Audio(np.concatenate([c.samples for c in chunks]).astype(np.float32), chunks[0].sample_rate)


def _clone_voice(case: TtsCase) -> Voice:
    return Voice(case.id, prompt_audio=case.prompt_audio, prompt_text=case.prompt_text)


def _first_audio(synthesizer: Synthesizer, case: TtsCase, config: TtsEvalConfig) -> tuple[Audio, str, str | None]:
    """Synthesise the first case, deciding whether this engine clones (see the module docstring)."""
    try:
        return speak(synthesizer, case.target_text, _clone_voice(case)), CLONE, None
    except AudioError:
        raise
    except StepAudioError as exc:
        refusal = f"{type(exc).__name__}: {exc}"
        if config.clone == "strict":
            raise UnsupportedError(f"the engine refused to clone the prompt voice ({refusal})") from exc
        try:
            audio = speak(synthesizer, case.target_text, config.fallback_voice)
        except StepAudioError:
            raise exc from None
        return audio, fixed_voice_mode(config.fallback_voice), refusal


def evaluate_tts(synthesizer: Synthesizer, transcriber: Transcriber, testset: TtsTestset,
                 speaker: SpeakerEncoder | None, config: TtsEvalConfig | None = None,
                 show_progress: bool = True) -> TtsResult:
    cfg = config or TtsEvalConfig()
    if cfg.clone not in CLONE_POLICIES:
        raise StepAudioError(f"unknown clone policy {cfg.clone!r}; choose one of {', '.join(CLONE_POLICIES)}")
    if cfg.wav_dir is not None:
        cfg.wav_dir.mkdir(parents=True, exist_ok=True)
    rows: list[TtsRow] = []
    mode, refusal = CLONE, None
    cases = progress(testset.cases, f"tts {testset.name}", len(testset.cases)) if show_progress \
        else iter(testset.cases)
    for index, case in enumerate(cases):
        try:
            load_audio(case.prompt_audio)
        except AudioError as exc:
            raise DatasetError(f"case {case.id!r}: prompt {case.prompt_audio}: {exc}") from exc
        start = time.perf_counter()
        if index == 0:
            audio, mode, refusal = _first_audio(synthesizer, case, cfg)
        else:
            audio = speak(synthesizer, case.target_text, _clone_voice(case) if mode == CLONE else cfg.fallback_voice)
        seconds = time.perf_counter() - start
        wav = None
        if cfg.wav_dir is not None:
            wav = str(save_audio(cfg.wav_dir / f"{case.id}.wav", audio.samples, audio.sample_rate))
        hypothesis = transcriber.transcribe(audio, language=testset.language).text
        scored = score_pair(case.target_text, hypothesis, testset.language, cfg.normalizer)
        item, counts = scored["score"], scored["score"].counts
        similarity, note = _similarity(speaker, case, audio)
        rows.append(TtsRow(case.id, case.target_text, hypothesis, item.normalized_reference,
                           item.normalized_hypothesis, scored["unit"], scored["normalizer"], counts.substitutions,
                           counts.deletions, counts.insertions, counts.reference_length, counts.rate, similarity,
                           note, mode, str(case.prompt_audio), round(audio.duration, 3), round(seconds, 3), wav))
    total = ErrorCounts(0, 0, 0, 0)
    for row in rows:
        total = total + ErrorCounts(row.substitutions, row.deletions, row.insertions, row.reference_length)
    sims = [r.similarity for r in rows if r.similarity is not None]
    return TtsResult(testset.name, testset.language, testset.synthetic, mode, refusal, tuple(rows),
                     METRIC[rows[0].unit], total.rate, float(np.mean(sims)) if sims else None,
                     sum(r.audio_seconds for r in rows), sum(r.synth_seconds for r in rows))


def _similarity(speaker: SpeakerEncoder | None, case: TtsCase, audio: Audio) -> tuple[float | None, str]:
    if speaker is None:
        return None, "no speaker model"
    try:
        return round(speaker.similarity(load_audio(case.prompt_audio), audio), 4), ""
    except AudioError as exc:
        return None, str(exc)


def tts_report(result: TtsResult, prov: Mapping[str, Any], *, asr_model: str, speaker_model: str | None,
               description: str = "", repeats: Sequence[TtsResult] = ()) -> dict[str, Any]:
    """The JSON payload: headline (CER/WER and SS with the SEED test references), rows, provenance.

    `repeats` are further runs: the headline then gives means and spreads (Piper's noise and Whisper's
    fallback sampling cannot be seeded)."""
    cloned = result.voice_mode == CLONE
    notes = [] if cloned else [f"not a clone: {_spoken_by(result.voice_mode)} spoke every case"]
    if result.synthetic:
        notes.append("synthetic prompts: SS between synthetic voices says little about real speakers")
    rate_ref = paper.seed_tts_reference(result.language, result.metric)
    ss_ref = paper.seed_tts_reference(result.language, "SS")
    rate, similarity, spreads = result.rate, result.similarity, {}
    rate_notes, ss_notes = list(notes), list(notes)
    if repeats:
        spreads[result.metric] = spread([result.rate] + [r.rate for r in repeats])
        rate = spreads[result.metric]["mean"]
        rate_notes.append(spread_note(spreads[result.metric]))
        sims = [r.similarity for r in (result, *repeats) if r.similarity is not None]
        if similarity is not None and sims:
            spreads["SS"] = spread(sims)
            similarity = spreads["SS"]["mean"]
            ss_notes.append(spread_note(spreads["SS"], ""))
    ss_notes.append(f"speaker model {speaker_model}; the paper's SS used WavLM-large SV: not comparable")
    headline = [headline_row("tts", result.testset, f"{result.metric} ({asr_model})", rate, "%", rate_ref,
                             "; ".join(rate_notes))]
    if similarity is not None:
        headline.append(headline_row("tts", result.testset, "SS", similarity, "", ss_ref, "; ".join(ss_notes)))
    return {"schema": 1, "task": "tts",
            "testset": {"name": result.testset, "language": result.language, "synthetic": result.synthetic,
                        "description": description, "cases": len(result.rows)},
            "voice_mode": result.voice_mode, "clone_error": result.clone_error, "asr_model": asr_model,
            "speaker_model": speaker_model, "headline": headline, "metric": result.metric, "rate": result.rate,
            "similarity": result.similarity, "repeats": spreads, "audio_seconds": round(result.audio_seconds, 3),
            "synth_seconds": round(result.synth_seconds, 3), "rtf": round(result.rtf, 4), "rows": result.rows,
            "provenance": prov}


ROW_COLUMNS = (Column("id", "case"), Column("error_rate", "rate", "{:.1%}"), Column("similarity", "SS", "{:.3f}"),
               Column("target_text", "target text"), Column("hypothesis", "heard"))


def tts_markdown(payload: Mapping[str, Any], engine: str) -> str:
    """The Markdown page for a JSON-ready `tts_report` payload."""
    data = payload["testset"]
    lines = [f"# TTS: {data['name']} ({engine} engine)", ""]
    if payload["voice_mode"] != CLONE:
        lines += [f"**Not a voice clone.** The engine refused the prompt voice ({payload['clone_error']}), so each "
                  f"case was spoken with {_spoken_by(payload['voice_mode'])}; SS measures that voice against each "
                  "prompt speaker.", ""]
    if data.get("synthetic"):
        lines += ["**Synthetic prompts**: the prompt speech was generated by a TTS voice, not recorded.", ""]
    if data.get("description"):
        lines += [str(data["description"]), ""]
    heads = [{"metric": h["metric"], "ours": h["value"], "paper": h["paper"], "note": h["note"]}
             for h in payload["headline"]]
    lines += [markdown_table(heads, (Column("metric", "metric"), Column("ours", "ours"),
                                     Column("paper", "paper (benchmark)"), Column("note", "note"))), "",
              f"{data['cases']} cases ({data['language']}), {payload['audio_seconds']:.1f} s synthesised, "
              f"synthesis real-time factor {payload['rtf']:.3f}. Intelligibility by `{payload['asr_model']}`; "
              f"speaker similarity by `{payload['speaker_model']}`. The paper column is Step-Audio-TTS-3B on the "
              "SEED test set (a reference: other sentences, other ASR and speaker models).", "",
              *(f"{metric} over repeated runs: {spread_note(stats, '%' if metric != 'SS' else '')}; the rows below "
                "are the first run." for metric, stats in (payload.get("repeats") or {}).items()), "",
              *figures_markdown(payload),
              "## Per case", "", markdown_table(payload["rows"], ROW_COLUMNS), "",
              provenance_markdown(payload["provenance"]), ""]
    return "\n".join(lines)
