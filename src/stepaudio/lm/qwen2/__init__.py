"""Qwen2-style decoder (Step-Audio 2 mini's LLM): RoPE GQA with q/k/v biases, config, key map and loading."""

from stepaudio.lm.qwen2.config import Qwen2Config
from stepaudio.lm.qwen2.loading import expected_shapes, load_qwen2, save_qwen2
from stepaudio.lm.qwen2.model import Qwen2ForCausalLM

__all__ = ["Qwen2Config", "Qwen2ForCausalLM", "expected_shapes", "load_qwen2", "save_qwen2"]
