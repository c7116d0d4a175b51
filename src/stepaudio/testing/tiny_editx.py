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
from pathlib import Path

import numpy as np
import torch

from stepaudio.audio.io import save_audio
from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator
from stepaudio.decoder.cosyvoice2.editx import EditXDecoderConfig, EditXFlow, editx_config_from_yaml
from stepaudio.engines.editx.paths import DECODER_DIR, EDITX_DIR, TOKENIZER_DIR
from stepaudio.lm.step1.loading import save_step1
from stepaudio.testing.editx_yaml import TINY_SHAPE, editx_yaml
from stepaudio.testing.tiny_decoder import reference_hift_state, write_tiny_campplus
from stepaudio.testing.tiny_stack import _speaking_step1, speech_like
from stepaudio.testing.tiny_tokenizer import write_tiny_tokenizer_dir

__all__ = [
    "TINY_EDITX_YAML",
    "dual_codebook_ids",
    "write_random_editx_decoder",
    "write_tiny_editx_decoder",
    "write_tiny_editx_stack",
]

TINY_EDITX_YAML = editx_yaml(TINY_SHAPE)


def dual_codebook_ids(groups: int, seed: int) -> list[int]:
    """Random decoder ids in EditX's interleaving: per group 2 ids of the 1024-code book, then 3 of the 4096-code
    book offset by 1024 (what `decoder.cosyvoice2.editx.dual_frames` regroups)."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for _ in range(groups):
        out += [int(c) for c in rng.integers(0, 1024, 2)] + [1024 + int(c) for c in rng.integers(0, 4096, 3)]
    return out


def write_random_editx_decoder(folder: Path, yaml_text: str, seed: int, hift_seed: int) -> EditXDecoderConfig:
    """`cosyvoice.yaml`, random `flow.pt` and `hift.pt` (weight-normed as the release stores it) -> the config."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cosyvoice.yaml").write_text(yaml_text, encoding="utf-8")
    config = editx_config_from_yaml(folder / "cosyvoice.yaml")
    torch.manual_seed(seed)
    torch.save(EditXFlow(config.flow).state_dict(), folder / "flow.pt")
    hift = HiFTGenerator(config.hift)
    with torch.no_grad():  # speech-like in range: F0 around 80-250 Hz, nothing clipped (an SNR then means something)
        hift.f0_predictor.classifier.weight.mul_(20.0)
        hift.f0_predictor.classifier.bias.fill_(150.0)
        hift.conv_post.weight.mul_(0.3)
    torch.save(reference_hift_state(hift, torch.Generator().manual_seed(hift_seed)), folder / "hift.pt")
    return config


def write_tiny_editx_decoder(path: str | Path, seed: int = 0) -> Path:
    """`CosyVoice-300M-25Hz/` of EditX: cosyvoice.yaml, flow.pt, hift.pt, campplus.onnx (created)."""
    root = Path(path)
    write_random_editx_decoder(root, TINY_EDITX_YAML, seed, hift_seed=seed)
    write_tiny_campplus(root / "campplus.onnx")
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
