"""The in-process LM reuses prompt heads (a voice prompt per voice, a chat session's history per turn) and
answers exactly as without reuse; the engine option sizes or turns off the reuse."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from stepaudio.engines.base import CancelToken
from stepaudio.engines.step.native_lm import DEFAULT_PREFIX_CACHE_MB, NativeLM
from stepaudio.errors import OptionError
from stepaudio.lm import GREEDY, TTS_SAMPLING, GenerationConfig
from stepaudio.lm.generations import DEFAULT_ROWS, default_rows, planned_rows
from stepaudio.testing.tiny_lm import write_tiny_step1
from stepaudio.text.prompts import build_tts_prompt, chat_prompt_text
from stepaudio.text.vocab import STEP1

GREEDY_8 = GenerationConfig(max_new_tokens=8, sampling=GREEDY, stop_ids=STEP1.stop_ids)
VOICE_TEXT = "那等我们到海洋馆之后，给妈妈买个礼物，好不好呀？"
VOICE_AUDIO = [STEP1.audio_offset + (i * 37) % 1024 for i in range(60)]


@pytest.fixture(scope="module")
def model_dir(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_step1(tmp_path_factory.mktemp("lm"), conformance_dir / "text" / "tokenizer.model")


def ids_of(lm: NativeLM, prompt: Sequence[int] | str, config: GenerationConfig = GREEDY_8,
           cancel: CancelToken | None = None) -> list[int | None]:
    return [t.id for t in lm.stream(prompt, config, cancel)]


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def reused(lm: NativeLM) -> int:
    assert lm.prefix_cache is not None
    return lm.prefix_cache.stats().reused_tokens


def test_voice_prompt_is_prefilled_once_per_voice(model_dir: Path) -> None:
    cached, plain = NativeLM.load(model_dir), NativeLM.load(model_dir, prefix_cache_mb=0)
    assert plain.prefix_cache is None and cached.prefix_cache is not None
    assert cached.prefix_cache.max_bytes == DEFAULT_PREFIX_CACHE_MB << 20
    prompts = [build_tts_prompt(cached.tokenizer, text=text, prompt_text=VOICE_TEXT, prompt_audio_ids=VOICE_AUDIO,
                                speaker="Tingting")
               for text in ("今天天气真好。", "(高兴1)明天就要放假了！", "Hello there.")]
    voice = common_length(prompts[0], prompts[1])
    assert voice > len(VOICE_AUDIO) + 20  # the system turn, the prompt text and its audio
    before = 0
    for index, prompt in enumerate(prompts):
        assert ids_of(cached, prompt) == ids_of(plain, prompt)
        expected = 0 if index == 0 else max(common_length(prompt, p) for p in prompts[:index])
        assert reused(cached) - before == expected and (index == 0 or expected >= voice)
        before = reused(cached)
    sampled = GenerationConfig(max_new_tokens=8, sampling=TTS_SAMPLING, stop_ids=STEP1.stop_ids, seed=3)
    assert ids_of(cached, prompts[2], sampled) == ids_of(plain, prompts[2], sampled)


def test_chat_history_is_prefilled_once_per_turn(model_dir: Path) -> None:
    cached, plain = NativeLM.load(model_dir), NativeLM.load(model_dir, prefix_cache_mb=0)
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful assistant."}]
    previous: list[int] = []
    for turn, question in enumerate(("你好，今天怎么样？", "Tell me a story.", "谢谢！")):
        messages.append({"role": "user", "content": question})
        prompt = chat_prompt_text(messages)
        before = reused(cached)
        reply = list(cached.stream(prompt, GREEDY_8))
        assert [t.id for t in reply] == ids_of(plain, prompt)
        ids = cached.tokenizer.encode(prompt)
        assert reused(cached) - before == common_length(ids, previous)
        if turn:  # everything up to the last reply was kept; the reply and the new question are prefilled
            assert common_length(ids, previous) >= len(previous) - 2
        messages.append({"role": "assistant", "content": "".join(t.text for t in reply)})
        previous = ids


def test_cancelled_requests_leave_a_usable_state(model_dir: Path) -> None:
    cached, plain = NativeLM.load(model_dir), NativeLM.load(model_dir, prefix_cache_mb=0)
    prompt = cached.tokenizer.encode("<|BOT|>human\n你好, tell me a story<|EOT|><|BOT|>assistant\n")
    long = GenerationConfig(max_new_tokens=50, sampling=GREEDY, stop_ids=())
    cancel = CancelToken()
    out = []
    for token in cached.stream(prompt, long, cancel):
        out.append(token.id)
        if len(out) == 2:
            cancel.cancel()
    assert out == ids_of(plain, prompt, long)[:2]
    assert ids_of(cached, prompt) == ids_of(plain, prompt) and reused(cached) == len(prompt) - 1


def test_size_option_reaches_the_engine_models(step_stack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stepaudio.engines.registry import create_engine

    used: list[NativeLM] = []
    stream = NativeLM.stream

    def recording(self: NativeLM, prompt: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        used.append(self)
        return stream(self, prompt, *args, **kwargs)

    monkeypatch.setattr(NativeLM, "stream", recording)
    spoken = {}
    for megabytes in (0, 8):
        engine = create_engine("step", model_path=str(step_stack), seed=0, streaming=False, max_segment_tokens=12,
                               prefix_cache_mb=megabytes)
        assert engine.synthesizer is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the capped segments are cut
            spoken[megabytes] = [chunk.samples.tobytes() for text in ("你好。", "再见。")
                                 for chunk in engine.synthesizer.synthesize(text, "Tingting")]
        lm = used[-1]
        if megabytes:
            assert lm.prefix_cache is not None and lm.prefix_cache.max_bytes == 8 << 20 and reused(lm) > 0
        else:
            assert lm.prefix_cache is None
    assert spoken[0] == spoken[8]
    with pytest.raises(OptionError, match="prefix_cache_mb must be at least 0"):
        create_engine("step", model_path=str(step_stack), prefix_cache_mb=-1)
    with pytest.raises(OptionError, match="0 turns reuse off"):
        NativeLM.load(step_stack / "Step-Audio-TTS-3B", prefix_cache_mb=-1)


@pytest.mark.gpu
def test_cuda_graph_decode_gives_the_eager_tokens(model_dir: Path) -> None:
    """On CUDA each request's decode steps replay a captured graph, alone or in the batch (the default there);
    the tokens are those of eager decoding alone."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    graphs = NativeLM.load(model_dir, device="cuda", prefix_cache_mb=0, lm_batch=1)
    batched = NativeLM.load(model_dir, device="cuda", prefix_cache_mb=0)
    eager = NativeLM.load(model_dir, device="cuda", prefix_cache_mb=0, cuda_graphs=False, lm_batch=1)
    assert graphs.cuda_graphs and not eager.cuda_graphs and batched.lm_batch == DEFAULT_ROWS
    prompt = build_tts_prompt(graphs.tokenizer, text="今天天气真好。", prompt_text=VOICE_TEXT,
                              prompt_audio_ids=VOICE_AUDIO, speaker="Tingting")
    long_greedy = GenerationConfig(max_new_tokens=24, sampling=GREEDY, stop_ids=())
    sampled = GenerationConfig(max_new_tokens=16, sampling=TTS_SAMPLING, stop_ids=STEP1.stop_ids, seed=5)
    for lm in (graphs, batched):
        assert ids_of(lm, prompt, long_greedy) == ids_of(eager, prompt, long_greedy)
        assert ids_of(lm, prompt, sampled) == ids_of(eager, prompt, sampled)


