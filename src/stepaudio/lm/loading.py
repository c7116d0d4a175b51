"""Load and save Step1 checkpoints in the Hugging Face layout the releases use.

A directory holds `config.json` and either one `*.safetensors` file or shards listed by
`model.safetensors.index.json` (other files, e.g. `lib/*.so`, are ignored). Expected keys and shapes
come from the config (a declarative map); any mismatch names the key and both shapes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from stepaudio.errors import CheckpointError
from stepaudio.lm.config import Step1Config
from stepaudio.lm.model import Step1ForCausalLM
from stepaudio.lm.safetensors_mmap import SafetensorsFile

INDEX_NAME = "model.safetensors.index.json"


def expected_shapes(cfg: Step1Config) -> dict[str, tuple[int, ...]]:
    """Every checkpoint key of a Step1 model and its shape."""
    h, i, kv, v = cfg.hidden_size, cfg.intermediate_size, cfg.kv_dim, cfg.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for n in range(cfg.num_hidden_layers):
        p = f"model.layers.{n}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (h, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, h),
            p + "post_attention_layernorm.weight": (h,),
            p + "mlp.gate_proj.weight": (i, h),
            p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
        }
    shapes |= {"model.norm.weight": (h,), "lm_head.weight": (v, h)}
    return shapes


def checkpoint_files(directory: Path) -> dict[str, Path]:
    """Key -> file holding it, from the shard index or the single safetensors file."""
    index = directory / INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files = {key: directory / name for key, name in weight_map.items()}
        for path in set(files.values()):
            if not path.is_file():
                raise CheckpointError(f"{index} lists {path.name}, which is missing")
        return files
    singles = [directory / "model.safetensors"]
    if not singles[0].is_file():
        singles = sorted(directory.glob("model*.safetensors")) or sorted(directory.glob("*.safetensors"))
    if len(singles) != 1:
        found = ", ".join(p.name for p in singles) or "none"
        raise CheckpointError(f"{directory}: expected {INDEX_NAME} or one .safetensors file, found {found}")
    return {key: singles[0] for key in SafetensorsFile(singles[0]).entries}


def _set_tensor(model: nn.Module, key: str, value: torch.Tensor) -> None:
    module_name, _, name = key.rpartition(".")
    module = model.get_submodule(module_name)
    module._parameters[name] = nn.Parameter(value, requires_grad=False)


def load_step1(
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    strict: bool = True,
) -> Step1ForCausalLM:
    """Load a Step1 model directory. dtype defaults to the checkpoint's own (bf16 for the releases).

    On CPU with a matching dtype the weights stay memory-mapped views of the files; otherwise each
    tensor is converted on its own, so peak memory is the model plus one tensor.
    """
    directory = Path(path)
    cfg = Step1Config.from_json(directory)
    files = checkpoint_files(directory)
    expected = expected_shapes(cfg)
    missing = sorted(set(expected) - set(files))
    if missing:
        raise CheckpointError(f"{directory}: checkpoint lacks {len(missing)} key(s), first {missing[0]!r}")
    unexpected = sorted(set(files) - set(expected))
    if unexpected and strict:
        raise CheckpointError(f"{directory}: unexpected key(s) for this config.json, first {unexpected[0]!r}")
    opened = {p: SafetensorsFile(p) for p in set(files.values())}
    for key, shape in expected.items():
        if key not in opened[files[key]].entries:
            raise CheckpointError(f"{files[key].name} does not hold {key!r} although the index says so")
        got = opened[files[key]].shape(key)
        if got != shape:
            raise CheckpointError(
                f"{key}: checkpoint shape {list(got)} does not match {list(shape)} expected from config.json"
            )
    model = Step1ForCausalLM(cfg, device="meta", dtype=dtype or torch.float32)
    for key in expected:
        tensor = opened[files[key]].get(key)
        target = dtype or tensor.dtype
        if not tensor.is_floating_point():
            raise CheckpointError(f"{key}: expected a floating point tensor, found {tensor.dtype}")
        _set_tensor(model, key, tensor.to(device=device, dtype=target))
    model.alibi_slopes = model.alibi_slopes.to(device)
    return model.eval()


def save_step1(model: Step1ForCausalLM, path: str | Path, *, max_shard_bytes: int | None = None) -> None:
    """Write config.json and the weights (one file, or shards plus an index past `max_shard_bytes`)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: t.detach().to("cpu").contiguous() for k, t in model.state_dict().items()}
    expected = expected_shapes(model.config)
    if set(state) != set(expected):
        raise CheckpointError("only a plain (unquantised) Step1 model can be saved")
    dtype_name = str(next(iter(state.values())).dtype).removeprefix("torch.")
    config = model.config.to_hf_dict() | {"torch_dtype": dtype_name}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    meta = {"format": "pt"}
    total = sum(t.numel() * t.element_size() for t in state.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        save_file(state, str(directory / "model.safetensors"), metadata=meta)
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in expected:  # checkpoint order: embedding, layers, norm, head
        nbytes = state[key].numel() * state[key].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = state[key]
        size += nbytes
    weight_map: dict[str, str] = {}
    for n, shard in enumerate(shards, start=1):
        name = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / name), metadata=meta)
        weight_map |= dict.fromkeys(shard, name)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
