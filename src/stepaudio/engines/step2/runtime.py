"""The loaded Step-Audio 2 model with its tokenizer: audio in as mels, a prompt's segments in as ids and
spliced embeddings, the generated stream out split into text and speech (REFERENCE-SA2.md §2, §4, §6).

Generated ids below `<audio_start>` are text, `<audio_N>` ids are speech codes (N = 6561 is padding, dropped
as the reference drops it before token2wav); the specials in between (`<tts_start>`, `<tts_end>`, ...) carry no
text and are dropped. Generation stops on `<|EOT|>` (the reference's only eos) or the Qwen end ids.

Multi-turn chat repeats its head every turn (system prompt, tools, earlier turns and their audio), so a
`PrefixCache` keeps the K/V of what was prefilled and the next prompt prefills only what is new. Its key for
each prompt row is the id, or for a spliced audio row a digest of that piece's mel with the row's index: the
same ids over other audio never match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stepaudio.audio.io import Audio, resample, to_mono
from stepaudio.audio_encoder.frontend import SAMPLE_RATE, audio_mels, placeholder_count
from stepaudio.engines.base import CancelToken
from stepaudio.engines.step2.model import Step2Model, load_step2
from stepaudio.engines.step2.tokenizer import Step2Tokenizer
from stepaudio.errors import AudioError
from stepaudio.lm import GenerationConfig
from stepaudio.lm.generations import Generations, default_rows
from stepaudio.lm.prefix_cache import PrefixCache, prefix_cache_of_size
from stepaudio.lm.quant import apply_weight_format, resolve_weight_format
from stepaudio.text.step2_prompts import Audio as AudioItem
from stepaudio.text.step2_prompts import Segment, prompt_ids

# The 7B LM keeps 56 KiB of bf16 K/V a token: ~9k tokens, a dozen minutes of spoken history.
DEFAULT_PREFIX_CACHE_MB = 512


@dataclass(frozen=True)
class SpeechCode:
    """A speech token of the reply (a CosyVoice2 code, 0..6560)."""

    code: int


@dataclass(frozen=True)
class Prompt:
    """A prompt ready to run: its ids and the mels of its audio pieces, in prompt order."""

    ids: tuple[int, ...]
    mels: tuple[torch.Tensor, ...]


@dataclass
class Counted:
    """Iterate `source` once, counting what went by (the tokens a reply took)."""

    source: Iterator[int]
    count: int = 0

    def __iter__(self) -> Iterator[int]:
        for token in self.source:
            self.count += 1
            yield token


class Step2Runtime:
    """One model and tokenizer; thread-safe: each request runs in its own KV cache, or with `lm_batch` > 1 in a
    row of the batch its concurrent requests decode together (`lm.generations`); the prefix cache locks."""

    def __init__(self, model: Step2Model, tokenizer: Step2Tokenizer, prefix_cache: PrefixCache | None = None,
                 lm_batch: int = 1) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.vocab = tokenizer.vocab
        self.prefix_cache = prefix_cache
        # eager decode steps: CUDA graphs of this family are not yet checked on a GPU
        self.generations = Generations(model.lm, lm_batch, prefix_cache, cuda_graphs=False)

    @classmethod
    def load(cls, folder: str | Path, *, device: str = "cpu", dtype: torch.dtype | None = None,
             quant: str | None = None, prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB,
             lm_batch: int | None = None) -> Step2Runtime:
        """The release folder: tokenizer first (its ids place the splice), then both model parts; `quant` is
        an `lm.quant` weight format for the LM's linears (None: the fastest exact one here); `prefix_cache_mb`
        bounds the K/V kept for reuse by later prompts (0: none); `lm_batch`: requests decoded together (None:
        `lm.generations.default_rows`, by device and weight format)."""
        tokenizer = Step2Tokenizer.from_dir(folder)
        model = load_step2(folder, device=device, dtype=dtype, vocab=tokenizer.vocab)
        weight_dtype = model.lm.lm_head.weight.dtype
        apply_weight_format(model.lm, resolve_weight_format(quant or "auto", device, weight_dtype))
        rows = default_rows(model.lm) if lm_batch is None else lm_batch
        return cls(model, tokenizer, prefix_cache_of_size(prefix_cache_mb), rows)

    def audio(self, audio: Audio) -> tuple[AudioItem, list[torch.Tensor]]:
        """A spoken item: its placeholder counts and its mels (one per 25 s piece)."""
        samples = resample(to_mono(np.asarray(audio.samples, dtype=np.float32)), audio.sample_rate, SAMPLE_RATE)
        if samples.size == 0:
            raise AudioError("empty audio")
        mels = audio_mels(torch.from_numpy(np.ascontiguousarray(samples)), self.model.audio.config.n_mels)
        return AudioItem(tuple(placeholder_count(m.shape[1]) for m in mels)), mels

    def prompt(self, segments: Sequence[Segment], mels: Sequence[torch.Tensor]) -> Prompt:
        return Prompt(tuple(prompt_ids(segments, self.tokenizer.encode)), tuple(mels))

    def run(self, prompt: Prompt, config: GenerationConfig, cancel: CancelToken | None = None) -> Iterator[int]:
        """Generated ids, the stop id left out; the audio reaches the LM as encoder rows spliced into the
        prompt's embeddings."""
        embeds = self.model.prompt_embeds(prompt.ids, list(prompt.mels))
        keys = self.prefix_keys(prompt) if self.prefix_cache is not None else None
        stream = self.generations.stream(prompt.ids, config, cancel_event=cancel.event if cancel is not None else None,
                                         prompt_embeds=embeds, prefix_keys=keys)
        for step in stream:
            token = step.tokens[0]
            if token < 0 or token in config.stop_ids:
                return
            yield token

    def prefix_keys(self, prompt: Prompt) -> list[Hashable]:
        """What fixes each prompt row's embedding: its id, or for the rows of the k-th audio piece (the
        `<audio_patch>` run after the k-th `<audio_start>`, as `splice_audio` fills them) the piece's digest
        and the row's index in it."""
        digests = [_digest(mel) for mel in prompt.mels]
        keys: list[Hashable] = []
        piece, row = -1, -1
        for token in prompt.ids:
            if token == self.vocab.audio_start_id:
                piece, row = piece + 1, 0
                keys.append(token)
            elif token == self.vocab.audio_patch_id and row >= 0 and piece < len(digests):
                keys.append((digests[piece], row))
                row += 1
            else:
                row = -1
                keys.append(token)
        return keys

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return self.vocab.stop_ids

    def split(self, ids: Iterator[int]) -> Iterator[str | SpeechCode]:
        """Text deltas and speech codes of a generated stream, in order."""
        vocab = self.vocab
        text = self.tokenizer.stream()
        for token in ids:
            if token < vocab.text_ids_below:
                delta = text.push(token)
                if delta:
                    yield delta
            elif vocab.is_audio_id(token):
                code = token - vocab.audio_offset
                if code < vocab.audio_codes:
                    yield SpeechCode(code)


def _digest(mel: torch.Tensor) -> str:
    """A mel's shape and values as a short hex digest."""
    data = mel.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.blake2b(repr(data.shape).encode() + data.tobytes(), digest_size=16).hexdigest()
