"""Step1 language model (Step-Audio-TTS-3B and Step-Audio-Chat): config, forward, loading, generation."""

from stepaudio.lm.cache import StaticKVCache
from stepaudio.lm.config import NAMED_SHAPES, Step1Config
from stepaudio.lm.generate import GeneratedStep, GenerationConfig, TokenStream, generate
from stepaudio.lm.loading import load_step1, save_step1
from stepaudio.lm.model import Step1ForCausalLM
from stepaudio.lm.quant import quantize_int8
from stepaudio.lm.sampling import CHAT_SAMPLING, GREEDY, TTS_SAMPLING, SamplingConfig

__all__ = [
    "CHAT_SAMPLING",
    "GREEDY",
    "NAMED_SHAPES",
    "TTS_SAMPLING",
    "GeneratedStep",
    "GenerationConfig",
    "SamplingConfig",
    "StaticKVCache",
    "Step1Config",
    "Step1ForCausalLM",
    "TokenStream",
    "generate",
    "load_step1",
    "quantize_int8",
    "save_step1",
]
