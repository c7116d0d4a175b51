"""Evaluation sets from local folders: ASR corpora in five layouts and SEED-TTS-eval test sets.

ASR layouts (`load_asr_dataset(root, format)`; `auto` picks by the files present):
- `librispeech`: `**/*.trans.txt` lines `ID TEXT`, audio `ID.flac` (or .wav) beside the listing; English.
- `aishell`: `transcript/*.txt` lines `ID TEXT` (words space-separated), audio `wav/**/ID.wav`; Mandarin.
- `kaldi`: `wav.scp` (`ID PATH`, relative to the folder; piped commands are refused) and `text` (`ID TEXT`).
- `jsonl`: a `.jsonl` file (or a folder with `manifest.jsonl`) of `{"audio", "text", "language"?, "id"?}`;
  audio relative to the file. A line or `dataset.json` with `"synthetic": true` marks the set synthetic.
- `sphinx`: CMU Sphinx test layout (Debian `pocketsphinx-testdata` librivox/ and cards/): a `*transcription`
  file of `<s> TEXT </s> (FILEID)` lines, audio `FILEID.wav`.

SEED-TTS-eval (`load_seed_tts(root)`): `meta.lst` lines `utt|prompt_text|prompt_wav|target_text` with an
optional fifth field, the ground-truth wav; wav paths are relative to the folder holding `meta.lst`. A root
with `zh/` (or `cn/`) and `en/` sub-folders is the released layout: pass the sub-folder.

Every problem with the input (missing folder, file, audio, bad line, duplicate id) is a `DatasetError` that
names the file and line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stepaudio.errors import StepAudioError

ASR_FORMATS = ("auto", "librispeech", "aishell", "kaldi", "jsonl", "sphinx")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
_SPHINX_LINE = re.compile(r"^<s>\s*(.*?)\s*</s>\s*\(([^()]+)\)\s*$")


class DatasetError(StepAudioError, ValueError):
    """An evaluation set that cannot be read: the message names the file (and line) at fault."""


@dataclass(frozen=True)
class Utterance:
    id: str
    audio: Path
    text: str
    language: str | None = None


@dataclass(frozen=True)
class AsrDataset:
    name: str
    format: str
    root: Path
    utterances: tuple[Utterance, ...]
    synthetic: bool = False
    description: str = ""


@dataclass(frozen=True)
class TtsCase:
    id: str
    prompt_text: str
    prompt_audio: Path
    target_text: str
    reference_audio: Path | None = None


@dataclass(frozen=True)
class TtsTestset:
    name: str
    root: Path
    language: str
    cases: tuple[TtsCase, ...]
    synthetic: bool = False
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def load_asr_dataset(root: str | Path, format: str = "auto", *, language: str | None = None,
                     name: str | None = None, limit: int | None = None) -> AsrDataset:
    """Read an ASR set; `language` overrides the layout's default (and a jsonl line's own)."""
    path = Path(root)
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    if format not in ASR_FORMATS:
        raise DatasetError(f"unknown dataset format {format!r}; choose one of {', '.join(ASR_FORMATS)}")
    chosen = detect_format(path) if format == "auto" else format
    reader = {"librispeech": _librispeech, "aishell": _aishell, "kaldi": _kaldi, "jsonl": _jsonl,
              "sphinx": _sphinx}[chosen]
    utterances, synthetic, description = reader(path)
    if language:
        utterances = [Utterance(u.id, u.audio, u.text, language) for u in utterances]
    _check_unique((u.id for u in utterances), path)
    if not utterances:
        raise DatasetError(f"no utterances found in {path} ({chosen} layout)")
    if limit is not None:
        utterances = utterances[:limit]
    label = name or (path.stem if path.is_file() else path.name)
    return AsrDataset(label, chosen, path, tuple(utterances), synthetic, description)


def detect_format(path: Path) -> str:
    if path.is_file():
        if path.suffix == ".jsonl":
            return "jsonl"
        raise DatasetError(f"{path} is a file; a dataset is a folder (or a .jsonl manifest)")
    if (path / "wav.scp").is_file():
        return "kaldi"
    if (path / "manifest.jsonl").is_file():
        return "jsonl"
    if (path / "transcript").is_dir():
        return "aishell"
    if next(path.glob("*transcription"), None) is not None:
        return "sphinx"
    if next(path.rglob("*.trans.txt"), None) is not None:
        return "librispeech"
    raise DatasetError(f"cannot tell the layout of {path}: expected wav.scp, manifest.jsonl, transcript/, "
                       f"a *transcription file or *.trans.txt files (or pass --format)")


def _id_text_lines(listing: Path) -> Iterable[tuple[int, str, str]]:
    for number, raw in enumerate(_read(listing).splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise DatasetError(f"{listing}:{number}: expected 'ID TEXT', got {raw!r}")
        yield number, parts[0], parts[1].strip()


def _librispeech(root: Path) -> tuple[list[Utterance], bool, str]:
    found = []
    for listing in sorted(root.rglob("*.trans.txt")):
        for number, key, text in _id_text_lines(listing):
            found.append(Utterance(key, _audio_beside(listing.parent, key, f"{listing}:{number}"), text, "en"))
    return found, False, "LibriSpeech layout"


def _aishell(root: Path) -> tuple[list[Utterance], bool, str]:
    listings = sorted((root / "transcript").glob("*.txt"))
    if not listings:
        raise DatasetError(f"no transcript/*.txt in {root}")
    audio = {p.stem: p for p in (root / "wav").rglob("*.wav")} if (root / "wav").is_dir() else {}
    if not audio:
        raise DatasetError(f"no wav/**/*.wav under {root}")
    found = []
    for listing in listings:
        for _, key, text in _id_text_lines(listing):
            if key in audio:  # the transcript covers train/dev/test; the wav tree holds the split at hand
                found.append(Utterance(key, audio[key], text.replace(" ", ""), "zh"))
    return found, False, "AISHELL layout"


def _kaldi(root: Path) -> tuple[list[Utterance], bool, str]:
    scp, text_file = root / "wav.scp", root / "text"
    if not text_file.is_file():
        raise DatasetError(f"kaldi layout needs a 'text' file beside {scp}")
    paths: dict[str, Path] = {}
    for number, key, value in _id_text_lines(scp):
        if value.endswith("|"):
            raise DatasetError(f"{scp}:{number}: piped commands are not run; convert the audio to files first")
        audio = Path(value) if Path(value).is_absolute() else root / value
        if not audio.is_file():
            raise DatasetError(f"{scp}:{number}: audio not found: {audio}")
        paths[key] = audio
    found = []
    for number, key, text in _id_text_lines(text_file):
        if key not in paths:
            raise DatasetError(f"{text_file}:{number}: utterance {key!r} has no entry in wav.scp")
        found.append(Utterance(key, paths[key], text, None))
    return found, False, "Kaldi data directory"


def _jsonl(path: Path) -> tuple[list[Utterance], bool, str]:
    manifest = path if path.is_file() else path / "manifest.jsonl"
    info = _dataset_info(manifest.parent)
    synthetic = bool(info.get("synthetic", False))
    found = []
    for number, raw in enumerate(_read(manifest).splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{manifest}:{number}"
        try:
            item = json.loads(raw)
        except ValueError as exc:
            raise DatasetError(f"{where}: not JSON ({exc})") from exc
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("audio", "text")):
            raise DatasetError(f"{where}: each line needs string fields 'audio' and 'text'")
        audio = Path(item["audio"]) if Path(item["audio"]).is_absolute() else manifest.parent / item["audio"]
        if not audio.is_file():
            raise DatasetError(f"{where}: audio not found: {audio}")
        language = item.get("language")
        synthetic = synthetic or bool(item.get("synthetic", False))
        found.append(Utterance(str(item.get("id") or audio.stem), audio, item["text"],
                               language if isinstance(language, str) else None))
    return found, synthetic, str(info.get("description", "JSON lines manifest"))


def _sphinx(root: Path) -> tuple[list[Utterance], bool, str]:
    listings = sorted(root.glob("*transcription"))
    if not listings:
        raise DatasetError(f"no *transcription file in {root}")
    found = []
    for listing in listings:
        for number, raw in enumerate(_read(listing).splitlines(), 1):
            if not raw.strip():
                continue
            match = _SPHINX_LINE.match(raw.strip())
            if match is None:
                raise DatasetError(f"{listing}:{number}: expected '<s> TEXT </s> (FILEID)', got {raw!r}")
            text, file_id = " ".join(match.group(1).split()), match.group(2).strip()
            found.append(Utterance(Path(file_id).name, _audio_beside(root, file_id, f"{listing}:{number}"), text,
                                   "en"))
    return found, False, "CMU Sphinx test layout"


def load_seed_tts(root: str | Path, *, language: str | None = None, name: str | None = None,
                  limit: int | None = None) -> TtsTestset:
    """Read a SEED-TTS-eval folder (`meta.lst` + prompt wavs). Language: given, else from the folder name
    (`zh`/`cn` -> zh, `en` -> en), else from `dataset.json`, else from the script of the target texts."""
    path = Path(root)
    meta = path if path.is_file() else path / "meta.lst"
    if not meta.is_file():
        subs = [p.name for p in sorted(path.iterdir()) if (p / "meta.lst").is_file()] if path.is_dir() else []
        hint = f"; sub-folders with one: {', '.join(subs)}" if subs else ""
        raise DatasetError(f"no meta.lst in {path}{hint}")
    folder = meta.parent
    info = _dataset_info(folder)
    cases = []
    for number, raw in enumerate(_read(meta).splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{meta}:{number}"
        fields = [f.strip() for f in raw.split("|")]
        if len(fields) not in (4, 5) or not all(fields[:4]):
            raise DatasetError(f"{where}: expected 'utt|prompt_text|prompt_wav|target_text[|gt_wav]', got {raw!r}")
        prompt = _relative_audio(folder, fields[2], where)
        reference = _relative_audio(folder, fields[4], where) if len(fields) == 5 and fields[4] else None
        cases.append(TtsCase(fields[0], fields[1], prompt, fields[3], reference))
    _check_unique((c.id for c in cases), meta)
    if not cases:
        raise DatasetError(f"{meta} lists no cases")
    lang = language or _language_from_name(folder.name) or info.get("language") or _language_of_texts(
        [c.target_text for c in cases])
    if limit is not None:
        cases = cases[:limit]
    return TtsTestset(name or info.get("name") or folder.name, folder, str(lang), tuple(cases),
                      bool(info.get("synthetic", False)), str(info.get("description", "")))


def write_seed_tts(root: str | Path, cases: Sequence[TtsCase], *, language: str, synthetic: bool,
                   description: str, name: str | None = None) -> Path:
    """Write `meta.lst` (and `dataset.json` saying whether it is synthetic) for cases whose wavs are under root."""
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for case in cases:
        for text in (case.id, case.prompt_text, case.target_text):
            if "|" in text or "\n" in text:
                raise DatasetError(f"case {case.id!r}: '|' and newlines cannot appear in meta.lst fields")
        fields = [case.id, case.prompt_text, _relative_to(case.prompt_audio, folder), case.target_text]
        if case.reference_audio is not None:
            fields.append(_relative_to(case.reference_audio, folder))
        lines.append("|".join(fields))
    (folder / "meta.lst").write_text("\n".join(lines) + "\n", encoding="utf-8")
    info = {"name": name or folder.name, "language": language, "synthetic": synthetic, "description": description}
    (folder / "dataset.json").write_text(json.dumps(info, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return folder / "meta.lst"


def _relative_to(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


def _relative_audio(folder: Path, value: str, where: str) -> Path:
    audio = Path(value) if Path(value).is_absolute() else folder / value
    if not audio.is_file():
        raise DatasetError(f"{where}: audio not found: {audio}")
    return audio


def _audio_beside(folder: Path, key: str, where: str) -> Path:
    for suffix in AUDIO_SUFFIXES:
        candidate = folder / f"{key}{suffix}"
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{where}: no audio file {key}.wav/.flac/... in {folder}")


def _dataset_info(folder: Path) -> dict[str, str]:
    info_file = folder / "dataset.json"
    if not info_file.is_file():
        return {}
    try:
        info = json.loads(_read(info_file))
    except ValueError as exc:
        raise DatasetError(f"{info_file}: not JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise DatasetError(f"{info_file}: expected a JSON object")
    return info


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DatasetError(f"file not found: {path}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def _check_unique(ids: Iterable[str], where: Path) -> None:
    seen: set[str] = set()
    for key in ids:
        if key in seen:
            raise DatasetError(f"{where}: utterance id {key!r} appears twice")
        seen.add(key)


def _language_from_name(name: str) -> str | None:
    key = name.lower()
    if key in ("zh", "cn", "cmn", "chinese", "mandarin") or key.endswith(("-zh", "_zh", "-cn", "_cn")):
        return "zh"
    if key in ("en", "english") or key.endswith(("-en", "_en")):
        return "en"
    return None


def _language_of_texts(texts: Sequence[str]) -> str:
    han = sum(1 for t in texts for ch in t if "\u4e00" <= ch <= "\u9fff")
    letters = sum(1 for t in texts for ch in t if ch.isascii() and ch.isalpha())
    return "zh" if han > letters else "en"
