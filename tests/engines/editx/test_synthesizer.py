"""Clone and edit through the editx engine on a tiny release folder: the prompts the LM gets are the reference's
(conformance-tested builders fed the reference's preprocessing), audio comes out at 24 kHz, and a three-step edit
chain feeds each output back in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import load_audio, save_audio
from stepaudio.engines.base import Engine, SpeechInstructions, Voice
from stepaudio.engines.editx.audio import cap_peak, read_raw
from stepaudio.engines.editx.editor import EditChain, Editor
from stepaudio.engines.editx.synthesizer import (
    CACHE_MULTIPLE,
    MAX_LENGTH,
    EditXModel,
    EditXSynthesizer,
    apply_dialect,
    instruction_edits,
    speech_budget,
)
from stepaudio.errors import OptionError, StepAudioError, TagError, UnsupportedError
from stepaudio.text.editx_prompts import Edit, build_clone_prompt, build_edit_prompt, clone_voice_id
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.text.vocab import STEP1

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPT_TEXT = "一段测试的语音。"


def _synth(engine: Engine) -> EditXSynthesizer:
    assert isinstance(engine.synthesizer, EditXSynthesizer)
    return engine.synthesizer


def _expected_prompt_ids(engine: Engine, samples: np.ndarray, rate: int) -> list[int]:
    """The reference's token path: mono, peak capped at 0.6, 16 kHz, normalised, trimmed."""
    tokenizer = _synth(engine).model._audio_tokenizer()
    return tokenizer.lm_ids(cap_peak(samples), rate, trim=True)


def test_clone_prompt_is_the_references(editx_engine: Engine, editx_stack: Path, lm_prompts: list[list[int]],
                                        tmp_path: Path) -> None:
    stereo = np.stack([load_audio(editx_stack / "prompt.wav").samples, 0.5 * load_audio(editx_stack /
                                                                                         "prompt.wav").samples])
    path = tmp_path / "stereo.wav"
    import soundfile as sf

    sf.write(path, stereo.T * 3.0, 24000, subtype="FLOAT")  # loud: the 0.6 cap applies
    chunks = list(_synth(editx_engine).synthesize("[Sichuanese]今天天气好得很。", Voice("me", path, PROMPT_TEXT)))
    assert chunks[-1].is_last and chunks[-1].samples.size == 0
    audio = np.concatenate([c.samples for c in chunks])
    assert audio.size > 0 and audio.size % 480 == 0 and chunks[0].sample_rate == 24000
    raw = read_raw(path)
    assert raw.channels.shape == (2, stereo.shape[1])
    tokenizer = StepTokenizer(editx_stack / "Step-Audio-EditX")
    expected = build_clone_prompt(tokenizer, target_text="[Sichuanese]今天天气好得很。", prompt_text=PROMPT_TEXT,
                                  speaker=clone_voice_id(PROMPT_TEXT, raw.channels),
                                  prompt_audio_ids=_expected_prompt_ids(editx_engine, raw.mono(), 24000))
    assert lm_prompts == [expected]


def test_clone_prompt_is_prepared_once(editx_engine: Engine, editx_stack: Path, lm_prompts: list[list[int]]) -> None:
    voice = Voice("me", editx_stack / "prompt.wav", PROMPT_TEXT)
    for _ in range(2):
        list(_synth(editx_engine).synthesize("你好。", voice))
    assert len(lm_prompts) == 2 and lm_prompts[0] == lm_prompts[1]
    assert len(_synth(editx_engine)._voices) >= 1


def test_three_step_edit_chain(editx_engine: Engine, editx_stack: Path, lm_prompts: list[list[int]]) -> None:
    synth = _synth(editx_engine)
    assert isinstance(synth, Editor)
    source = synth.clone("我觉得这个计划可行。", editx_stack / "prompt.wav", PROMPT_TEXT)
    chain = EditChain(synth, source)
    edits = [Edit("paralinguistic", new_text="我觉得[Uhm]这个计划可行。"), Edit("emotion", "sad"),
             Edit("style", "whisper")]
    for edit in edits:
        before = chain.current
        result = chain.apply(edit)
        assert result.sample_rate == 24000 and result.samples.size > 0 and result.edit == edit
        tokenizer = StepTokenizer(editx_stack / "Step-Audio-EditX")
        expected = build_edit_prompt(tokenizer, instruction=edit.instruction(before.text),
                                     prompt_audio_ids=_expected_prompt_ids(editx_engine, before.samples, 24000))
        assert lm_prompts[-1] == expected  # the previous output, re-read as the next input
    assert [s.label for s in chain.steps] == ["clone", "paralinguistic", "emotion:sad", "style:whisper"]
    assert chain.current.text == "我觉得[Uhm]这个计划可行。"  # the new text carries through the chain
    assert chain.undo().label == "emotion:sad"
    assert chain.undo().label == "paralinguistic"
    chain.undo()
    with pytest.raises(StepAudioError, match="nothing to undo"):
        chain.undo()


