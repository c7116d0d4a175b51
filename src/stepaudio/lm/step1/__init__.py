"""Step1 (Step-Audio-TTS-3B, Step-Audio-Chat, EditX): sqrt-ALiBi GQA decoder, config, key map and loading."""

from stepaudio.lm.step1.config import NAMED_SHAPES, Step1Config
from stepaudio.lm.step1.loading import expected_shapes, load_step1, save_step1
from stepaudio.lm.step1.model import Step1ForCausalLM

__all__ = ["NAMED_SHAPES", "Step1Config", "Step1ForCausalLM", "expected_shapes", "load_step1", "save_step1"]