def test_concurrent_requests_share_decode_steps_and_get_their_own_tokens(model_dir: Path) -> None:
    """lm_batch rows: requests streamed from several threads at once get the tokens each gets alone (greedy and
    seeded sampling), and cancelling one lets the others go on."""
    import threading

    batched, alone = NativeLM.load(model_dir, lm_batch=3), NativeLM.load(model_dir, lm_batch=1)
    assert batched.batcher is not None and alone.batcher is None
    # alone by default on CPU (several rows cost several there, or share int8 activation scales); batched on CUDA
    assert NativeLM.load(model_dir).lm_batch == 1 == default_rows(alone.model) < DEFAULT_ROWS
    assert planned_rows("cpu", None) == 1 and planned_rows("cuda:1", None) == DEFAULT_ROWS
    assert planned_rows("cpu", 3) == 3 == batched.lm_batch
    prompts = [build_tts_prompt(batched.tokenizer, text=text, prompt_text=VOICE_TEXT, prompt_audio_ids=VOICE_AUDIO,
                                speaker="Tingting") for text in ("今天天气真好。", "Hello there.")]
    prompts += [batched.tokenizer.encode("<|BOT|>human\n你好<|EOT|><|BOT|>assistant\n")] * 2
    configs = [GenerationConfig(max_new_tokens=n, sampling=s, stop_ids=STEP1.stop_ids, seed=seed)
               for n, s, seed in ((12, GREEDY, None), (16, TTS_SAMPLING, 3), (9, TTS_SAMPLING, 4), (30, GREEDY, None))]
    expected = [ids_of(alone, p, c) for p, c in zip(prompts, configs, strict=True)]
    got: list[list[int | None]] = [[] for _ in prompts]
    cancel = CancelToken()

    def run(index: int) -> None:
        for token in batched.stream(prompts[index], configs[index], cancel if index == 3 else None):
            got[index].append(token.id)
            if index == 3 and len(got[index]) == 4:
                cancel.cancel()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert got[:3] == expected[:3] and got[3] == expected[3][:4]
    with pytest.raises(OptionError, match="lm_batch"):
        NativeLM.load(model_dir, lm_batch=0)


def test_lm_batch_engine_option() -> None:
    from stepaudio.engines.step.engine import StepOptions

    assert StepOptions.from_options({"lm_batch": "2"}).lm_batch == 2 and StepOptions().lm_batch is None
    with pytest.raises(OptionError, match="lm_batch must be at least 1"):
        StepOptions.from_options({"lm_batch": 0})
