"""Inference form of the HiFT conv stack: same function as `HiFTGenerator.backbone`, fewer memory passes.

Why it is faster on CPU (the conv stack is ~97% of HiFT time, about a third of it elementwise Snake work):
* Snake `x + sin²(a·x)/a` is rewritten as `(u + sin²(u)) / a` with `u = a·x`; the `1/a` goes into the
  next conv's input columns and, for the second Snake of each pair, the `a` into the previous conv's
  output rows. What is left is one multiply, one sin and one fused `addcmul`, done in place.
* The ResBlock convs run channels-last (NWC, as 2-D convs of height 1), which oneDNN runs faster here
  than NCW for these dilated kernels.
* Optionally (`tile_frames`) the last stage (ResBlocks + source ResBlock + conv_post at the full frame
  rate) runs in time tiles with a halo as wide as its receptive field; the result equals one pass.
  Measured slower on the 2-core dev machine, so it is off by default; it bounds memory for long inputs.
Inference only: the fused modules mutate their own temporaries in place and have no gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator, ResBlock, Snake

# Below this |alpha| the 1/alpha folding would lose precision; such a Snake keeps the plain formula.
_MIN_FOLD_ALPHA = 1e-2


def _conv_params(conv: nn.Conv1d) -> tuple[torch.Tensor, torch.Tensor]:
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    return conv.weight.detach().clone(), bias.detach().clone()


def _layout(tensor: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Channels-last 1-D work runs as 2-D with height 1: [..., C, T] -> [..., C, 1, T] stored as NHWC."""
    if not channels_last or tensor.dim() == 1:
        return tensor.contiguous()
    return tensor.unsqueeze(-2).contiguous(memory_format=torch.channels_last)


def _resblock(module: nn.Module) -> ResBlock:
    assert isinstance(module, ResBlock)
    return module


def _foldable(act: Snake) -> bool:
    return bool((act.alpha.detach().abs() >= _MIN_FOLD_ALPHA).all())


class FusedResBlock(nn.Module):
    """`ResBlock` with Snake scales folded into the convs (see module docstring)."""

    def __init__(self, block: ResBlock, channels_last: bool = False) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.dilations: list[int] = []
        self.paddings: list[tuple[int, int]] = []
        self.fold1: list[bool] = []
        self.fold2: list[bool] = []
        params: list[torch.Tensor] = []
        for conv1, conv2, act1, act2 in zip(
            block.convs1, block.convs2, block.activations1, block.activations2, strict=True
        ):
            assert isinstance(conv1, nn.Conv1d) and isinstance(conv2, nn.Conv1d)
            assert isinstance(act1, Snake) and isinstance(act2, Snake)
            a1, a2 = act1.alpha.detach().clone(), act2.alpha.detach().clone()
            w1, b1 = _conv_params(conv1)
            w2, b2 = _conv_params(conv2)
            f1, f2 = _foldable(act1), _foldable(act2)
            if f1:  # conv1 sees a1 * snake1(x): divide its input columns by a1
                w1 = w1 / a1[None, :, None]
            if f2:  # conv1 emits a2 * (its output), conv2 sees a2 * snake2: divide its columns by a2
                w1, b1 = w1 * a2[:, None, None], b1 * a2
                w2 = w2 / a2[None, :, None]
            params += [a1[None, :, None], a2[None, :, None], w1, b1, w2, b2]
            self.dilations.append(int(conv1.dilation[0]))
            self.paddings.append((int(conv1.padding[0]), int(conv2.padding[0])))
            self.fold1.append(f1)
            self.fold2.append(f2)
        for i, tensor in enumerate(params):
            self.register_buffer(f"p{i}", _layout(tensor, channels_last))
        self.kernel_size = int(block.convs1[0].kernel_size[0])  # type: ignore[index]

    def receptive_half_width(self) -> int:
        """Samples of context needed on each side of an output sample."""
        return sum(p1 + p2 for p1, p2 in self.paddings)

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, pad: int, dilation: int) -> torch.Tensor:
        if self.channels_last:
            return F.conv2d(x, w, b, padding=(0, pad), dilation=(1, dilation))
        return F.conv1d(x, w, b, padding=pad, dilation=dilation)

    def _p(self, i: int) -> torch.Tensor:
        tensor: torch.Tensor = getattr(self, f"p{i}")
        return tensor

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x  # not modified in place: callers feed the same input to several blocks
        u = torch.empty_like(x)
        s = torch.empty_like(x)
        for j, dilation in enumerate(self.dilations):
            a1, a2, w1, b1, w2, b2 = (self._p(6 * j + k) for k in range(6))
            pad1, pad2 = self.paddings[j]
            torch.mul(residual, a1, out=u)
            torch.sin(u, out=s)
            if self.fold1[j]:
                u.addcmul_(s, s)
            else:
                torch.addcmul(residual, s.mul_(s), 1.0 / (a1 + 1e-9), out=u)
            y = self._conv(u, w1, b1, pad1, dilation)
            if self.fold2[j]:
                s2 = torch.sin(y)
                y.addcmul_(s2, s2)
            else:
                s2 = torch.sin(y * a2)
                y.addcmul_(s2.mul_(s2), 1.0 / (a2 + 1e-9))
            r = self._conv(y, w2, b2, pad2, 1)
            residual = residual + r if j == 0 else residual.add_(r)
        return residual


