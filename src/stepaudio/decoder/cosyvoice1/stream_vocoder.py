"""HiFT driven chunk by chunk: mel frames in, audio out, seams hidden by context, phase and cross-fade.

Each call vocodes `[left context | final frames | provisional frames]`:
* left context: the last `context_frames` final frames already vocoded, so the convolutions (and
  the F0 predictor) see real signal instead of zero padding at the chunk's left edge;
* provisional frames: the flow's guess of what comes next (its look-ahead); they give the right
  edge real context and are replaced by the next chunk's final frames.
The audio of the `crossfade` samples around the boundary is held back and cross-faded (raised
cosine, weights summing to one) with the next chunk's rendering of the same samples.

The NSF source stays continuous: the sine phase a chunk starts with is the phase the previous
chunk reached at that sample (`SineGen.end_phase`), and the additive noise is addressed by absolute
sample index (`FrameNoise`), so vocoding the whole mel in one chunk is exactly the offline result.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stepaudio.decoder.cosyvoice1.hift_fast import FastHiFT
from stepaudio.decoder.cosyvoice1.source import upsample_f0
from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator
from stepaudio.decoder.frame_noise import VOCODER_NOISE, FrameNoise, initial_phases

Vocoder = HiFTGenerator | FastHiFT

_NOISE_BLOCK = 8192  # samples per noise block


def base_generator(hift: Vocoder) -> HiFTGenerator:
    """The plain generator (source module, config) behind either vocoder form."""
    return hift.generator if isinstance(hift, FastHiFT) else hift


def vocoder_noise(hift: Vocoder, seed: int) -> FrameNoise:
    """The per-sample additive noise of the NSF source for `seed`."""
    return FrameNoise(seed, VOCODER_NOISE, hift.config.nb_harmonics + 1, block=_NOISE_BLOCK)


@torch.inference_mode()
def vocode_span(
    hift: Vocoder,
    mel: torch.Tensor,
    start_frame: int,
    phase: torch.Tensor,
    noise: FrameNoise,
    known_f0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """mel `[1, 80, T]` placed at absolute frame `start_frame` -> (waveform `[T * 256]`, f0 `[1, T]`).

    `known_f0` `[1, k]` replaces the predicted F0 of the first k frames (a stream's left context,
    whose F0 was predicted with better context by the chunk that made those frames final).
    """
    up = hift.config.upsample_total
    frames = mel.shape[-1]
    mel = mel.float()
    f0 = hift.predict_f0(mel)
    if known_f0 is not None and known_f0.shape[-1]:
        f0[:, : known_f0.shape[-1]] = known_f0.to(f0.device)
    draws = noise.columns(start_frame * up, (start_frame + frames) * up).to(mel.device)[None]
    source = hift.excitation(f0, phase.to(device=mel.device, dtype=mel.dtype), draws)
    return hift.vocode(mel, hift.source_stft(source))[0], f0


def vocode_offline(hift: Vocoder, mel: torch.Tensor, seed: int) -> np.ndarray:
    """Whole mel `[80, T]` -> float32 waveform, with the same random draws a stream of `seed` uses."""
    phase = initial_phases(seed, hift.config.nb_harmonics + 1)
    wav, _ = vocode_span(hift, mel[None], 0, phase, vocoder_noise(hift, seed))
    return wav.cpu().numpy().astype(np.float32, copy=False)


def _fade_in(length: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(length, device=device, dtype=torch.float32)
    return torch.sin(0.5 * math.pi * (i + 0.5) / length) ** 2


class StreamingVocoder:
    """Explicit state of one streamed vocoding: context frames, sine phase, held-back tail."""

    def __init__(self, hift: Vocoder, seed: int, context_frames: int = 12, crossfade: int = 512) -> None:
        up = hift.config.upsample_total
        if context_frames * up < crossfade:
            raise ValueError(f"{context_frames} context frames cannot cover a {crossfade}-sample cross-fade")
        self.hift = hift
        self.up = up
        self.context_frames = context_frames
        self.f0_margin = hift.config.f0_predictor.num_layers  # each k3 conv sees one frame further
        self.crossfade = crossfade
        self.noise = vocoder_noise(hift, seed)
        self.phase = initial_phases(seed, hift.config.nb_harmonics + 1)
        self.start = 0  # absolute frame where the next call's input starts (its phase is self.phase)
        self.context: torch.Tensor | None = None  # final frames [start, final_end)
        self.f0: torch.Tensor | None = None  # F0 of those frames, from the chunk that made them final
        self.final_end = 0  # final frames received so far
        self.emitted = 0  # samples handed out so far
        self.tail: torch.Tensor | None = None  # held samples [emitted, emitted + len(tail))

    def push(self, final: torch.Tensor, provisional: torch.Tensor | None = None) -> np.ndarray:
        """Add final mel frames `[80, n]` (and a provisional guess of the next ones); audio ready now."""
        if provisional is not None and provisional.shape[-1] == 0:
            provisional = None
        return self._vocode(final, provisional, last=False)

    def finish(self, final: torch.Tensor | None = None) -> np.ndarray:
        """The rest of the audio: the last final frames `[80, n]` if any, and nothing held back."""
        if final is None or final.shape[-1] == 0:
            return self._release_tail()
        return self._vocode(final, None, last=True)

    def _vocode(self, final: torch.Tensor, provisional: torch.Tensor | None, last: bool) -> np.ndarray:
        parts = [p for p in (self.context, final, provisional) if p is not None and p.shape[-1] > 0]
        if not parts:
            return self._release_tail() if last else np.zeros(0, dtype=np.float32)
        mel = torch.cat([p.float() for p in parts], dim=-1)
        final_end = self.final_end + final.shape[-1]
        wav, f0 = vocode_span(self.hift, mel[None], self.start, self.phase, self.noise, self.f0)
        base = self.start * self.up  # absolute sample of wav[0]
        pieces: list[torch.Tensor] = []
        if self.tail is not None:
            n = self.tail.shape[0]
            new = wav[self.emitted - base : self.emitted - base + n]
            fade = _fade_in(n, wav.device)
            pieces.append(self.tail * (1 - fade) + new * fade)
            self.emitted += n
            self.tail = None
        end = base + wav.shape[0]
        if last:
            hold_from = end
        else:
            hold_to = min(final_end * self.up + self.crossfade // 2, end)
            hold_from = max(self.emitted, hold_to - self.crossfade)
            self.tail = wav[hold_from - base : hold_to - base].clone()
        pieces.append(wav[self.emitted - base : hold_from - base])
        self.emitted = hold_from
        # Next call starts `context_frames` before the new final end; carry the phase there.
        next_start = max(self.start, final_end - self.context_frames)
        if self.tail is not None:
            next_start = min(next_start, self.emitted // self.up)
        advance = next_start - self.start
        if advance > 0:
            f0_up = upsample_f0(f0[:, :advance], self.up)
            sine = base_generator(self.hift).m_source.l_sin_gen
            self.phase = sine.end_phase(f0_up, self.phase.to(f0_up.device)).cpu()
        keep = final_end > next_start
        self.context = mel[:, advance : final_end - self.start] if keep else None
        # F0 of the last few frames saw zero padding on the right: let the next chunk predict those.
        trusted = min(final_end, self.start + mel.shape[-1] - self.f0_margin) - self.start
        self.f0 = f0[:, advance:trusted].clone() if keep and trusted > advance else None
        self.start = next_start
        self.final_end = final_end
        self.noise.forget_before(self.start * self.up)
        return torch.cat(pieces).cpu().numpy().astype(np.float32, copy=False)

    def _release_tail(self) -> np.ndarray:
        """The held-back tail as it is (no more frames will come)."""
        tail, self.tail = self.tail, None
        if tail is None:
            return np.zeros(0, dtype=np.float32)
        self.emitted += tail.shape[0]
        return tail.cpu().numpy().astype(np.float32, copy=False)
