"""HiFT vocoder hyper-parameters, read from conformance `hparams.json` or a CosyVoice `cosyvoice.yaml`.

The yaml is HyperPyYAML (`!new:`, `!name:`, `!apply:`, `!ref` tags). We never construct the objects it
names: tags are kept as plain data so that `yaml.safe_load` semantics apply and the file cannot run code.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepaudio.errors import CheckpointError


@dataclass(frozen=True)
class F0PredictorConfig:
    """ConvRNNF0Predictor: `num_layers` weight-normed Conv1d(k3)+ELU, then Linear -> abs."""

    num_class: int = 1
    in_channels: int = 80
    cond_channels: int = 512
    num_layers: int = 5


@dataclass(frozen=True)
class HiFTConfig:
    """HiFTGenerator (NSF source + HiFi-GAN upsampler + iSTFT head). Defaults: CosyVoice-300M."""

    in_channels: int = 80
    base_channels: int = 512
    nb_harmonics: int = 8
    sampling_rate: int = 22050
    nsf_alpha: float = 0.1
    nsf_sigma: float = 0.003
    nsf_voiced_threshold: float = 10.0
    upsample_rates: tuple[int, ...] = (8, 8)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16)
    n_fft: int = 16
    hop_len: int = 4
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    source_resblock_kernel_sizes: tuple[int, ...] = (7, 11)
    source_resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5))
    lrelu_slope: float = 0.1
    audio_limit: float = 0.99
    f0_predictor: F0PredictorConfig = field(default_factory=F0PredictorConfig)

    @property
    def upsample_total(self) -> int:
        """Waveform samples per mel frame (256 for CosyVoice)."""
        return math.prod(self.upsample_rates) * self.hop_len

    @property
    def stft_bins(self) -> int:
        return self.n_fft // 2 + 1

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HiFTConfig:
        """Accept the conformance layout `{"hift": {...}, "f0_predictor": {...}}` or a flat HiFT mapping
        (CosyVoice kwargs, optionally with a nested `f0_predictor` mapping)."""
        hift = dict(data["hift"]) if "hift" in data else dict(data)
        f0_raw = data.get("f0_predictor", hift.pop("f0_predictor", None))
        hift.pop("f0_predictor", None)
        istft = hift.pop("istft_params", None)
        if istft is not None:
            hift["n_fft"] = istft["n_fft"]
            hift["hop_len"] = istft["hop_len"]
        known = {f for f in cls.__dataclass_fields__ if f != "f0_predictor"}
        kwargs: dict[str, Any] = {k: _freeze(v) for k, v in hift.items() if k in known}
        if f0_raw is not None:
            f0_known = F0PredictorConfig.__dataclass_fields__
            kwargs["f0_predictor"] = F0PredictorConfig(**{k: v for k, v in f0_raw.items() if k in f0_known})
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | Path) -> HiFTConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_cosyvoice_yaml(cls, path_or_text: str | Path, key: str = "hift") -> HiFTConfig:
        """Read the `hift:` node of a CosyVoice yaml (a path, or the yaml text itself)."""
        text = read_yaml_text(path_or_text)
        tree = load_hyperpyyaml(text)
        node = tree.get(key)
        if node is None:
            raise CheckpointError(f"cosyvoice yaml has no {key!r} entry")
        return cls.from_dict(_plain(node))


@dataclass(frozen=True)
class YamlTagged:
    """A HyperPyYAML object node kept as data: `tag` is e.g. `!new:pkg.Class`, `value` its arguments."""

    tag: str
    value: Any


@dataclass(frozen=True)
class _Ref:
    expr: str


def _make_loader() -> type:
    """A SafeLoader subclass that keeps every `!...` tag as YamlTagged / _Ref instead of building objects."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_tagged(loader: Any, suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.MappingNode):
            value: Any = loader.construct_mapping(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_scalar(node)
        tag = "!" + suffix
        if tag in ("!ref", "!copy"):
            return _Ref(str(value))
        return YamlTagged(tag, value)

    Loader.add_multi_constructor("!", construct_tagged)
    return Loader


def load_hyperpyyaml(text: str) -> dict[str, Any]:
    """Parse HyperPyYAML safely: `!ref <a>` and `!ref <a[b]> * 2` are resolved, objects kept as YamlTagged."""
    import yaml

    try:
        tree = yaml.load(text, Loader=_make_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise CheckpointError(f"cosyvoice yaml is not valid YAML ({reason}): re-download it") from exc
    if not isinstance(tree, dict):
        raise CheckpointError("cosyvoice yaml: top level is not a mapping")
    return {k: _resolve(v, tree, depth=0) for k, v in tree.items()}


_REF = re.compile(r"<([^<>]+)>")
_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
}


def _resolve(value: Any, tree: Mapping[str, Any], depth: int) -> Any:
    if depth > 32:
        raise CheckpointError("cosyvoice yaml: !ref chain too deep (cycle?)")
    if isinstance(value, _Ref):
        return _resolve_ref(value.expr, tree, depth)
    if isinstance(value, YamlTagged):
        return YamlTagged(value.tag, _resolve(value.value, tree, depth))
    if isinstance(value, dict):
        return {k: _resolve(v, tree, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, tree, depth) for v in value]
    return value


def _lookup(path: str, tree: Mapping[str, Any], depth: int) -> Any:
    parts = [p for p in re.split(r"[\[\].]", path) if p]
    node: Any = tree
    for part in parts:
        if isinstance(node, YamlTagged):
            node = node.value
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise CheckpointError(f"cosyvoice yaml: unresolved reference <{path}>")
    return _resolve(node, tree, depth + 1)


def _resolve_ref(expr: str, tree: Mapping[str, Any], depth: int) -> Any:
    expr = expr.strip()
    whole = _REF.fullmatch(expr)
    if whole:
        return _lookup(whole.group(1), tree, depth)
    text = _REF.sub(lambda m: repr(_lookup(m.group(1), tree, depth)), expr)
    try:
        return _arith(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError):
        return text


def _arith(node: ast.AST) -> Any:
    """Evaluate numeric literals with + - * / // ** only (what HyperPyYAML refs use in CosyVoice)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_arith(node.left), _arith(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_arith(node.operand)
    raise ValueError("not simple arithmetic")


def _plain(value: Any) -> Any:
    """YamlTagged -> its argument mapping (for reading kwargs)."""
    if isinstance(value, YamlTagged):
        return _plain(value.value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(_freeze(v) for v in value)
    return value


def read_yaml_text(path_or_text: str | Path, name: str = "cosyvoice yaml") -> str:
    """The text of a decoder yaml given as a path or as the text itself (text has a newline, a path none);
    a missing file is a `CheckpointError` naming it as `name`."""
    if isinstance(path_or_text, Path) or "\n" not in path_or_text:
        path = Path(path_or_text)
        if not path.is_file():
            raise CheckpointError(f"{name} not found: {path}")
        return path.read_text(encoding="utf-8")
    return path_or_text
