"""A tiny random ``Step-Audio-Tokenizer/`` folder in the real layout, for tests and end-to-end checks.

Same files, key names and YAML layout as the release (``linguistic_tokenizer.npy``,
``speech_tokenizer_v1.onnx``, the Paraformer folder with ``model.pt``, ``config.yaml``, ``am.mvn``),
only smaller: the loaders cannot tell it from the real one, and codes cover the real ranges
(1024 vq02 centroids, 4096 vq06 codewords).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stepaudio.tokenizer.linguistic import PARAFORMER_SUBDIR
from stepaudio.tokenizer.paraformer.encoder import ParaformerEncoder, ParaformerEncoderConfig
from stepaudio.tokenizer.paraformer.loading import encoder_key_map
from stepaudio.tokenizer.s3_model import S3Config, export_s3_onnx

__all__ = ["TINY_PARAFORMER", "TINY_S3", "write_paraformer_dir", "write_tiny_tokenizer_dir"]

TINY_PARAFORMER = ParaformerEncoderConfig(output_size=16, attention_heads=2, linear_units=32, num_blocks=3)
TINY_S3 = S3Config(n_state=32, n_head=4, n_layer=2, codebook_size=4096)
LFR_DIM = 560  # 80 mels x lfr_m 7

_CONFIG_YAML = """\
model: ParaformerStreaming
model_conf:
    ctc_weight: 0.0
    lsm_weight: 0.1
    length_normalized_loss: true
    predictor_weight: 1.0
    predictor_bias: 1
    sampling_ratio: 0.75
encoder: SANMEncoderChunkOpt
encoder_conf:
    output_size: {output_size}
    attention_heads: {attention_heads}
    linear_units: {linear_units}
    num_blocks: {num_blocks}
    dropout_rate: 0.1
    positional_dropout_rate: 0.1
    attention_dropout_rate: 0.1
    input_layer: pe_online
    pos_enc_class: SinusoidalPositionEncoder
    normalize_before: true
    kernel_size: 11
    sanm_shfit: 0
    selfattention_layer_type: sanm
    chunk_size:
    - 12
    - 15
    stride:
    - 8
    - 10
    pad_left:
    - 0
    - 0
    encoder_att_look_back_factor:
    - 4
    - 4
    decoder_att_look_back_factor:
    - 1
    - 1
frontend: WavFrontendOnline
frontend_conf:
    fs: 16000
    window: hamming
    n_mels: 80
    frame_length: 25
    frame_shift: 10
    lfr_m: 7
    lfr_n: 6
    dither: 0.0
input_size: 560
"""


def _vector_line(values: torch.Tensor) -> str:
    return "<LearnRateCoef> 0 [ " + " ".join(f"{float(v):.6f}" for v in values) + " ]"


def write_paraformer_dir(
    model_dir: Path, config: ParaformerEncoderConfig = TINY_PARAFORMER, seed: int = 0
) -> ParaformerEncoder:
    """``model.pt`` (encoder keys plus a stray non-encoder key, as the full ASR model has), yaml, am.mvn."""
    model_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = ParaformerEncoder(config).eval()
    mapping = encoder_key_map(config)
    state = {mapping[k]: v.detach().clone() for k, v in encoder.state_dict().items()}
    state["ctc.ctc_lo.weight"] = torch.randn(8, config.output_size, generator=generator)
    torch.save(state, model_dir / "model.pt")
    (model_dir / "config.yaml").write_text(
        _CONFIG_YAML.format(
            output_size=config.output_size,
            attention_heads=config.attention_heads,
            linear_units=config.linear_units,
            num_blocks=config.num_blocks,
        ),
        encoding="utf-8",
    )
    shift = -10.0 - 2.0 * torch.rand(LFR_DIM, generator=generator)
    scale = 0.2 + 0.2 * torch.rand(LFR_DIM, generator=generator)
    (model_dir / "am.mvn").write_text(
        f"<Nnet>\n<Splice> {LFR_DIM} {LFR_DIM}\n[ 0 ]\n"
        f"<AddShift> {LFR_DIM} {LFR_DIM}\n{_vector_line(shift)}\n"
        f"<Rescale> {LFR_DIM} {LFR_DIM}\n{_vector_line(scale)}\n</Nnet>\n",
        encoding="utf-8",
    )
    return encoder


def write_tiny_tokenizer_dir(
    path: str | Path,
    *,
    seed: int = 0,
    paraformer: ParaformerEncoderConfig = TINY_PARAFORMER,
    s3: S3Config = TINY_S3,
) -> Path:
    """Write the folder (created if needed) and return its path."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    write_paraformer_dir(root / PARAFORMER_SUBDIR, paraformer, seed)
    generator = np.random.default_rng(seed)
    codebook = generator.standard_normal((1024, paraformer.output_size)).astype(np.float32)
    np.save(root / "linguistic_tokenizer.npy", codebook)
    export_s3_onnx(root / "speech_tokenizer_v1.onnx", s3, seed=seed)
    for name, text in (("tokens.json", "[]\n"), ("seg_dict", "")):
        (root / PARAFORMER_SUBDIR / name).write_text(text, encoding="utf-8")
    return root
