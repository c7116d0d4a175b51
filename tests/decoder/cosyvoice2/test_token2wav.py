from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice2.cfm import TensorNoise
from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec
from stepaudio.decoder.cosyvoice2.hift import HiFT24k, ScriptedDraws
from stepaudio.decoder.cosyvoice2.prompt import Prompt
from stepaudio.decoder.cosyvoice2.token2wav import ReleaseFiles, Token2Wav, check_tokens
from stepaudio.errors import CheckpointError


def write_release(t2w_dir: Path, folder: Path) -> Path:
    """The release layout: flow.yaml, flow.pt, hift.pt (with the `generator.` prefix)."""
    folder.mkdir()
    shutil.copy(t2w_dir / "flow.yaml", folder / "flow.yaml")
    torch.save(load_file(str(t2w_dir / "flow.safetensors")), folder / "flow.pt")
    hift = load_file(str(t2w_dir / "hift.safetensors"))
    torch.save({f"generator.{k}": v for k, v in hift.items()}, folder / "hift.pt")
    return folder


def test_conformance_offline_end_to_end(
    flow: CausalMaskedDiffWithXvec,
    hift: HiFT24k,
    offline: dict[str, torch.Tensor],
    ref_noise: TensorNoise,
    ref_prompt: Prompt,
    offline_draws: ScriptedDraws,
) -> None:
    t2w = Token2Wav(flow, hift, noise=ref_noise)
    torch.testing.assert_close(
        t2w.mel(offline["inputs.tokens"][0], ref_prompt), offline["outputs.mel"], atol=5e-4, rtol=0
    )
    wav = t2w(offline["inputs.tokens"][0].tolist(), ref_prompt, draws=offline_draws)
    assert wav.dtype == np.float32 and wav.shape == (offline["outputs.waveform"].shape[1],)
    np.testing.assert_allclose(wav, offline["outputs.waveform"][0].numpy(), atol=5e-3, rtol=0)


def test_release_folder_loads(
    t2w_dir: Path, tmp_path: Path, offline: dict[str, torch.Tensor], ref_prompt: Prompt
) -> None:
    folder = write_release(t2w_dir, tmp_path / "token2wav")
    t2w = Token2Wav.from_dir(folder, seed=3)
    assert t2w.sample_rate == 24000 and t2w.speaker is None
    tokens = offline["inputs.tokens"][0]
    wav = t2w(tokens, ref_prompt)
    assert wav.shape == (tokens.numel() * 960,) and np.isfinite(wav).all()
    np.testing.assert_array_equal(wav, Token2Wav.from_dir(folder, seed=3)(tokens, ref_prompt))
    with pytest.raises(CheckpointError, match="prompt features need the CAM"):
        t2w.prompt(np.zeros(16000, dtype=np.float32), 16000, lambda wav: [1, 2])


def test_release_folder_missing_file(t2w_dir: Path, tmp_path: Path) -> None:
    folder = write_release(t2w_dir, tmp_path / "token2wav")
    (folder / "hift.pt").unlink()
    with pytest.raises(CheckpointError, match=r"hift\.pt missing"):
        ReleaseFiles.in_dir(folder)


def test_tokens_are_checked() -> None:
    assert check_tokens([0, 6560], 6561).tolist() == [0, 6560]
    with pytest.raises(ValueError, match=r"\[0, 6561\)"):
        check_tokens([6561], 6561)
