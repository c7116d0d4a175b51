"""Causal-LM generation over a small protocol (`CausalLM`), with one subpackage per model family.

Generic here: KV cache, attention planning, sampling, generation, checkpoint folders, CPU weight formats.
Families: `stepaudio.lm.step1` (Step-Audio v1's Step1) and `stepaudio.lm.qwen2` (Step-Audio 2's LLM).
"""

from stepaudio.lm.cache import KVLayout, StaticKVCache
from stepaudio.lm.generate import GeneratedStep, GenerationConfig, TokenStream, generate
from stepaudio.lm.protocol import CausalLM
from stepaudio.lm.quant import quantize_int8
from stepaudio.lm.sampling import CHAT_SAMPLING, GREEDY, TTS_SAMPLING, SamplingConfig

__all__ = [
    "CHAT_SAMPLING",
    "GREEDY",
    "TTS_SAMPLING",
    "CausalLM",
    "GeneratedStep",
    "GenerationConfig",
    "KVLayout",
    "SamplingConfig",
    "StaticKVCache",
    "TokenStream",
    "generate",
    "quantize_int8",
]
