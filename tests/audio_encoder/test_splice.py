from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.audio_encoder.frontend import log_mel
from stepaudio.audio_encoder.loading import load_audio_encoder
from stepaudio.audio_encoder.splice import splice_audio
from stepaudio.lm.generate import GenerationConfig, TokenStream
from stepaudio.lm.protocol import new_cache
from stepaudio.lm.qwen2.loading import load_qwen2
from stepaudio.lm.sampling import GREEDY

TOL = {"atol": 1e-4, "rtol": 1e-4}
START, END, PATCH = 90, 91, 92


def _prompt(*runs: int) -> torch.Tensor:
    """Text ids with one <audio_start> PATCH*n <audio_end> block per run."""
    ids = [1, 2]
    for n in runs:
        ids += [START, *[PATCH] * n, END, 3]
    return torch.tensor(ids)


def test_each_piece_goes_after_its_own_anchor() -> None:
    ids = _prompt(2, 3)
    embeds = torch.randn(len(ids), 4)
    pieces = [torch.full((2, 4), 10.0), torch.full((3, 4), 20.0)]
    out = splice_audio(embeds, ids, pieces, START, patch_id=PATCH)
    assert torch.equal(out[3:5], pieces[0]) and torch.equal(out[8:11], pieces[1])
    untouched = torch.ones(len(ids), dtype=torch.bool)
    untouched[3:5] = untouched[8:11] = False
    assert torch.equal(out[untouched], embeds[untouched])  # anchors, ends and text keep their embeddings
    assert not torch.equal(embeds[3:5], pieces[0])  # a new tensor: the input is left alone


def test_mismatched_prompts_are_refused() -> None:
    ids = _prompt(2)
    embeds = torch.randn(len(ids), 4)
    with pytest.raises(ValueError, match="1 audio anchor"):
        splice_audio(embeds, ids, [torch.zeros(2, 4)] * 2, START)
    with pytest.raises(ValueError, match="2 placeholder"):
        splice_audio(embeds, ids, [torch.zeros(3, 4)], START, patch_id=PATCH)
    with pytest.raises(ValueError, match="2 placeholder"):
        splice_audio(embeds, ids, [torch.zeros(1, 4)], START, patch_id=PATCH)
    with pytest.raises(ValueError, match="past the prompt"):
        splice_audio(embeds, ids, [torch.zeros(9, 4)], START)
    with pytest.raises(ValueError, match="width"):
        splice_audio(embeds, ids, [torch.zeros(2, 5)], START)
    with pytest.raises(ValueError, match="do not match"):
        splice_audio(embeds[:-1], ids, [torch.zeros(2, 4)], START)


@pytest.mark.conformance
def test_conformance_end_to_end_from_mels_and_ids(conformance_dir: Path, step2_meta: dict[str, Any]) -> None:
    """mels + ids -> encoder rows -> spliced embeddings -> prefill logits -> greedy ids, as the reference."""
    folder = conformance_dir / "step-audio2" / "llm"
    vectors = load_file(folder / "vectors.safetensors")
    specials = step2_meta["tiny_special_ids"]
    encoder, lm = load_audio_encoder(folder), load_qwen2(folder)
    ids = vectors["inputs.input_ids"]
    rows = encoder.encode(list(vectors["inputs.mels"]))
    assert [r.shape[0] for r in rows] == [step2_meta["splice_rows"]]
    with torch.inference_mode():
        embeds = splice_audio(lm.embed(ids), ids, rows, specials["<audio_start>"], patch_id=specials["<audio_patch>"])
        torch.testing.assert_close(embeds, vectors["outputs.inputs_embeds"], **TOL)
        logits = lm.logits(lm.hidden(embeds[None], cache=new_cache(lm, 1, len(ids))))[0]
        torch.testing.assert_close(logits, vectors["outputs.logits_prefill"], **TOL)
    expected = vectors["outputs.decode_ids"].tolist()
    config = GenerationConfig(max_new_tokens=len(expected), stop_ids=lm.config.eos_token_ids, sampling=GREEDY)
    stream = TokenStream(lm, [ids.tolist()], config, prompt_embeds=[embeds])
    assert [step.tokens[0] for step in stream] == expected == step2_meta["greedy_ids_hf_generate"]


@pytest.mark.conformance
def test_conformance_from_the_waveform(conformance_dir: Path) -> None:
    """The encoder's mel input comes from our front end: the reference's mel of the same wave."""
    folder = conformance_dir / "step-audio2"
    waves = load_file(folder / "encoder" / "mel.safetensors")
    vectors = load_file(folder / "encoder" / "vectors.safetensors")
    encoder = load_audio_encoder(folder / "llm")
    n_mels = encoder.config.n_mels
    rows = encoder.encode([log_mel(waves["wave1"], n_mels), log_mel(waves["wave2"], n_mels)])
    for i, row in enumerate(rows):
        torch.testing.assert_close(row, vectors["outputs.adapter_out"][i, : row.shape[0]], **TOL)
