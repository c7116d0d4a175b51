from __future__ import annotations

from typing import Any

import torch

from stepaudio.decoder.cosyvoice2.cfm import TensorNoise
from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec, FlowCache


def test_conformance_offline_steps(
    flow: CausalMaskedDiffWithXvec, offline: dict[str, torch.Tensor], ref_noise: TensorNoise, meta: dict[str, Any]
) -> None:
    o = offline
    with torch.inference_mode():
        torch.testing.assert_close(
            flow.project_speaker(o["inputs.spk_embedding"]), o["outputs.spk_projected"], atol=1e-5, rtol=0
        )
        mu = flow.encode(torch.cat([o["inputs.prompt_tokens"], o["inputs.tokens"]], dim=1))
        torch.testing.assert_close(mu, o["outputs.mu"], atol=1e-4, rtol=0)
        mel = flow.inference(
            o["inputs.tokens"], o["inputs.prompt_tokens"], o["inputs.prompt_mel"], o["inputs.spk_embedding"], ref_noise
        )
    assert mel.shape == (1, 80, meta["offline_mel_frames"])
    torch.testing.assert_close(mel, o["outputs.mel"], atol=5e-4, rtol=0)


def test_conformance_stream_chunk_by_chunk(
    flow: CausalMaskedDiffWithXvec,
    offline: dict[str, torch.Tensor],
    stream_vectors: dict[str, torch.Tensor],
    ref_noise: TensorNoise,
    meta: dict[str, Any],
) -> None:
    o = offline
    prompt, prompt_mel, spk = o["inputs.prompt_tokens"], o["inputs.prompt_mel"], o["inputs.spk_embedding"]
    look = meta["stream_consts"]["pre_lookahead_len"]
    keep = meta["stream_consts"]["estimator_cache_keep"]
    with torch.inference_mode():
        cache = flow.setup_cache(torch.cat([prompt, prompt[:, :look]], dim=1), prompt_mel, spk, ref_noise)
        assert cache.estimator.frames == prompt_mel.shape[1]
        for i, info in enumerate(meta["stream_chunks"]):
            tokens = stream_vectors[f"chunk{i}.tokens"][None]
            mel, cache = flow.inference_chunk(tokens, spk, cache, info["last_chunk"], ref_noise)
            assert cache.estimator.frames == info["estimator_att_len_after"]
            torch.testing.assert_close(mel, stream_vectors[f"chunk{i}.flow_mel"], atol=5e-4, rtol=0)
            cache = FlowCache(cache.encoder, cache.estimator.trimmed(prompt_mel.shape[1], keep))
    assert any(c["estimator_att_len_after"] > prompt_mel.shape[1] + keep for c in meta["stream_chunks"][:-1])


def test_one_chunk_from_empty_caches_is_the_offline_flow(
    flow: CausalMaskedDiffWithXvec, offline: dict[str, torch.Tensor], ref_noise: TensorNoise
) -> None:
    # where the reference's streaming and offline code agree: the whole sequence as one last chunk, no context
    tokens, spk = offline["inputs.tokens"], offline["inputs.spk_embedding"]
    with torch.inference_mode():
        spks = flow.project_speaker(spk)
        mu = flow.encode(tokens).transpose(1, 2)
        cond = torch.zeros_like(mu)
        z = ref_noise.columns(0, mu.shape[2])[None]
        offline_mel = flow.decoder(mu, None, spks, cond, z)
        h, _ = flow.encoder.forward_chunk(flow.input_embedding(tokens), None, last_chunk=True)
        chunk_mu = flow.encoder_proj(h).transpose(1, 2)
        torch.testing.assert_close(chunk_mu, mu, atol=1e-5, rtol=1e-5)
        chunk_mel, _ = flow.decoder.forward_chunk(chunk_mu, spks, cond, z, None)
    torch.testing.assert_close(chunk_mel, offline_mel, atol=1e-4, rtol=1e-4)