def test_edit_reads_files_and_refuses_low_rates(editx_engine: Engine, tmp_path: Path) -> None:
    synth = _synth(editx_engine)
    rng = np.random.default_rng(0)
    low = rng.standard_normal(8000).astype(np.float32) * 0.1
    with pytest.raises(StepAudioError, match="16000 Hz"):
        synth.edit(low, 8000, "text", Edit("denoise"))
    with pytest.raises(OptionError, match="needs the text"):
        synth.edit(low, 8000, " ", Edit("emotion", "happy"))
    with pytest.raises(StepAudioError, match="30 s"):
        synth.edit(np.zeros(31 * 16000, dtype=np.float32), 16000, "t", Edit("vad"))
    path = save_audio(tmp_path / "x.wav", rng.standard_normal(16000).astype(np.float32) * 0.05, 16000)
    assert read_raw(path).sample_rate == 16000


def test_synthesize_needs_a_clone_and_a_transcript(editx_engine: Engine, editx_stack: Path) -> None:
    synth = _synth(editx_engine)
    assert synth.voices() == []
    with pytest.raises(UnsupportedError, match="only clones"):
        list(synth.synthesize("hi", "Tingting"))
    with pytest.raises(StepAudioError, match="transcript"):
        list(synth.synthesize("hi", Voice("me", editx_stack / "prompt.wav", None)))
    with pytest.raises(StepAudioError, match="not found"):
        list(synth.synthesize("hi", Voice("me", editx_stack / "missing.wav", "x")))


def test_instructions_become_tags_and_edits() -> None:
    assert apply_dialect("你好", "sichuanese") == "[Sichuanese]你好"
    assert apply_dialect("[Cantonese]你好", "粤语") == "[Cantonese]你好"
    with pytest.raises(TagError, match="Sichuanese"):
        apply_dialect("hi", "klingon")
    edits = instruction_edits(SpeechInstructions(emotion="Happy", style="whisper", speed="fast"))
    assert [e.label for e in edits] == ["emotion:happy", "style:whisper", "speed:faster"]
    with pytest.raises(OptionError, match="happy"):
        instruction_edits(SpeechInstructions(emotion="ecstatic"))
    with pytest.raises(UnsupportedError, match="pitch"):
        instruction_edits(SpeechInstructions(pitch=2.0, strict=True))
    with pytest.warns(UserWarning, match="speed factor"):
        assert instruction_edits(SpeechInstructions(speed=1.3)) == []
    assert instruction_edits(SpeechInstructions(speed=1.0)) == []


def test_emotion_instruction_is_an_edit_after_the_clone(editx_engine: Engine, editx_stack: Path,
                                                        lm_prompts: list[list[int]]) -> None:
    voice = Voice("me", editx_stack / "prompt.wav", PROMPT_TEXT)
    list(_synth(editx_engine).synthesize("好的。", voice, SpeechInstructions(emotion="happy")))
    assert len(lm_prompts) == 2
    tokenizer = StepTokenizer(editx_stack / "Step-Audio-EditX")
    human = tokenizer.encode("Make the following audio more happy. The text corresponding to the audio is: 好的。\n")
    second = lm_prompts[1]
    assert second[: 2] == [STEP1.bos_id, STEP1.bot_id]
    start = second.index(STEP1.eot_id) + 1 + len(tokenizer.encode("human\n")) + 1
    assert second[start : start + len(human)] == human


