"""A whole tiny Step-Audio 2 mini release folder with random weights, in the release layout.

`config.json` (nested `audio_encoder_config` / `text_config`), sharded safetensors with an index, a
`tokenizer.json` in the Hugging Face `tokenizers` format (byte-level BPE plus the Step specials and all
`<audio_N>` pieces), and `token2wav/` with `flow.yaml`, `flow.pt`, `hift.pt` (`generator.` prefix, weight norm
as `weight_g`/`weight_v`), `campplus.onnx` and a `speech_tokenizer_v2_25hz.onnx` with the real signature. A
`voices/` folder holds two prompt wavs. `--model-path` pointed at it runs every path of the `step2` engine.

The tiny vocabulary keeps the real order (text, then `<audio_start>` .. `<tts_end>` in the real offsets, then
the 6562 `<audio_N>` pieces) at small ids; byte b is id b, so plain text encodes as the conformance's toy
tokenizer does (UTF-8 bytes -> 0..255).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stepaudio.audio.io import save_audio
from stepaudio.audio_encoder.config import AudioEncoderConfig
from stepaudio.audio_encoder.model import AudioEncoder
from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator
from stepaudio.decoder.cosyvoice2.config import flow_config_from_yaml, hift24k_config
from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec
from stepaudio.engines.step2.model import Step2Model, save_step2
from stepaudio.lm.qwen2.config import Qwen2Config
from stepaudio.lm.qwen2.model import Qwen2ForCausalLM
from stepaudio.testing.tiny_decoder import TinyXVector, reference_hift_state
from stepaudio.testing.tiny_stack import speech_like
from stepaudio.text.vocab import STEP_AUDIO2, audio_piece
from stepaudio.tokenizer.s3_model import S3Config, export_s3_onnx

__all__ = ["TINY_STEP2_FLOW_YAML", "VOICES", "PromptSpy", "step2_specials", "tiny_step2_tokenizer",
           "write_tiny_step2_stack"]

VOICES = ("default_female", "default_male")
AUDIO_PIECES = STEP_AUDIO2.audio_pad_code + 1  # <audio_0> .. <audio_6561> (the last one is padding)

TINY_STEP2_FLOW_YAML = """\
flow: !new:cosyvoice2.flow.flow.CausalMaskedDiffWithXvec
    input_size: 16
    output_size: 80
    spk_embed_dim: 192
    output_type: 'mel'
    vocab_size: 6561
    encoder: !new:cosyvoice2.transformer.upsample_encoder_v2.UpsampleConformerEncoderV2
        input_size: 16
        output_size: 16
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
        linear_units: 32
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: true
    decoder: !new:cosyvoice2.flow.flow_matching.CausalConditionalCFM
        inference_cfg_rate: 0.7
        estimator: !new:cosyvoice2.flow.decoder_dit.DiT
            in_channels: 320
            out_channels: 80
            mlp_ratio: 2.0
            depth: 1
            num_heads: 2
            head_dim: 8
            hidden_size: 16
"""


def step2_specials() -> dict[int, str]:
    """Id -> spelling of every non-byte token of the tiny vocabulary (fillers where the real one has tokens
    this code never names), in the real relative order."""
    s = STEP_AUDIO2
    names = ["<|endoftext|>", "<|im_end|>", s.bot, s.eot, s.audio_start, s.audio_end, s.audio_patch,
             "<|filler_0|>", "<|filler_1|>", s.tts_start, s.tts_end, "<|filler_2|>"]
    names += [audio_piece(n) for n in range(AUDIO_PIECES)]
    return {256 + index: name for index, name in enumerate(names)}


def _byte_chars() -> list[str]:
    """GPT-2's byte -> printable character table (what byte-level BPE vocabularies are spelled in)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, int] = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = 256 + extra
            extra += 1
    return [chr(table[b]) for b in range(256)]


def tiny_step2_tokenizer() -> Any:
    """A `tokenizers.Tokenizer` in the release's format: byte-level BPE (byte b -> id b, no merges), the
    specials of `step2_specials` as atomic added tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE(vocab={char: b for b, char in enumerate(_byte_chars())}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = step2_specials()
    tokenizer.add_special_tokens([AddedToken(specials[i], special=True, normalized=False) for i in sorted(specials)])
    return tokenizer


def _random_(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Every weight random (norm weights near 1, biases small, matrices scaled by their fan-in), so no
    parameter can hide a bug and activations stay O(1)."""
    with torch.no_grad():
        for module in model.modules():
            is_norm = "norm" in type(module).__name__.lower()
            for name, param in module.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=generator)
                if is_norm:
                    param.copy_((1.0 if name == "weight" else 0.0) + 0.2 * noise)
                elif param.dim() == 1:
                    param.copy_(0.02 * noise)
                else:
                    param.copy_(noise / param[0].numel() ** 0.5)


