"""Load the 24 kHz HiFT from `hift.pt` (reference state dict, `generator.` prefix allowed) or safetensors.

The release ships no HiFT config (the reference builds `HiFTGenerator()` with its defaults), so the widths
are read off the weights: `conv_pre` gives the base channels, `f0_predictor.condnet.0` the F0 predictor width,
`m_source.l_linear` the harmonics; the topology is the 24 kHz default. The key map, the weight-norm folding
(`weight_g`/`weight_v` or `parametrizations.weight.original0/1`; for `ups.N` dim 0 is the input channel)
and the shape checks are the v1 family's (`cosyvoice1.hift_loading`), which these keys share.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig
from stepaudio.decoder.cosyvoice1.hift_loading import convert_state_dict, read_checkpoint
from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator
from stepaudio.decoder.cosyvoice2.config import hift24k_config
from stepaudio.decoder.cosyvoice2.hift import HiFT24k
from stepaudio.errors import CheckpointError

_WIDTH_KEYS = {
    "base_channels": ("conv_pre", 0),
    "f0_channels": ("f0_predictor.condnet.0", 0),
    "harmonics": ("m_source.l_linear", 1),
}


def _strip_generator_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference drops `generator.` from every key (`k.replace('generator.', '')`)."""
    return {k.replace("generator.", ""): v for k, v in state.items()}


def _weight(state: Mapping[str, torch.Tensor], module: str) -> torch.Tensor:
    for suffix in ("weight", "parametrizations.weight.original1", "weight_v"):
        key = f"{module}.{suffix}"
        if key in state:
            return state[key]
    raise CheckpointError(f"HiFT checkpoint is missing {module}.weight (needed to size the vocoder)")


def hift_config_from_state(state: Mapping[str, torch.Tensor]) -> HiFTConfig:
    """The 24 kHz topology with the widths these weights have."""
    sizes = {name: int(_weight(state, module).shape[dim]) for name, (module, dim) in _WIDTH_KEYS.items()}
    return hift24k_config(sizes["base_channels"], sizes["f0_channels"], sizes["harmonics"] - 1)


def load_hift24k(
    checkpoint: str | Path | Mapping[str, torch.Tensor],
    config: HiFTConfig | None = None,
    device: torch.device | str = "cpu",
) -> HiFT24k:
    """Build and fill the vocoder (float32, eval); `config=None` sizes it from the weights."""
    raw = checkpoint if isinstance(checkpoint, Mapping) else read_checkpoint(checkpoint)
    state = _strip_generator_prefix(raw)
    config = config or hift_config_from_state(state)
    if config.sampling_rate != 24000 or config.upsample_total != 480:
        raise CheckpointError(f"HiFT24k needs 24 kHz with 480 samples per frame, got {config.sampling_rate} Hz / "
                              f"{config.upsample_total}")
    generator = HiFTGenerator(config)
    generator.load_state_dict(convert_state_dict(generator, state), strict=True)
    return HiFT24k(generator.to(device=device, dtype=torch.float32).eval())