def test_speech_streams_before_the_generation_ends(editx_engine: Engine, editx_stack: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from stepaudio.engines.step.native_lm import NativeLM

    generated: list[int] = []
    stream = NativeLM.stream

    def counting(self: NativeLM, *args: object, **kwargs: object) -> object:
        for token in stream(self, *args, **kwargs):  # type: ignore[arg-type]
            generated.append(token.id)
            yield token

    monkeypatch.setattr(NativeLM, "stream", counting)
    synth = _synth(editx_engine)
    voice = Voice("me", editx_stack / "prompt.wav", PROMPT_TEXT)
    seen = [(len(generated), chunk.samples.size) for chunk in synth.synthesize("今天天气好得很。", voice)]
    audio_ids = [i for i in generated if STEP1.is_audio_piece_id(i)]
    assert len(audio_ids) == len(generated) == 40  # the tiny LM speaks until max_new_tokens
    # first audio once 15 frame pairs (25 ids) and the 5 look-ahead ids are in, while the LM still generates
    assert next(count for count, size in seen if size) == 30
    streamed = sum(size for _, size in seen)
    assert streamed == 8 * 3 * 2 * 480  # 40 ids = 8 groups = 24 pairs = 48 mel frames
    generated.clear()
    try:
        synth.streaming = False
        offline = [chunk.samples.size for chunk in synth.synthesize("今天天气好得很。", voice)]
    finally:
        synth.streaming = True
    assert offline == [streamed, 0]  # one offline decode of the same length, then the closing chunk


def test_a_voice_prompt_is_prefilled_once(editx_engine: Engine, editx_stack: Path,
                                          lm_prompts: list[list[int]]) -> None:
    synth = _synth(editx_engine)
    cache = synth.model._lm().prefix_cache
    assert cache is not None
    voice = Voice("me", editx_stack / "prompt.wav", PROMPT_TEXT)
    list(synth.synthesize("第一句话。", voice))
    before = cache.stats().reused_tokens
    list(synth.synthesize("然后是完全不同的第二句。", voice))
    first, second = lm_prompts[-2:]
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    # the system turn holds the voice (name, transcript, audio ids): everything up to the target text is reused
    system_end = first.index(STEP1.eot_id) + 1
    assert shared > system_end > 100
    assert cache.stats().reused_tokens - before == shared


def test_a_request_budget_sizes_its_cache_not_the_releases_8192() -> None:
    model = EditXModel(StepTokenizer.__new__(StepTokenizer), lambda: None, lambda: None, lambda: None)  # type: ignore[arg-type, return-value]
    assert model.budget(1000) == MAX_LENGTH - 1000  # no bound given: the reference's total
    budget = model.budget(1000, 300)
    assert budget >= 300 and (1000 + budget) % CACHE_MULTIPLE == 0 and 1000 + budget < 1000 + 300 + CACHE_MULTIPLE
    assert model.budget(8000, 500) == MAX_LENGTH - 8000  # never past 8192 in all
    model.max_new_tokens = 40
    assert model.budget(1000, 300) == 40  # an explicit cap is kept as given
    with pytest.raises(StepAudioError, match="over EditX"):
        model.budget(MAX_LENGTH)
    assert speech_budget("好") < speech_budget("好" * 40)
    assert speech_budget("好", source_ids=500) == 1050  # an edit may take twice its source


def test_a_clone_holds_a_cache_of_its_budget_with_the_same_output(editx_engine: Engine, editx_stack: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    generate = importlib.import_module("stepaudio.lm.generate")

    synth = _synth(editx_engine)
    sizes: list[int] = []
    made = generate.new_cache

    def recording(model: object, batch: int, max_len: int) -> object:
        sizes.append(max_len)
        return made(model, batch, max_len)  # type: ignore[arg-type]

    def releases(model: object, batch: int, max_len: int) -> object:
        sizes.append(MAX_LENGTH)
        return made(model, batch, MAX_LENGTH)  # type: ignore[arg-type]

    text = "好"
    monkeypatch.setattr(synth.model, "max_new_tokens", None)
    monkeypatch.setattr(generate, "new_cache", recording)
    capped = synth.clone(text, editx_stack / "prompt.wav", PROMPT_TEXT).samples
    assert len(sizes) == 1 and sizes[0] % CACHE_MULTIPLE == 0 and sizes[0] < MAX_LENGTH
    monkeypatch.setattr(generate, "new_cache", releases)  # the release's cache, same budget: same speech
    whole = synth.clone(text, editx_stack / "prompt.wav", PROMPT_TEXT).samples
    assert sizes[1] == MAX_LENGTH
    np.testing.assert_array_equal(capped, whole)
