"""A tiny random Step-Audio-EditX model folder in the release layout (REFERENCE-EDITX.md §1), for tests.

`root/Step-Audio-Tokenizer/` (the v1 tokenizer folder) and `root/Step-Audio-EditX/` holding a Step1 LM whose
config.json has no `tie_word_embeddings` key (as the release's), the real `tokenizer.model`, and
`CosyVoice-300M-25Hz/` with an EditX `cosyvoice.yaml` (flow with a `DualCodebookEmbedding`, HiFT at 24 kHz,
`mel_conf`), `flow.pt`, `hift.pt` (weight-normed as the release stores it) and a CAM++-shaped `campplus.onnx`.
Only the widths are small.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch

from stepaudio.audio.io import save_audio
from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator
from stepaudio.decoder.cosyvoice2.editx import EditXFlow, editx_config_from_yaml
from stepaudio.engines.editx.paths import DECODER_DIR, EDITX_DIR, TOKENIZER_DIR
from stepaudio.lm.step1.loading import save_step1
from stepaudio.testing.tiny_decoder import TinyXVector, reference_hift_state
from stepaudio.testing.tiny_stack import _speaking_step1, speech_like
from stepaudio.testing.tiny_tokenizer import write_tiny_tokenizer_dir

__all__ = ["TINY_EDITX_YAML", "write_tiny_editx_decoder", "write_tiny_editx_stack"]

TINY_EDITX_YAML = """\
# set random seed, so that you may reproduce your result.
__set_seed1: !apply:random.seed [1986]
__set_seed2: !apply:numpy.random.seed [1986]
__set_seed3: !apply:torch.manual_seed [1986]

sample_rate: 24000
llm_input_size: 32
spk_embed_dim: 192

flow: !new:stepvocoder.cosyvoice2.flow.flow.CausalMaskedDiffWithXvec
    input_size: 32
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 5121
    input_embedding: !new:stepvocoder.cosyvoice2.embedding.dual_codebook.DualCodebookEmbedding
        vocab_size: 5121
        input_size: 32
    encoder: !new:stepvocoder.cosyvoice2.transformer.upsample_encoder_v2.UpsampleConformerEncoderV2
        input_size: 32
        output_size: 32
        input_layer: 'linear'
        pre_lookahead_len: 3
        num_blocks: 1
        num_up_blocks: 1
        up_stride: 2
        up_scale_factor: 2
        attention_heads: 2
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        key_bias: true
        linear_units: 64
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: true
    decoder: !new:stepvocoder.cosyvoice2.flow.flow_matching.CausalConditionalCFM
        inference_cfg_rate: 0.7
        estimator: !new:stepvocoder.cosyvoice2.flow.decoder_dit.DiT
            in_channels: 320
            out_channels: 80
            mlp_ratio: 2.0
            depth: 1
            num_heads: 2
            head_dim: 16
            hidden_size: 32

hift: !new:stepvocoder.cosyvoice2.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: 32
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
        cond_channels: 32

mel_conf:
    n_fft: 1920
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 480
    win_size: 1920
    fmin: 0
    fmax: 8000
"""


def write_tiny_editx_decoder(path: str | Path, seed: int = 0) -> Path:
    """`CosyVoice-300M-25Hz/` of EditX: cosyvoice.yaml, flow.pt, hift.pt, campplus.onnx (created)."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    (root / "cosyvoice.yaml").write_text(TINY_EDITX_YAML)
    config = editx_config_from_yaml(root / "cosyvoice.yaml")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    torch.save(EditXFlow(config.flow).state_dict(), root / "flow.pt")
    hift = HiFTGenerator(config.hift)
    with torch.no_grad():  # speech-like in range: F0 around 80-250 Hz, nothing clipped
        hift.f0_predictor.classifier.weight.mul_(20.0)
        hift.f0_predictor.classifier.bias.fill_(150.0)
        hift.conv_post.weight.mul_(0.3)
    torch.save(reference_hift_state(hift, generator), root / "hift.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(TinyXVector().eval(), (torch.randn(1, 50, 80),), str(root / "campplus.onnx"),
                          input_names=["input"], output_names=["output"], dynamic_axes={"input": {1: "frames"}},
                          dynamo=False)
    return root


def write_tiny_editx_stack(root: str | Path, tokenizer_model: str | Path, *, seed: int = 0) -> Path:
    """Write `root/` (the `--model-path`) with Step-Audio-Tokenizer/ and Step-Audio-EditX/, plus `prompt.wav`
    (3 s of speech-like sound at 24 kHz) to clone and edit; `tokenizer_model` is the real `tokenizer.model`."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    write_tiny_tokenizer_dir(base / TOKENIZER_DIR, seed=seed)
    lm = base / EDITX_DIR
    save_step1(_speaking_step1(seed + 5, audio_weight=4.0), lm)
    config_path = lm / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.pop("tie_word_embeddings", None)  # the release's config.json has no such key (issue #38 upstream)
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    shutil.copyfile(tokenizer_model, lm / "tokenizer.model")
    tokenizer_config = Path(tokenizer_model).with_name("tokenizer_config.json")
    if tokenizer_config.is_file():
        shutil.copyfile(tokenizer_config, lm / "tokenizer_config.json")
    write_tiny_editx_decoder(lm / DECODER_DIR, seed=seed + 6)
    save_audio(base / "prompt.wav", speech_like(3.0, 24000, seed + 7), 24000)
    return base
