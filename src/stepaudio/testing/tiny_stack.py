"""A whole tiny Step-Audio model folder in the release layout, with random weights.

`--model-path` pointed at it behaves like the real one (same files, keys, configs), so every path of the
Step engine, the CLIs and the server can be run end to end in seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from stepaudio.audio.io import save_audio
from stepaudio.engines.step.paths import CHAT_DIR, COSYVOICE_DIR, COSYVOICE_MUSIC_DIR, TOKENIZER_DIR, TTS_DIR
from stepaudio.lm.step1.loading import save_step1
from stepaudio.lm.step1.model import Step1ForCausalLM
from stepaudio.testing.tiny_decoder import write_tiny_cosyvoice_dir
from stepaudio.testing.tiny_lm import random_step1, tiny_step1_config
from stepaudio.testing.tiny_tokenizer import write_tiny_tokenizer_dir
from stepaudio.text.vocab import STEP1
from stepaudio.tokenizer.interleave import FLOW_VOCAB

SPEAKERS = {
    "Tingting": "那等我们到海洋馆之后，给妈妈买个礼物，好不好呀？",
    "TingtingRAP": "（RAP）远远甩开的笑他是陆行龟",
    "Tingting哼唱": "（哼唱）你从一座叫我的小镇经过",
}


def speech_like(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """A voiced-sounding test signal: a gliding harmonic tone with syllable-rate amplitude and pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
    lead = int(0.2 * sample_rate)
    envelope[:lead] = 0
    envelope[-lead:] = 0
    return (0.3 * voice * envelope + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def _speaking_step1(seed: int, audio_weight: float) -> Step1ForCausalLM:
    """A random TTS LM whose head favours audio ids, so it answers in audio tokens and stops on <|EOT|>."""
    model = random_step1(tiny_step1_config(), seed=seed)
    with torch.no_grad():
        head = model.lm_head.weight
        audio = slice(STEP1.audio_offset, STEP1.audio_offset + FLOW_VOCAB)
        keep = head[audio].clone()
        eot = head[STEP1.eot_id].clone()
        head.zero_()
        head[audio] = keep * audio_weight
        head[STEP1.eot_id] = eot * audio_weight * 2.0  # so that it also stops now and then
    return model


def write_tiny_step_stack(root: str | Path, tokenizer_model: str | Path, *, seed: int = 0) -> Path:
    """Write `root/` with Step-Audio-Tokenizer/, Step-Audio-TTS-3B/ (with both CosyVoice folders), Step-Audio-Chat/
    and speakers/ (speakers_info.json and prompt wavs). `tokenizer_model` is the real `tokenizer.model`."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    write_tiny_tokenizer_dir(base / TOKENIZER_DIR, seed=seed)
    tts = base / TTS_DIR
    save_step1(_speaking_step1(seed + 1, audio_weight=4.0), tts)
    save_step1(random_step1(tiny_step1_config(), seed=seed + 2), base / CHAT_DIR, max_shard_bytes=8 << 20)
    tokenizer_bytes = Path(tokenizer_model).read_bytes()
    for folder in (tts, base / CHAT_DIR):
        (folder / "tokenizer.model").write_bytes(tokenizer_bytes)
    write_tiny_cosyvoice_dir(tts / COSYVOICE_DIR, seed=seed + 3)
    write_tiny_cosyvoice_dir(tts / COSYVOICE_MUSIC_DIR, seed=seed + 4)
    speakers = base / "speakers"
    speakers.mkdir(exist_ok=True)
    (speakers / "speakers_info.json").write_text(json.dumps(SPEAKERS, ensure_ascii=False, indent=1), encoding="utf-8")
    for index, name in enumerate(SPEAKERS):
        save_audio(speakers / f"{name}_prompt.wav", speech_like(2.0, 16000, seed + index), 16000)
    return base
