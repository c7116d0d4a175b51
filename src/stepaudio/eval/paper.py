"""The Step-Audio paper's published results (arXiv 2502.11946, REFERENCE.md §9) as data.

Reports put these beside our numbers as a reference column. A number only compares with ours when the
benchmark, the models and the scoring match; `nearest_asr_benchmark` says which published row a local
dataset is closest to, and the reports print that benchmark's name with the number so nobody reads a
LibriVox WER as a LibriSpeech result.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "Step-Audio, arXiv 2502.11946"


@dataclass(frozen=True)
class PaperResult:
    """One published number: `value` is in `unit` ('%' for error rates and accuracies, '' for scores)."""

    task: str  # asr, tts, chat
    benchmark: str
    metric: str  # CER, WER, SS, factuality, relevance, chat score
    value: float
    unit: str
    model: str
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.value:g}{self.unit} ({self.benchmark})"


PAPER_RESULTS: tuple[PaperResult, ...] = (
    PaperResult("asr", "Aishell-1", "CER", 1.95, "%", "Step-Audio-Chat"),
    PaperResult("asr", "Aishell-2 ios", "CER", 3.57, "%", "Step-Audio-Chat"),
    PaperResult("asr", "Wenet test-net", "CER", 8.75, "%", "Step-Audio-Chat"),
    PaperResult("asr", "Wenet test-meeting", "CER", 9.52, "%", "Step-Audio-Chat"),
    PaperResult("asr", "LibriSpeech test-clean", "WER", 3.11, "%", "Step-Audio-Chat"),
    PaperResult("asr", "LibriSpeech test-other", "WER", 8.44, "%", "Step-Audio-Chat"),
    PaperResult("tts", "SEED test-zh", "CER", 1.31, "%", "Step-Audio-TTS-3B"),
    PaperResult("tts", "SEED test-en", "WER", 2.31, "%", "Step-Audio-TTS-3B"),
    PaperResult("tts", "SEED test-zh", "SS", 0.733, "", "Step-Audio-TTS-3B",
                "SEED-TTS-eval speaker model (WavLM-large SV), not comparable with other speaker encoders"),
    PaperResult("tts", "SEED test-en", "SS", 0.660, "", "Step-Audio-TTS-3B",
                "SEED-TTS-eval speaker model (WavLM-large SV), not comparable with other speaker encoders"),
    PaperResult("chat", "StepEval-Audio-360", "factuality", 66.4, "%", "Step-Audio-Chat", "LLM judge"),
    PaperResult("chat", "StepEval-Audio-360", "relevance", 75.2, "%", "Step-Audio-Chat", "LLM judge"),
    PaperResult("chat", "StepEval-Audio-360", "chat score", 4.11, "", "Step-Audio-Chat", "LLM judge, 1-5"),
    PaperResult("realtime", "speculative generation", "commit rate", 40.0, "%", "Step-Audio realtime"),
)

# Substrings of a local dataset's name or format -> the published benchmark it most resembles.
_ASR_NEAREST: tuple[tuple[str, str], ...] = (
    ("test-other", "LibriSpeech test-other"),
    ("test_other", "LibriSpeech test-other"),
    ("librispeech", "LibriSpeech test-clean"),
    ("librivox", "LibriSpeech test-clean"),  # LibriSpeech is cut from LibriVox audiobooks
    ("aishell2", "Aishell-2 ios"),
    ("aishell-2", "Aishell-2 ios"),
    ("aishell", "Aishell-1"),
    ("meeting", "Wenet test-meeting"),
    ("wenet", "Wenet test-net"),
)


def find(task: str, benchmark: str, metric: str) -> PaperResult | None:
    for result in PAPER_RESULTS:
        if (result.task, result.benchmark.lower(), result.metric.lower()) == (task, benchmark.lower(), metric.lower()):
            return result
    return None


def results_for(task: str) -> list[PaperResult]:
    return [r for r in PAPER_RESULTS if r.task == task]


def nearest_asr_benchmark(name: str, metric: str) -> PaperResult | None:
    """The published ASR row a local dataset (by name, e.g. 'librivox', 'aishell-dev') is closest to, if any."""
    key = name.lower()
    for needle, benchmark in _ASR_NEAREST:
        if needle in key:
            found = find("asr", benchmark, metric)
            if found is not None:
                return found
    return None


def seed_tts_reference(language: str, metric: str) -> PaperResult | None:
    """The SEED test row for a testset language ('zh' / 'cn' -> test-zh, 'en' -> test-en); SEED has no other
    language (Japanese has no published row)."""
    key = language.lower()
    benchmark = "SEED test-zh" if key in ("zh", "cn", "cmn", "chinese") else "SEED test-en" if key.startswith(
        "en") or key == "english" else None
    return find("tts", benchmark, metric) if benchmark else None
