"""Dataset loaders on small folders written here in each layout, plus Debian's real pocketsphinx-testdata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import save_audio
from stepaudio.eval.datasets import (
    DatasetError,
    TtsCase,
    detect_format,
    load_asr_dataset,
    load_seed_tts,
    write_seed_tts,
)

TESTDATA = Path("/usr/share/pocketsphinx/test/data")


def _wav(path: Path) -> Path:
    save_audio(path, (0.1 * np.sin(np.arange(1600) / 5)).astype(np.float32), 16000)
    return path


def _librispeech(root: Path) -> Path:
    chapter = root / "test-clean" / "19" / "198"
    chapter.mkdir(parents=True)
    (chapter / "19-198.trans.txt").write_text("19-198-0000 NORTHANGER ABBEY\n19-198-0001 THIS LITTLE WORK\n")
    _wav(chapter / "19-198-0000.wav")
    save_audio(chapter / "19-198-0001.flac", np.zeros(800, dtype=np.float32) + 0.01, 16000)
    return root


def test_librispeech_layout(tmp_path: Path) -> None:
    data = load_asr_dataset(_librispeech(tmp_path / "ls"))
    assert data.format == "librispeech" and data.name == "ls"
    assert [(u.id, u.text, u.language, u.audio.suffix) for u in data.utterances] == [
        ("19-198-0000", "NORTHANGER ABBEY", "en", ".wav"), ("19-198-0001", "THIS LITTLE WORK", "en", ".flac")]
    (tmp_path / "ls" / "test-clean" / "19" / "198" / "19-198-0000.wav").unlink()
    with pytest.raises(DatasetError, match=r"trans\.txt:1: no audio file 19-198-0000"):
        load_asr_dataset(tmp_path / "ls", "librispeech")


def test_aishell_layout_keeps_the_split_present_and_joins_words(tmp_path: Path) -> None:
    root = tmp_path / "aishell"
    (root / "transcript").mkdir(parents=True)
    (root / "transcript" / "aishell_transcript_v0.8.txt").write_text(
        "BAC009S0764W0121 甚至 出现 交易 几乎 停滞 的 情况\nBAC009S0002W0122 而 对 楼市 成交\n", encoding="utf-8")
    _wav(root / "wav" / "test" / "S0764" / "BAC009S0764W0121.wav")
    data = load_asr_dataset(root)
    assert data.format == "aishell"
    expected = [("BAC009S0764W0121", "甚至出现交易几乎停滞的情况", "zh")]
    assert [(u.id, u.text, u.language) for u in data.utterances] == expected


def test_kaldi_layout_and_its_errors(tmp_path: Path) -> None:
    root = tmp_path / "kaldi"
    root.mkdir()
    _wav(root / "a.wav")
    (root / "wav.scp").write_text("utt1\ta.wav\n")
    (root / "text").write_text("utt1 hello there\n")
    data = load_asr_dataset(root, language="en")
    assert data.format == "kaldi" and data.utterances[0].text == "hello there"
    assert data.utterances[0].language == "en" and data.utterances[0].audio == root / "a.wav"
    (root / "text").write_text("utt1 hello\nutt2 missing\n")
    with pytest.raises(DatasetError, match=r"text:2: utterance 'utt2' has no entry in wav.scp"):
        load_asr_dataset(root)
    (root / "wav.scp").write_text("utt1 sox a.flac -t wav - |\n")
    with pytest.raises(DatasetError, match="piped commands"):
        load_asr_dataset(root)
    (root / "wav.scp").write_text("utt1\n")
    with pytest.raises(DatasetError, match=r"wav.scp:1: expected 'ID TEXT'"):
        load_asr_dataset(root)


def test_jsonl_manifest_marks_synthetic_and_reports_bad_lines(tmp_path: Path) -> None:
    root = tmp_path / "j"
    root.mkdir()
    _wav(root / "x.wav")
    lines = [{"audio": "x.wav", "text": "你好", "language": "zh", "synthetic": True},
             {"audio": "x.wav", "text": "hi", "id": "b"}]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    data = load_asr_dataset(root)
    assert data.synthetic and data.format == "jsonl"
    assert [(u.id, u.language) for u in data.utterances] == [("x", "zh"), ("b", None)]
    assert len(load_asr_dataset(root / "manifest.jsonl", limit=1).utterances) == 1
    (root / "manifest.jsonl").write_text('{"audio": "x.wav"}\n')
    with pytest.raises(DatasetError, match=r"manifest.jsonl:1: each line needs string fields"):
        load_asr_dataset(root)
    (root / "manifest.jsonl").write_text('{"audio": "x.wav", "text": "a"}\n{"audio": "x.wav", "text": "b"}\n')
    with pytest.raises(DatasetError, match="'x' appears twice"):
        load_asr_dataset(root)
    (root / "manifest.jsonl").write_text("{oops\n")
    with pytest.raises(DatasetError, match=r":1: not JSON"):
        load_asr_dataset(root)
    (root / "manifest.jsonl").write_text('{"audio": "gone.wav", "text": "a"}\n')
    with pytest.raises(DatasetError, match="audio not found"):
        load_asr_dataset(root)


def test_sphinx_layout_and_format_detection(tmp_path: Path) -> None:
    root = tmp_path / "cards"
    root.mkdir()
    _wav(root / "001.wav")
    (root / "cards.transcription").write_text("<s> ten of clubs  </s> (001)\n")
    data = load_asr_dataset(root)
    assert data.format == "sphinx" and data.utterances[0].text == "ten of clubs"
    (root / "cards.transcription").write_text("ten of clubs (001)\n")
    with pytest.raises(DatasetError, match=r"transcription:1: expected '<s> TEXT </s> \(FILEID\)'"):
        load_asr_dataset(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="cannot tell the layout"):
        detect_format(tmp_path / "empty")
    with pytest.raises(DatasetError, match="not found"):
        load_asr_dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="unknown dataset format"):
        load_asr_dataset(root, "timit")


@pytest.mark.skipif(not (TESTDATA / "librivox" / "transcription").is_file(),
                    reason="real recordings absent: apt-get install pocketsphinx-testdata")
def test_pocketsphinx_testdata_recordings() -> None:
    librivox = load_asr_dataset(TESTDATA / "librivox")
    cards = load_asr_dataset(TESTDATA / "cards")
    assert len(librivox.utterances) == 5 and len(cards.utterances) == 5
    assert librivox.utterances[1].text == "he was not an ill disposed young man"
    assert cards.utterances[0].text == "ten of clubs" and cards.utterances[0].audio.name == "001.wav"
    assert sum(len(u.text.split()) for u in librivox.utterances) == 71


def test_seed_tts_meta_round_trip_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "zh"
    prompt = _wav(root / "prompt-wavs" / "p1.wav")
    gt = _wav(root / "wavs" / "g1.wav")
    write_seed_tts(root, [TtsCase("u1", "参考文本。", prompt, "目标文本。", gt),
                          TtsCase("u2", "再来一句", prompt, "第二句")],
                   language="zh", synthetic=True, description="test set")
    assert (root / "meta.lst").read_text(encoding="utf-8").splitlines()[0] == \
        "u1|参考文本。|prompt-wavs/p1.wav|目标文本。|wavs/g1.wav"
    testset = load_seed_tts(root)
    assert testset.language == "zh" and testset.synthetic and testset.description == "test set"
    assert testset.cases[0] == TtsCase("u1", "参考文本。", prompt, "目标文本。", gt)
    assert testset.cases[1].reference_audio is None
    assert load_seed_tts(root, limit=1, language="en").language == "en"
    (root / "meta.lst").write_text("u1|only|three\n")
    with pytest.raises(DatasetError, match=r"meta.lst:1: expected 'utt\|prompt_text\|prompt_wav\|target_text"):
        load_seed_tts(root)
    (root / "meta.lst").write_text("u1|t|prompt-wavs/none.wav|x\n")
    with pytest.raises(DatasetError, match=r"meta.lst:1: audio not found"):
        load_seed_tts(root)
    with pytest.raises(DatasetError, match="sub-folders with one: zh"):
        load_seed_tts(tmp_path)
    with pytest.raises(DatasetError, match="cannot appear"):
        write_seed_tts(root, [TtsCase("a|b", "t", prompt, "x")], language="zh", synthetic=False, description="")


def test_seed_tts_language_from_folder_or_text(tmp_path: Path) -> None:
    for name, target, expected in (("en", "你好世界", "en"), ("set1", "Hello world, how are you?", "en"),
                                   ("set2", "你好世界", "zh")):
        root = tmp_path / name
        prompt = _wav(root / "p.wav")
        (root / "meta.lst").write_text(f"u|prompt text|{prompt.name}|{target}\n", encoding="utf-8")
        assert load_seed_tts(root).language == expected
