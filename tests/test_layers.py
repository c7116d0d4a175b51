"""The layer rule (docs/architecture.md): a package imports only from layers below its own, never from a sibling
in its layer, and nothing imports `server` or `cli` (but `cli` starting the server and `__main__` running
`cli`). Every import counts, also those inside functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom first. A unit is a subpackage or top-level module of stepaudio; "stepaudio" is the package itself.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("stepaudio", "errors"),  # the package root holds only __version__
    ("hardware", "shards"),  # CPU / accelerator facts; which safetensors file holds each weight; raise errors
    ("kernels", "audio", "text"),  # weight-format linears; audio I/O, features, VAD; text, prompts, metrics
    ("tokenizer", "audio_encoder", "lm", "decoder"),  # the models
    ("engines",),  # Transcriber / ChatModel / Synthesizer over the models
    ("realtime", "store", "data", "testing"),  # sessions and the spoken turn; voices; datasets; tiny test models
    ("eval", "train"),  # benchmarks and evaluations; training on generated data
    ("server", "cli"),  # the two front ends
    ("__main__",),  # `python -m stepaudio`
)
# Imports between siblings of one layer that are part of the design, with the reason.
SIDEWAYS: dict[tuple[str, str], str] = {
    ("cli", "server"): "`stepaudio serve` and `stepaudio serve-lm` start the server",
}
LAYER_OF = {unit: index for index, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """Dotted name of a source file and whether it is a package's __init__."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def units_in(root: Path) -> set[str]:
    """The subpackages and top-level modules of stepaudio under `root`."""
    return {p.stem if p.is_file() else p.name for p in (root / "stepaudio").iterdir()
            if p.suffix == ".py" or (p / "__init__.py").is_file()} - {"__init__"}


def imported_modules(source: str, module: str, is_package: bool, units: set[str]) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every stepaudio module the source imports from, relative imports resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            # `from stepaudio import cli` imports the unit cli, `from stepaudio import __version__` the root
            if base == "stepaudio":
                names = [f"{base}.{alias.name}" if alias.name in units else base for alias in node.names]
            else:
                names = [base]
        else:
            continue
        for name in names:
            if name == "stepaudio" or name.startswith("stepaudio."):
                yield node.lineno, name


def violation(source_unit: str, target_unit: str) -> str | None:
    """Why an import from one unit to another breaks the rule, or None when it may stand."""
    if source_unit == target_unit or (source_unit, target_unit) in SIDEWAYS:
        return None
    if target_unit in ("server", "cli") and source_unit not in ("cli", "__main__"):
        return f"nothing imports {target_unit}"
    if target_unit not in LAYER_OF:
        return f"{target_unit} is in no layer of tests/test_layers.py"
    here, there = LAYER_OF[source_unit], LAYER_OF[target_unit]
    if there > here:
        return f"upward: layer {here} {LAYERS[here]} imports layer {there} {LAYERS[there]}"
    if there == here:
        return f"sideways: {source_unit} and {target_unit} share layer {here}"
    return None


def violations(root: Path) -> list[str]:
    found = []
    units = units_in(root)
    for path in sorted((root / "stepaudio").rglob("*.py")):
        module, is_package = module_name(path, root)
        source_unit = unit_of(module)
        if source_unit not in LAYER_OF:
            found.append(f"{module}: {source_unit} is in no layer of tests/test_layers.py")
            continue
        for line, name in imported_modules(path.read_text(encoding="utf-8"), module, is_package, units):
            why = violation(source_unit, unit_of(name))
            if why:
                found.append(f"{module}:{line} imports {name} ({why})")
    return found


def test_every_import_goes_down_the_layers() -> None:
    found = violations(SRC)
    assert not found, "layer rule broken (docs/architecture.md):\n" + "\n".join(found)


def test_every_unit_has_a_layer() -> None:
    assert units_in(SRC) - set(LAYER_OF) == set()


def test_the_checker_finds_upward_sideways_and_lazy_imports(tmp_path: Path) -> None:
    files = {
        "stepaudio/__init__.py": "",
        "stepaudio/data/__init__.py": "",
        "stepaudio/data/quality.py": "def f():\n    from stepaudio.eval.metrics import score\n",  # lazy, upward
        "stepaudio/tokenizer/fast.py": "from ..lm import quant\n",  # relative, sideways
        "stepaudio/eval/run.py": "import stepaudio.cli.main\nfrom stepaudio import server\n",  # the front ends
        "stepaudio/cli/serve.py": "from stepaudio.server.app import create_app\nfrom stepaudio import __version__\n",
        "stepaudio/server/__init__.py": "",
        "stepaudio/newpkg.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = violations(tmp_path)
    assert found == [
        "stepaudio.data.quality:2 imports stepaudio.eval.metrics (upward: layer 5 ('realtime', 'store', 'data', "
        "'testing') imports layer 6 ('eval', 'train'))",
        "stepaudio.eval.run:1 imports stepaudio.cli.main (nothing imports cli)",
        "stepaudio.eval.run:2 imports stepaudio.server (nothing imports server)",
        "stepaudio.newpkg: newpkg is in no layer of tests/test_layers.py",
        "stepaudio.tokenizer.fast:1 imports stepaudio.lm (sideways: tokenizer and lm share layer 3)",
    ]
