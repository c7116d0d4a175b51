"""The EditX side-by-side bench: its yaml writer, inputs and driver here; the whole run against a Step-Audio-EditX
checkout when STEPAUDIO_EDITX_REFERENCE_SOURCE (and a Python that imports its stepvocoder) is given."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stepaudio.decoder.cosyvoice2.editx import dual_frames, editx_config_from_yaml
from stepaudio.eval.bench import decoder_reference
from stepaudio.eval.bench.decoder_reference_editx import DRIVER, SHAPES, editx_yaml, make_inputs
from stepaudio.testing.tiny_editx import TINY_EDITX_YAML


def test_yaml_writer_gives_the_tiny_and_the_release_shape() -> None:
    assert editx_config_from_yaml(editx_yaml(SHAPES["tiny"])) == editx_config_from_yaml(TINY_EDITX_YAML)
    real = editx_config_from_yaml(editx_yaml(SHAPES["300m"]))
    assert real.flow.vocab_size == 5121 and real.flow.input_size == 512
    assert (real.flow.encoder.num_blocks, real.flow.encoder.num_up_blocks) == (6, 4)
    assert (real.flow.estimator.depth, real.flow.estimator.hidden_size, real.flow.estimator.num_heads) == (16, 512, 8)
    assert real.hift.base_channels == 512 and real.mel.hop_size == 480


def test_inputs_are_release_like() -> None:
    config = editx_config_from_yaml(TINY_EDITX_YAML)
    case = {"tokens": 23, "prompt_groups": 4, "prompt_mel_frames": 30, "seed": 0}
    inputs = make_inputs(case, config)
    assert inputs["tokens"].shape == (23,) and dual_frames(inputs["tokens"].tolist()).shape == (15, 2)
    frames = dual_frames(inputs["prompt_ids"].tolist())
    assert frames.shape == (12, 2) and int(frames.max()) < 5121
    assert inputs["prompt_mel"].shape == (30, 80)  # longer than 2 x 12: the untrimmed wav's mel
    assert torch.equal(inputs["prompt_mel"], inputs["prompt_mel"].bfloat16().float())
    assert inputs["noise"].shape == (1, 80, 30000)
    assert torch.equal(make_inputs(case, config)["tokens"], inputs["tokens"])


def test_driver_stands_alone() -> None:
    lines = [line.strip() for line in DRIVER.read_text(encoding="utf-8").splitlines()]
    assert not [line for line in lines if line.startswith(("from stepaudio", "import stepaudio"))]
    parser = argparse.ArgumentParser()
    decoder_reference.add_arguments(parser)
    args = parser.parse_args(["--source", "/nowhere", "--family", "editx"])
    with pytest.raises(SystemExit, match="stepvocoder"):
        decoder_reference.run(args)


@pytest.mark.reference
def test_tiny_editx_decoder_matches_the_reference(tmp_path: Path) -> None:
    source = os.environ.get("STEPAUDIO_EDITX_REFERENCE_SOURCE")
    if not source:
        pytest.skip("set STEPAUDIO_EDITX_REFERENCE_SOURCE to a Step-Audio-EditX checkout (and "
                    "STEPAUDIO_REFERENCE_PYTHON to a Python with torch, hyperpyyaml, onnxruntime, scipy)")
    yaml_path = tmp_path / "cosyvoice.yaml"
    yaml_path.write_text(TINY_EDITX_YAML)
    out = tmp_path / "rows.json"
    python = os.environ.get("STEPAUDIO_REFERENCE_PYTHON", sys.executable)
    cmd = [sys.executable, "-m", "stepaudio", "bench", "decoder-reference", "--family", "editx", "--source", source,
           "--python", python, "--cosyvoice-yaml", str(yaml_path), "--seconds", "4", "--prompt-seconds", "2",
           "--threads", "1", "--warmup", "0", "--json", str(out)]
    subprocess.run(cmd, check=True, timeout=600)
    rows = {(r["impl"], r["mode"]): r for r in json.loads(out.read_text())}
    for mode in ("offline", "stream"):
        ours = rows[("stepaudio", mode)]
        assert ours["mel_max_abs"] < 1e-4 and ours["wav_snr_db"] > 60, ours
    stream = rows[("stepaudio", "stream")]
    assert stream["chunks"] == stream["ref_chunks"] == 4  # 167 ids: 15, 24, 48 frames, then the rest
    # streamed is not offline, in the reference either (see decoder/cosyvoice2/editx_stream)
    reference = rows[("reference", "stream")]["stream_vs_offline_snr_db"]
    assert stream["stream_vs_offline_snr_db"] == pytest.approx(reference, abs=0.5)
