"""The outputs of a finished run, each written atomically (`publish_dir`):

- `OUT/model/`: a standard Hugging Face Step1 folder (config.json, safetensors, tokenizer.model), the
  fully fine-tuned model or, with `merge`, the base with the LoRA adapters folded in; it drops in as
  `Step-Audio-TTS-3B/` for `load_step1`, the Step engine and vLLM.
- `OUT/adapter/`: LoRA adapters (PEFT layout) when training with LoRA.
- `OUT/speakers/`: the reference prompts used in training (speakers_info.json + wavs), when they came
  from the dataset, so that inference prompts the model as it was trained (see `examples`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from stepaudio.engines.step.paths import COSYVOICE_DIR, COSYVOICE_MUSIC_DIR
from stepaudio.lm.step1.loading import save_step1
from stepaudio.lm.step1.model import Step1ForCausalLM
from stepaudio.train.checkpoint import publish_dir
from stepaudio.train.examples import SpeakerTable, write_speakers
from stepaudio.train.lora import LoRAConfig, lora_modules, merge_lora, save_adapters


@dataclass(frozen=True)
class Exported:
    model: Path | None
    adapter: Path | None
    speakers: Path | None


def export_final(
    model: Step1ForCausalLM,
    out_dir: str | Path,
    *,
    lora: LoRAConfig | None,
    merge: bool,
    dtype: torch.dtype,
    tokenizer_model: Path | None,
    base_model: str = "",
    speakers: SpeakerTable | None = None,
    init_dir: Path | None = None,
) -> Exported:
    """Write the final folders; changes `model` in place (merged, cast to `dtype`): call it last.

    From `init_dir` (the release folder fine-tuned), the remote-code and tokenizer config files are copied
    (vLLM loads `model_type: step1` with them) and the CosyVoice decoder folders are linked, so that
    `OUT/model` is a complete drop-in `Step-Audio-TTS-3B/` (or `Step-Audio-EditX/`: its decoder has the same
    folder name).
    """
    out = Path(out_dir)
    model = model.eval()
    adapter = None
    if lora is not None:
        adapter = publish_dir(out / "adapter", lambda d: save_adapters(model, d, lora, base_model))
    folder = None
    if lora is None or merge:
        if lora_modules(model):
            merge_lora(model)
        model.to(device="cpu", dtype=dtype)

        def write(directory: Path) -> None:
            save_step1(model, directory)
            if tokenizer_model is not None and tokenizer_model.is_file():
                shutil.copyfile(tokenizer_model, directory / "tokenizer.model")
            if init_dir is not None:
                _carry_release_files(init_dir, directory)

        folder = publish_dir(out / "model", write)
    exported_speakers = None
    if speakers is not None and speakers.prompts and all(p.audio is not None for p in speakers.prompts.values()):
        exported_speakers = publish_dir(out / "speakers", lambda d: write_speakers(speakers, d))
    return Exported(folder, adapter, exported_speakers)


SIDE_FILES = ("configuration_step1.py", "modeling_step1.py", "tokenizer_config.json", "generation_config.json",
              "configuration.json")


def _carry_release_files(init_dir: Path, directory: Path) -> None:
    for name in SIDE_FILES:
        if (init_dir / name).is_file():
            shutil.copyfile(init_dir / name, directory / name)
    for name in (COSYVOICE_DIR, COSYVOICE_MUSIC_DIR):
        if (init_dir / name).is_dir():
            os.symlink((init_dir / name).resolve(), directory / name, target_is_directory=True)
