"""A tiny random `CosyVoice-300M-25Hz/` folder in the real layout, for tests and end-to-end checks.

`cosyvoice.yaml` in the release's HyperPyYAML style (tags, `!ref`, sections the decoder ignores),
`flow.pt` and `hift.pt` as torch state dicts with the reference key names (separate `to_q/to_k/to_v`;
HiFT convs stored weight-normed as `weight_g` / `weight_v`), and `campplus.onnx` exported from a
random torch module with CAM++'s signature (fbank `[1, T, 80]` -> x-vector `[1, 192]`). Only the
widths are small; the loaders cannot tell it from a release folder.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from stepaudio.decoder.cosyvoice1.flow import MaskedDiffWithXvec
from stepaudio.decoder.cosyvoice1.flow_config import flow_config_from_yaml
from stepaudio.decoder.cosyvoice1.flow_loading import flow_key_map
from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig
from stepaudio.decoder.cosyvoice1.hift_loading import WEIGHT_NORMED
from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator

__all__ = ["TINY_COSYVOICE_YAML", "cosyvoice_hift_yaml", "write_tiny_cosyvoice_dir"]


def cosyvoice_hift_yaml(base_channels: str) -> str:
    """The `hift:` section of a CosyVoice-300M cosyvoice.yaml: every value the release's (HiFT at 22.05 kHz) but
    `base_channels`, which is yaml text (a number or a `!ref` expression)."""
    return f"""\
hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: {base_channels}
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 8]
    upsample_kernel_sizes: [16, 16]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7, 11]
    resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    source_resblock_kernel_sizes: [7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: !ref <hift[base_channels]>
"""


TINY_COSYVOICE_YAML = f"""\
# set random seed, so that you may reproduce your result.
__set_seed1: !apply:random.seed [1986]
__set_seed2: !apply:numpy.random.seed [1986]
__set_seed3: !apply:torch.manual_seed [1986]
__set_seed4: !apply:torch.cuda.manual_seed_all [1986]

# fixed params
sample_rate: 22050
text_encoder_input_size: 16
spk_embed_dim: 192

# model params
flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec
    input_size: 16
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 5120
    input_frame_rate: 41.667
    only_mask_loss: True
    encoder: !new:cosyvoice.transformer.encoder.ConformerEncoder
        output_size: 16
        attention_heads: 2
        linear_units: 32
        num_blocks: 1
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: !ref <text_encoder_input_size>
        use_cnn_module: False
        macaron_style: False
    length_regulator: !new:cosyvoice.flow.length_regulator.InterpolateRegulator
        channels: 80
        sampling_ratios: [1, 1]
    decoder: !new:cosyvoice.flow.flow_matching.ConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.ConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [16, 16]
            dropout: 0.0
            attention_head_dim: 8
            n_blocks: 1
            num_mid_blocks: 1
            num_heads: 2
            act_fn: 'gelu'

{cosyvoice_hift_yaml("16")}
# processor functions
parquet_opener: !name:cosyvoice.dataset.processor.parquet_opener
allowed_special: 'all'
feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1024
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 256
    win_size: 1024
    fmin: 0
    fmax: 8000
    center: False
compute_fbank: !name:cosyvoice.dataset.processor.compute_fbank
    feat_extractor: !ref <feat_extractor>
data_pipeline: [
    !ref <parquet_opener>,
    !ref <compute_fbank>,
]

train_conf:
    optim: adam
    optim_conf:
        lr: 0.001
    scheduler: warmuplr
    scheduler_conf:
        warmup_steps: 2500
    max_epoch: 200
    grad_clip: 5
    accum_grad: 2
"""


class TinyXVector(nn.Module):
    """CAM++'s signature: mean-normalised fbank `[1, T, 80]` -> x-vector `[1, 192]`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(80, 32, 3, padding=1)
        self.proj = nn.Linear(64, 192)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.conv(feats.transpose(1, 2)))
        stats = torch.cat([hidden.mean(dim=-1), hidden.std(dim=-1)], dim=-1)
        return self.proj(stats)


def write_tiny_campplus(path: Path) -> None:
    """A random `TinyXVector` exported as `campplus.onnx` is (input `input` [1, frames, 80], output `output`)."""
    xvector = TinyXVector().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            xvector, (torch.randn(1, 50, 80),), str(path),
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {1: "frames"}}, dynamo=False,
        )  # fmt: skip


def reference_flow_state(model: MaskedDiffWithXvec) -> dict[str, torch.Tensor]:
    """Our flow state dict under the reference names (the fused q|k|v split back into three)."""
    ours = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, sources in flow_key_map(list(ours)).items():
        for name, part in zip(sources, ours[key].chunk(len(sources), dim=0), strict=True):
            out[name] = part.clone()
    return out


def reference_hift_state(model: HiFTGenerator, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """HiFT state dict as the release stores it: weight-normed convs as `weight_g` + `weight_v`."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        module, _, leaf = name.rpartition(".")
        if leaf == "weight" and WEIGHT_NORMED.match(module):
            dims = tuple(range(1, tensor.dim()))
            g = torch.linalg.vector_norm(tensor, dim=dims, keepdim=True)
            scale = 0.5 + torch.rand(tensor.shape[0], generator=generator)  # v is not pre-normalised
            out[f"{module}.weight_g"] = g.clone()
            out[f"{module}.weight_v"] = tensor * scale.view(-1, *([1] * len(dims)))
        else:
            out[name] = tensor.clone()
    return out


def _tame_hift(model: HiFTGenerator) -> None:
    """Random HiFT weights made speech-like in range: F0 around 80-250 Hz, no clipped output."""
    with torch.no_grad():
        model.f0_predictor.classifier.weight.mul_(20.0)
        model.f0_predictor.classifier.bias.fill_(150.0)
        model.conv_post.weight.mul_(0.3)
        if model.conv_post.bias is not None:
            model.conv_post.bias.zero_()


def write_tiny_cosyvoice_dir(path: str | Path, seed: int = 0) -> Path:
    """Write `cosyvoice.yaml`, `flow.pt`, `hift.pt` and `campplus.onnx` into `path` (created)."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    (root / "cosyvoice.yaml").write_text(TINY_COSYVOICE_YAML)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    flow = MaskedDiffWithXvec(flow_config_from_yaml(root / "cosyvoice.yaml"))
    torch.save(reference_flow_state(flow), root / "flow.pt")
    hift = HiFTGenerator(HiFTConfig.from_cosyvoice_yaml(root / "cosyvoice.yaml"))
    _tame_hift(hift)
    torch.save(reference_hift_state(hift, generator), root / "hift.pt")
    write_tiny_campplus(root / "campplus.onnx")
    return root
