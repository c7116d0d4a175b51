"""Step-Audio 2's thinker from one release folder: the audio encoder + adaptor and the Qwen2 LM, and the
prompt embeddings that put a spoken question in front of the LM (REFERENCE-SA2.md §1-§4).

The two parts share one `config.json` and one set of (sharded) safetensors; each part's key map loads its
own keys and skips the other's, so the folder is read as released.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from stepaudio.audio_encoder.loading import load_audio_encoder
from stepaudio.audio_encoder.model import AudioEncoder
from stepaudio.audio_encoder.splice import splice_audio
from stepaudio.errors import CheckpointError
from stepaudio.lm.checkpoint import save_weights
from stepaudio.lm.qwen2.loading import expected_shapes, load_qwen2
from stepaudio.lm.qwen2.model import Qwen2ForCausalLM
from stepaudio.text.vocab import STEP_AUDIO2, StepAudio2Vocab


@dataclass(frozen=True)
class Step2Model:
    """The audio encoder and the LM of one checkpoint, with the token facts that join them."""

    audio: AudioEncoder
    lm: Qwen2ForCausalLM
    vocab: StepAudio2Vocab = STEP_AUDIO2

    def prompt_embeds(self, input_ids: Sequence[int], mels: Sequence[torch.Tensor]) -> torch.Tensor:
        """Embeddings [L, H] of a prompt whose k-th `<audio_start>` block holds the k-th mel [n_mels, T]
        (one per 25 s piece; `audio_encoder.frontend`). The mels are encoded as one batch, like the reference."""
        ids = torch.tensor(list(input_ids), dtype=torch.long, device=self.lm.device)
        with torch.inference_mode():
            embeds = self.lm.embed(ids)
            rows = self.audio.encode(mels) if mels else []
            return splice_audio(embeds, ids, rows, self.vocab.audio_start_id, patch_id=self.vocab.audio_patch_id)


def load_step2(
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    vocab: StepAudio2Vocab = STEP_AUDIO2,
) -> Step2Model:
    """Both parts of a Step-Audio 2 release folder (`model_type` step_audio_2). dtype defaults to the
    checkpoint's own; `vocab` carries the splice ids (a tiny test vocabulary replaces the real ones)."""
    directory = Path(path)
    config = directory / "config.json"
    if not config.is_file():
        raise CheckpointError(f"no config.json at {directory}")
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type != "step_audio_2":
        raise CheckpointError(f"{config}: model_type {model_type!r} is not a Step-Audio 2 checkpoint (step_audio_2)")
    audio = load_audio_encoder(directory, device=device, dtype=dtype)
    lm = load_qwen2(directory, device=device, dtype=dtype)
    if audio.config.llm_dim != lm.config.hidden_size:
        raise CheckpointError(
            f"{config}: audio_encoder_config.llm_dim {audio.config.llm_dim} does not match the LM's hidden_size "
            f"{lm.config.hidden_size}"
        )
    return Step2Model(audio, lm, vocab)


def save_step2(model: Step2Model, path: str | Path, *, max_shard_bytes: int | None = None) -> None:
    """Write `model` as a release folder (nested config, one safetensors file or shards with an index) that
    `load_step2` reads; for tiny test stacks and converted checkpoints."""
    lm_state = model.lm.state_dict()
    decoder_keys = expected_shapes(model.lm.config)
    if not set(decoder_keys) <= set(lm_state):
        raise CheckpointError("only a plain (unquantised) Qwen2 LM can be saved")
    dtype = str(lm_state["model.embed_tokens.weight"].dtype).removeprefix("torch.")
    text = {k: v for k, v in model.lm.config.to_hf_dict().items() if k not in ("architectures", "model_type")}
    text["num_attention_groups"] = model.lm.config.num_key_value_heads  # the release's name for the KV heads
    text["torch_dtype"] = dtype
    config = {
        "architectures": ["StepAudio2ForCausalLM"],
        "model_type": "step_audio_2",
        "torch_dtype": dtype,
        "audio_encoder_config": model.audio.config.to_dict(),
        "text_config": text,
    }
    state = {key: lm_state[key] for key in decoder_keys} | model.audio.state_dict()
    save_weights(state, Path(path), config, max_shard_bytes=max_shard_bytes)