class FastHiFT(nn.Module):
    """A `HiFTGenerator` for inference: same methods and results, fused ResBlocks, tiled last stage."""

    post_w: torch.Tensor
    post_b: torch.Tensor

    def __init__(self, model: HiFTGenerator, tile_frames: int | None = None, channels_last: bool = True) -> None:
        super().__init__()
        self.generator = model.eval()
        self.config = model.config
        self.channels_last = channels_last
        fused = [FusedResBlock(_resblock(b), channels_last) for b in model.resblocks]
        fused_source = [FusedResBlock(_resblock(b), channels_last) for b in model.source_resblocks]
        self.resblocks = nn.ModuleList(fused)
        self.source_resblocks = nn.ModuleList(fused_source)
        self.tile_frames = tile_frames
        n_kernels = len(self.config.resblock_kernel_sizes)
        last = len(model.ups) - 1
        blocks = fused[last * n_kernels : (last + 1) * n_kernels]
        down = model.source_downs[last]
        assert isinstance(down, nn.Conv1d)
        self._tile_source = down.kernel_size[0] == 1 and down.stride[0] == 1
        source_width = fused_source[last].receptive_half_width() if self._tile_source else 0
        post_w, post_b = _conv_params(model.conv_post)
        self.register_buffer("post_w", _layout(post_w, channels_last))
        self.register_buffer("post_b", post_b)
        self.post_pad = int(model.conv_post.padding[0])
        self.halo = source_width + max(b.receptive_half_width() for b in blocks) + self.post_pad

    def _to_layout(self, x: torch.Tensor) -> torch.Tensor:
        return _layout(x, self.channels_last)

    def _conv_post(self, x: torch.Tensor) -> torch.Tensor:
        """conv_post in the working layout, returned as [B, C, T]."""
        if self.channels_last:
            return F.conv2d(x, self.post_w, self.post_b, padding=(0, self.post_pad)).squeeze(-2)
        return F.conv1d(x, self.post_w, self.post_b, padding=self.post_pad)

    # The F0 / source / iSTFT parts are cheap and shared with the plain generator.
    def predict_f0(self, mel: torch.Tensor) -> torch.Tensor:
        return self.generator.predict_f0(mel)

    def excitation(
        self,
        f0: torch.Tensor,
        phase: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return self.generator.excitation(f0, phase, noise, generator)

    def source_stft(self, source: torch.Tensor) -> torch.Tensor:
        return self.generator.source_stft(source)

    def istft_head(self, conv_out: torch.Tensor) -> torch.Tensor:
        return self.generator.istft_head(conv_out)

    def _mean_of_blocks(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        n = len(self.config.resblock_kernel_sizes)
        blocks = self.resblocks[stage * n : (stage + 1) * n]
        acc = blocks[0](x)
        for block in blocks[1:]:
            acc.add_(block(x))
        return acc.mul_(1.0 / n)

    @torch.no_grad()
    def backbone(self, mel: torch.Tensor, s_stft: torch.Tensor) -> torch.Tensor:
        g, slope = self.generator, self.config.lrelu_slope
        last = len(g.ups) - 1
        x = g.conv_pre(mel)
        for i, up in enumerate(g.ups):
            x = up(F.leaky_relu(x, slope))
            if i == last:
                return self._last_stage(x, s_stft)
            x = self._to_layout(x)
            x.add_(self.source_resblocks[i](self._to_layout(g.source_downs[i](s_stft))))
            x = self._mean_of_blocks(i, x)
            x = x.squeeze(-2) if self.channels_last else x
        raise AssertionError("unreachable: HiFT has at least one upsampling stage")

    def _last_stage(self, up: torch.Tensor, s_stft: torch.Tensor) -> torch.Tensor:
        """Left reflection pad, source branch, ResBlocks, conv_post — tile by tile along time."""
        g = self.generator
        last = len(g.ups) - 1
        frames = up.shape[-1] + 1  # after the reflection pad of one sample
        source = None
        if not self._tile_source:
            source = self.source_resblocks[last](self._to_layout(g.source_downs[last](s_stft)))
        out = up.new_empty(up.shape[0], g.conv_post.out_channels, frames)
        tile = self.tile_frames or frames
        for start in range(0, frames, tile):
            stop = min(frames, start + tile)
            lo, hi = max(0, start - self.halo), min(frames, stop + self.halo)
            # The reflection pad: padded[0] = up[1], padded[t] = up[t - 1].
            x = torch.cat([up[..., 1:2], up[..., : hi - 1]], dim=-1) if lo == 0 else up[..., lo - 1 : hi - 1]
            x = self._to_layout(x)
            if x.untyped_storage().data_ptr() == up.untyped_storage().data_ptr():
                x = x.clone()  # a view of `up`; the in-place work below must not touch it
            if source is None:
                x.add_(self.source_resblocks[last](self._to_layout(g.source_downs[last](s_stft[..., lo:hi]))))
            else:
                x.add_(source[..., lo:hi])
            y = self._conv_post(F.leaky_relu_(self._mean_of_blocks(last, x)))
            out[..., start:stop] = y[..., start - lo : stop - lo]
        return out

    def vocode(self, mel: torch.Tensor, s_stft: torch.Tensor) -> torch.Tensor:
        return self.istft_head(self.backbone(mel, s_stft))

    @torch.no_grad()
    def forward(
        self,
        mel: torch.Tensor,
        phase: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        source = self.excitation(self.predict_f0(mel), phase, noise, generator)
        return self.vocode(mel, self.source_stft(source))
