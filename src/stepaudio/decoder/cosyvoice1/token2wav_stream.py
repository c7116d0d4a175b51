"""Streaming token2wav: flow tokens arrive in chunks, 22.05 kHz audio leaves in chunks.

Design (CosyVoice-1's idea, made consistent with the offline path):
* Tokens are committed `hop` at a time (a smaller `first_hop` for the first chunk, for latency),
  once `lookahead` further tokens have arrived to give them right context.
* For each chunk of new tokens `[a, b)` the flow is re-run on the voice prompt plus the window
  `[a - left_context, b + lookahead)`. The window's mel frames are placed where the offline run puts
  them: token `k` starts at frame `f(k) = mel_len(k)` (the config's truncation rule), the window
  gets `f(e) - f(s)` frames, and the new tokens own frames `[f(a), f(b))`. So the chunks tile the
  offline frame range exactly and the last frame of the stream is the last offline frame.
* The initial ODE noise of mel frame `j` is column `T1 + j` of a seed-addressed noise (see
  `frame_noise`), the same column the offline run uses, so a window sees the offline noise for its
  frames. With enough context a streamed frame is then close to the offline one; with the whole
  utterance as one window it is the offline one.
* The frames after `f(b)` (the look-ahead's mel) go to the vocoder as provisional right context;
  `StreamingVocoder` keeps left mel context, the sine phase and cross-fades the seams.
The flow is non-causal and keeps no cache: every chunk re-encodes the prompt, so the cost of a chunk
is roughly that of an offline run of prompt + window frames; larger hops amortise it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stepaudio.decoder.cosyvoice1.cfm import solve_euler
from stepaudio.decoder.cosyvoice1.flow import MaskedDiffWithXvec
from stepaudio.decoder.cosyvoice1.prompt_features import PromptFeatures
from stepaudio.decoder.cosyvoice1.stream_vocoder import StreamingVocoder, Vocoder
from stepaudio.decoder.frame_noise import FLOW_NOISE, FrameNoise


@dataclass(frozen=True)
class StreamingConfig:
    """Chunking of a token2wav stream; token counts are flow ids (41.667 per second for Step-Audio).

    The first chunk waits for `first_hop_tokens + lookahead_tokens` ids: 4 + 8 (was 12 + 8), because on a CPU
    each LM token costs a large share of a second and the first chunk's flow cost hardly depends on its size
    (the voice prompt's frames dominate it); the look-ahead, which sets how close the chunk is to offline, is
    unchanged."""

    first_hop_tokens: int = 4
    hop_tokens: int = 50
    lookahead_tokens: int = 8
    left_context_tokens: int = 25
    vocoder_context_frames: int = 12
    crossfade_samples: int = 512
    # Opt-in latency knob: keep only the last ids of the voice prompt (and their share of its mel
    # frames). The prompt is re-encoded for every chunk and dominates a chunk's cost; trimming it
    # trades some voice similarity (and equality with offline) for speed. None keeps it whole.
    max_prompt_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.first_hop_tokens < 1 or self.hop_tokens < 1:
            raise ValueError("hops must be at least one token")
        if self.lookahead_tokens < 0 or self.left_context_tokens < 0 or self.vocoder_context_frames < 0:
            raise ValueError("context sizes must be non-negative")
        if self.crossfade_samples < 0:
            raise ValueError("crossfade_samples must be non-negative")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError("max_prompt_tokens must be positive (or None)")


def trim_prompt(prompt: PromptFeatures, max_tokens: int | None) -> PromptFeatures:
    """The last `max_tokens` prompt ids and the mel frames the regulator maps them to (linear map)."""
    n1 = int(prompt.flow_tokens.numel())
    if max_tokens is None or n1 <= max_tokens:
        return prompt
    frames = max(1, round(max_tokens * prompt.frames / n1))
    return PromptFeatures(prompt.flow_tokens[-max_tokens:], prompt.mel[-frames:], prompt.embedding)


def new_seed() -> int:
    """A fresh random seed (for calls that pass seed=None)."""
    return secrets.randbits(62)


def flow_noise(seed: int) -> FrameNoise:
    """The flow's initial-state noise for `seed`: column j is mel frame j (prompt frames first)."""
    return FrameNoise(seed, FLOW_NOISE, 80)


def check_tokens(tokens: Sequence[int], vocab_size: int) -> torch.Tensor:
    """Flow ids as int64 `[N]`; ids past the vocabulary are an error (negative ids clamp to 0 as in the reference)."""
    ids = torch.as_tensor(list(tokens), dtype=torch.long).reshape(-1)
    if ids.numel() and int(ids.max()) >= vocab_size:
        raise ValueError(f"flow id {int(ids.max())} is outside the vocabulary of {vocab_size}")
    return ids


@torch.inference_mode()
def window_mel(model: MaskedDiffWithXvec, prompt: PromptFeatures, tokens: torch.Tensor, frames: int,
               noise: torch.Tensor) -> torch.Tensor:
    """Mel `[80, frames]` of `tokens` after the prompt, with `frames` chosen by the caller.

    Same computation as `generate_mel` for one request, except that the generated part is stretched
    to `frames` instead of `mel_len(len(tokens))`. `noise` is `[80, T1 + frames]`.
    """
    weight = model.input_embedding.weight
    device, dtype = weight.device, weight.dtype
    n1, t1 = int(prompt.flow_tokens.numel()), prompt.frames
    ids = torch.cat([prompt.flow_tokens.reshape(-1), tokens.reshape(-1)]).to(device)[None]
    h = model.encode(ids, torch.tensor([ids.shape[1]], device=device))
    mu, mask = model.length_regulator(h, [n1], [int(tokens.numel())], [t1], [frames])
    cond = torch.zeros_like(mu)
    cond[0, :, :t1] = prompt.mel.to(device=device, dtype=dtype).transpose(0, 1)
    spks = model.project_speaker(prompt.embedding.reshape(1, -1).to(device=device, dtype=dtype))
    z = noise[None].to(device=device, dtype=dtype) * model.config.cfm.temperature
    x = solve_euler(model.estimator, z, mu, mask, spks, cond, model.config.cfm)
    return x[0, :, t1:].float()


class Token2WavStream:
    """One streamed utterance: `push` tokens as they come, `finish` once; both return audio chunks."""

    def __init__(
        self,
        flow: MaskedDiffWithXvec,
        hift: Vocoder,
        prompt: PromptFeatures,
        config: StreamingConfig | None = None,
        seed: int | None = None,
    ) -> None:
        self.flow = flow
        self.config = config or StreamingConfig()
        self.prompt = trim_prompt(prompt, self.config.max_prompt_tokens)
        self.seed = new_seed() if seed is None else seed
        self.vocoder = StreamingVocoder(
            hift, self.seed, self.config.vocoder_context_frames, self.config.crossfade_samples
        )
        self._noise = flow_noise(self.seed)
        self._prompt_noise = self._noise.columns(0, self.prompt.frames).clone()
        self.tokens: list[int] = []
        self.committed = 0
        self.chunks = 0
        self.finished = False

    def _frame(self, k: int) -> int:
        return self.flow.config.mel_len(k)

    def push(self, flow_tokens: Sequence[int]) -> list[np.ndarray]:
        """Add tokens; float32 mono chunks that are ready now (possibly none)."""
        if self.finished:
            raise RuntimeError("push after finish")
        self.tokens += check_tokens(flow_tokens, self.flow.config.vocab_size).tolist()
        out = []
        c = self.config
        while True:
            hop = c.first_hop_tokens if self.chunks == 0 else c.hop_tokens
            if len(self.tokens) - self.committed < hop + c.lookahead_tokens:
                break
            out.append(self._chunk(self.committed + hop, last=False))
        return [a for a in out if a.size]

    def finish(self) -> list[np.ndarray]:
        """The rest of the audio; the stream is closed afterwards."""
        if self.finished:
            raise RuntimeError("finish called twice")
        self.finished = True
        pending = self.committed < len(self.tokens)
        audio = self._chunk(len(self.tokens), last=True) if pending else self.vocoder.finish()
        return [audio] if audio.size else []

    def _chunk(self, b: int, last: bool) -> np.ndarray:
        c, a, n = self.config, self.committed, len(self.tokens)
        s = max(0, a - c.left_context_tokens)
        e = n if last else min(n, b + c.lookahead_tokens)
        fs, fa, fb, fe = (self._frame(k) for k in (s, a, b, e))
        self.committed = b
        self.chunks += 1
        if fb == fa:  # too few tokens for a frame yet (only at very low token rates)
            return self.vocoder.finish() if last else np.zeros(0, dtype=np.float32)
        t1 = self.prompt.frames
        noise = torch.cat([self._prompt_noise, self._noise.columns(t1 + fs, t1 + fe)], dim=1)
        self._noise.forget_before(t1 + fs)
        window = torch.tensor(self.tokens[s:e], dtype=torch.long)
        mel = window_mel(self.flow, self.prompt, window, fe - fs, noise)
        final = mel[:, fa - fs : fb - fs]
        return self.vocoder.finish(final) if last else self.vocoder.push(final, mel[:, fb - fs :])
