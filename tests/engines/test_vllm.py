"""The vLLM serving arithmetic: parameter counts equal the release's bytes, GPU counts, commands, formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepaudio.engines.vllm import (
    FORMATS,
    GPUS,
    MODELS,
    ServingPlanError,
    checkpoint_format,
    kv_bytes_per_token,
    memory_plan,
    recipe,
    smallest_fit,
    tensor_parallel_sizes,
    weights,
)
from stepaudio.errors import CheckpointError


def test_bf16_bytes_are_the_release_safetensors_bytes() -> None:
    """REFERENCE §1 byte counts: no biases, untied lm_head."""
    assert weights(MODELS["tts"].shape, FORMATS["bf16"]).bytes == 7_059_412_992
    assert weights(MODELS["chat"].shape, FORMATS["bf16"]).bytes == 263_893_180_416
    assert weights(MODELS["chat"].shape, FORMATS["bf16"]).params == 131_946_590_208


def test_quantized_bytes() -> None:
    chat = MODELS["chat"].shape
    bf16, int8, int4 = (weights(chat, FORMATS[name]) for name in ("bf16", "int8", "int4"))
    embeddings = 2 * 2 * 74752 * 12288
    # 1 byte per linear weight + one fp32 scale per output row; embeddings and lm_head stay bf16
    rows_per_layer = 12288 + 1024 + 1024 + 12288 + 31232 + 31232 + 12288
    assert int8.bytes == pytest.approx(bf16.linear_params + 4 * 88 * rows_per_layer + embeddings
                                       + 2 * bf16.norm_params)
    # int4: half a byte + (2-byte scale + half-byte zero point) per 128 weights
    assert int4.bytes == pytest.approx(bf16.linear_params * (0.5 + 2.5 / 128) + embeddings + 2 * bf16.norm_params)
    assert int4.bytes < int8.bytes < bf16.bytes


def test_kv_cache_per_token() -> None:
    assert kv_bytes_per_token(MODELS["tts"].shape) == 2 * 32 * 4 * 64 * 2
    assert kv_bytes_per_token(MODELS["chat"].shape) == 2 * 88 * 8 * 128 * 2


def test_gpu_counts() -> None:
    chat, tts = MODELS["chat"], MODELS["tts"]
    assert smallest_fit(chat, FORMATS["bf16"], GPUS["h100"]).gpus == 4  # the release's 4 x 80 GB
    assert smallest_fit(chat, FORMATS["bf16"], GPUS["a100-40"]).gpus == 8
    assert smallest_fit(chat, FORMATS["int8"], GPUS["h100"]).gpus == 2
    assert smallest_fit(chat, FORMATS["int4"], GPUS["h200"]).gpus == 1
    four_090 = smallest_fit(chat, FORMATS["bf16"], GPUS["rtx4090"])
    assert (four_090.tensor_parallel, four_090.pipeline_parallel) == (8, 2)
    assert smallest_fit(tts, FORMATS["bf16"], GPUS["rtx4090"]).gpus == 1
    # a shorter context frees the room one int4 chat model needs on one 80 GB GPU
    assert smallest_fit(chat, FORMATS["int4"], GPUS["h100"], context=4096).gpus == 1


def test_memory_plan_splits_weights_and_kv() -> None:
    chat = MODELS["chat"]
    one = memory_plan(chat, FORMATS["bf16"], GPUS["h200"], 1)
    four = memory_plan(chat, FORMATS["bf16"], GPUS["h200"], 4)
    assert four.weights_per_gpu == pytest.approx(one.weights_per_gpu / 4)
    assert four.kv_per_gpu == pytest.approx(one.kv_per_gpu / 4)
    assert not one.fits and four.fits and four.kv_capacity_tokens > 32768
    staged = memory_plan(chat, FORMATS["bf16"], GPUS["h100"], 8, 2)
    assert staged.weights_per_gpu < four.weights_per_gpu / 3


def test_tensor_parallel_sizes_divide_heads_and_groups() -> None:
    assert tensor_parallel_sizes(MODELS["tts"].shape) == [1, 2, 4, 8]  # 4 KV groups replicate at 8
    assert tensor_parallel_sizes(MODELS["chat"].shape, limit=16) == [1, 2, 4, 8, 16]  # 8 groups replicate at 16
    assert tensor_parallel_sizes(MODELS["chat"].shape, limit=4) == [1, 2, 4]


def _folder(path: Path, quantization: dict | None = None, max_seq_len: int = 32768) -> Path:
    path.mkdir(parents=True)
    config = {"model_type": "step1", "max_seq_len": max_seq_len}
    if quantization is not None:
        config["quantization_config"] = quantization
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_checkpoint_format_reads_config(tmp_path: Path) -> None:
    assert checkpoint_format(tmp_path / "absent") is None
    assert checkpoint_format(_folder(tmp_path / "bf16")) == "bf16"
    w4 = {"quant_method": "compressed-tensors",
          "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "int", "group_size": 128}}}}
    assert checkpoint_format(_folder(tmp_path / "w4", w4)) == "int4"
    fp8 = {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}}}
    assert checkpoint_format(_folder(tmp_path / "fp8", fp8)) == "fp8"
    assert checkpoint_format(_folder(tmp_path / "awq", {"quant_method": "awq", "bits": 4})) == "int4"
    with pytest.raises(CheckpointError, match="bitsandbytes"):
        checkpoint_format(_folder(tmp_path / "bnb", {"quant_method": "bitsandbytes"}))


def test_recipe_reads_the_folder(tmp_path: Path) -> None:
    w8 = {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 8, "type": "int"}}}}
    folder = _folder(tmp_path / "chat-w8a8", w8, max_seq_len=16384)
    served = recipe("chat", folder)
    assert served.memory.fmt.name == "int8" and served.memory.gpus == 2
    argv = served.plan.argv()
    assert argv[2] == str(folder) and "--quantization" not in argv
    assert argv[argv.index("--max-model-len") + 1] == "16384"
    with pytest.raises(ServingPlanError, match="holds a int8 checkpoint, not int4"):
        recipe("chat", folder, fmt="int4")


def test_fp8_from_bf16_is_made_at_load(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "Step-Audio-TTS-3B")
    served = recipe("tts", tmp_path, fmt="fp8")
    assert served.plan.model_dir == folder
    argv = served.plan.argv()
    assert argv[argv.index("--quantization") + 1] == "fp8"


def test_upstream_command_has_what_the_release_needs() -> None:
    argv = recipe("chat", Path("/m")).plan.argv()
    assert argv[:3] == ["vllm", "serve", "/m/Step-Audio-Chat"]
    assert argv[argv.index("--hf-overrides") + 1] == '{"tie_word_embeddings": false}'
    assert argv[argv.index("--attention-backend") + 1] == "TRITON_ATTN"
    assert "--trust-remote-code" in argv and argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert recipe("chat", Path("/m")).plan.env() == {}


def test_fork_recipe_sets_optimus_lib_path() -> None:
    plan = recipe("chat", Path("/m"), fork=True).plan
    assert plan.env() == {"OPTIMUS_LIB_PATH": "/m/Step-Audio-Chat/lib"}
    assert plan.command().startswith("OPTIMUS_LIB_PATH=/m/Step-Audio-Chat/lib vllm serve")
    assert "--attention-backend" not in plan.argv()
    with pytest.raises(ServingPlanError, match="bf16 release only"):
        recipe("chat", Path("/m"), fork=True, fmt="int4")


def test_explicit_sizes_are_checked() -> None:
    with pytest.raises(ServingPlanError, match="does not divide"):
        recipe("chat", Path("/m"), tensor_parallel=3)
    served = recipe("chat", Path("/m"), tensor_parallel=2)
    assert not served.memory.fits and "WARNING" in (served.note or "")
    with pytest.raises(ServingPlanError, match="unknown model"):
        recipe("video", Path("/m"))


def test_step2_sizes_are_the_modules_that_load_the_release() -> None:
    from stepaudio.engines.vllm import step2_recipe, step2_sizes

    sizes = step2_sizes()
    # docs/serving.md's arithmetic: 28 x (linear + q/k/v biases + norms) + embedding + lm_head + final norm
    assert sizes.lm_params == 28 * (233_046_016 + 4_608 + 7_168) + 2 * 568_852_480 + 3_584
    assert sizes.audio_params == 636_968_960 + 14_883_584  # Whisper-style encoder, adaptor
    assert sizes.kv_bytes_per_token == 2 * 28 * 4 * 128 * 2
    recipe, _, usable = step2_recipe(Path("/models"), gpu="rtx4090")
    assert recipe.tensor_parallel == 1 and sizes.bf16_bytes + sizes.kv_bytes_per_token * 16384 <= usable
