"""The `cosyvoice.yaml` of EditX's decoder family at any size, in the release's own format (its `!new:` classes):
one template for the tiny test stack and for `bench decoder-reference --family editx`, which hands it to the
reference. Light on purpose (no torch), so bench modules can import it at the top."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EditXShape:
    """The sizes a `cosyvoice.yaml` of this family sets (the topology is fixed)."""

    input_size: int = 512
    blocks: int = 6
    up_blocks: int = 4
    heads: int = 8
    linear_units: int = 2048
    dit_depth: int = 16
    dit_heads: int = 8
    dit_head_dim: int = 64
    dit_hidden: int = 512
    dit_mlp_ratio: float = 4.0
    hift_channels: int = 512
    f0_channels: int = 512



# The sizes of the tiny test decoder (`TINY_EDITX_YAML`).
TINY_SHAPE = EditXShape(32, 1, 1, 2, 64, 1, 2, 16, 32, 2.0, 32, 32)

_YAML = """\
__set_seed1: !apply:random.seed [1986]
__set_seed2: !apply:numpy.random.seed [1986]
__set_seed3: !apply:torch.manual_seed [1986]

sample_rate: 24000
spk_embed_dim: 192

flow: !new:stepvocoder.cosyvoice2.flow.flow.CausalMaskedDiffWithXvec
    input_size: {s.input_size}
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 5121
    input_embedding: !new:stepvocoder.cosyvoice2.embedding.dual_codebook.DualCodebookEmbedding
        vocab_size: 5121
        input_size: {s.input_size}
    encoder: !new:stepvocoder.cosyvoice2.transformer.upsample_encoder_v2.UpsampleConformerEncoderV2
        input_size: {s.input_size}
        output_size: {s.input_size}
        input_layer: 'linear'
        pre_lookahead_len: 3
        num_blocks: {s.blocks}
        num_up_blocks: {s.up_blocks}
        up_stride: 2
        up_scale_factor: 2
        attention_heads: {s.heads}
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        key_bias: true
        linear_units: {s.linear_units}
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: true
    decoder: !new:stepvocoder.cosyvoice2.flow.flow_matching.CausalConditionalCFM
        inference_cfg_rate: 0.7
        estimator: !new:stepvocoder.cosyvoice2.flow.decoder_dit.DiT
            in_channels: 320
            out_channels: 80
            mlp_ratio: {s.dit_mlp_ratio}
            depth: {s.dit_depth}
            num_heads: {s.dit_heads}
            head_dim: {s.dit_head_dim}
            hidden_size: {s.dit_hidden}

hift: !new:stepvocoder.cosyvoice2.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: {s.hift_channels}
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 5, 3]
    upsample_kernel_sizes: [16, 11, 7]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7, 11]
    resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    source_resblock_kernel_sizes: [7, 7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:stepvocoder.cosyvoice2.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: {s.f0_channels}

mel_conf:
    n_fft: 1920
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 480
    win_size: 1920
    fmin: 0
    fmax: 8000
"""


def editx_yaml(shape: EditXShape) -> str:
    """A `cosyvoice.yaml` of EditX's decoder family at `shape`, in the release's format (its `!new:` classes)."""
    return _YAML.format(s=shape)