def tiny_step2_model(vocab_size: int, seed: int = 0) -> Step2Model:
    """Audio encoder (128 mels, the real 1500 positions, so any 25 s piece fits) + a 2-layer Qwen2 whose head
    writes text, speech pieces and `<|EOT|>` in a mix (a random head would loop on one id)."""
    generator = torch.Generator().manual_seed(seed)
    hidden = 32
    audio = AudioEncoder(AudioEncoderConfig(n_mels=128, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2,
                                            n_audio_layer=1, llm_dim=hidden, torch_dtype="float32"))
    lm = Qwen2ForCausalLM(Qwen2Config(hidden_size=hidden, intermediate_size=64, num_attention_heads=4,
                                      num_key_value_heads=2, num_hidden_layers=2, vocab_size=vocab_size,
                                      max_position_embeddings=8192, torch_dtype="float32"))
    _random_(audio, generator)
    _random_(lm, generator)
    specials = {name: i for i, name in step2_specials().items()}
    with torch.no_grad():
        head = lm.lm_head.weight
        keep = head.clone()
        head.zero_()
        letters = [ord(c) for c in "abcdefghijklmnopqrstuvwxyz ,."]
        head[letters] = keep[letters] * 6.0
        audio_ids = slice(specials[audio_piece(0)], specials[audio_piece(AUDIO_PIECES - 1)])
        head[audio_ids] = keep[audio_ids] * 4.0
        eot = specials[STEP_AUDIO2.eot]
        head[eot] = keep[eot] * 5.0
    return Step2Model(audio.eval(), lm.eval())


def _tame_hift(generator: HiFTGenerator) -> None:
    """Random HiFT weights made speech-like in range: F0 around 150 Hz, no clipped output."""
    with torch.no_grad():
        generator.f0_predictor.classifier.weight.mul_(20.0)
        generator.f0_predictor.classifier.bias.fill_(150.0)
        generator.conv_post.weight.mul_(0.3)
        if generator.conv_post.bias is not None:
            generator.conv_post.bias.zero_()


def write_token2wav_dir(folder: Path, seed: int = 0) -> Path:
    """`token2wav/` in the release layout with tiny random weights."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flow.yaml").write_text(TINY_STEP2_FLOW_YAML, encoding="utf-8")
    generator = torch.Generator().manual_seed(seed)
    flow = CausalMaskedDiffWithXvec(flow_config_from_yaml(folder / "flow.yaml"))
    _random_(flow, generator)
    torch.save(flow.state_dict(), folder / "flow.pt")
    hift = HiFTGenerator(hift24k_config(base_channels=16, f0_channels=16))
    _tame_hift(hift)
    torch.save({f"generator.{k}": v for k, v in reference_hift_state(hift, generator).items()}, folder / "hift.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(TinyXVector().eval(), (torch.randn(1, 50, 80),), str(folder / "campplus.onnx"),
                          input_names=["input"], output_names=["output"], dynamic_axes={"input": {1: "frames"}},
                          dynamo=False)
    export_s3_onnx(folder / "speech_tokenizer_v2_25hz.onnx",
                   S3Config(n_state=16, n_head=2, n_layer=1, codebook_size=STEP_AUDIO2.audio_codes), seed=seed)
    return folder


def write_tiny_step2_stack(root: str | Path, *, seed: int = 0, max_shard_bytes: int = 1 << 20) -> Path:
    """Write the release folder at `root` (created) and return it."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_step2_tokenizer()
    tokenizer.save(str(base / "tokenizer.json"))
    save_step2(tiny_step2_model(tokenizer.get_vocab_size(), seed), base, max_shard_bytes=max_shard_bytes)
    write_token2wav_dir(base / "token2wav", seed + 1)
    voices = base / "voices"
    voices.mkdir(exist_ok=True)
    for index, name in enumerate(VOICES):
        save_audio(voices / f"{name}.wav", speech_like(1.5, 16000, seed + 10 + index), 16000)
    return base


@dataclass
class PromptSpy:
    """What reached the model: the ids and mels of each `Step2Model.prompt_embeds` call. Install with
    `monkeypatch.setattr(Step2Model, "prompt_embeds", spy.wrap(Step2Model.prompt_embeds))`."""

    calls: list[tuple[list[int], list[torch.Tensor]]] = field(default_factory=list)
    patch_ids: list[int] = field(default_factory=list)

    def wrap(self, original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def prompt_embeds(model: Step2Model, input_ids: Sequence[int], mels: Sequence[torch.Tensor]) -> torch.Tensor:
            self.calls.append((list(input_ids), list(mels)))
            self.patch_ids.append(model.vocab.audio_patch_id)
            return original(model, input_ids, mels)

        return prompt_embeds

    def placeholders(self, call: int = -1) -> int:
        """`<audio_patch>` ids in a call's prompt: the rows the audio encoder filled."""
        return self.calls[call][0].count(self.patch_ids[call])
