"""`train_tts` on a Step-Audio-EditX folder: EditX-format examples (clone and edit prompts), LoRA, merge, and the
merged checkpoint back in the editx engine, on a tiny EditX stack on CPU."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from stepaudio.data.manifest import iter_rows
from stepaudio.engines.base import Voice
from stepaudio.engines.editx.paths import DECODER_DIR, EDITX_DIR
from stepaudio.engines.registry import create_engine
from stepaudio.lm.step1.loading import load_step1
from stepaudio.testing.tiny_editx import write_tiny_editx_stack
from stepaudio.text.editx_prompts import Edit
from stepaudio.train.editx_examples import EDITS_FILE, EditPair, edit_pairs_lines
from stepaudio.train.loop import TrainConfig
from stepaudio.train.lora import STEP1_LINEARS, LoRAConfig
from stepaudio.train.run import TTSTrainingJob, prompt_format, train_tts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def editx_stack(tokenizer_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_editx_stack(tmp_path_factory.mktemp("editx"), tokenizer_model)


def test_format_follows_the_init_folder(editx_stack: Path, stack: Path, tmp_path: Path) -> None:
    def job(**kw: object) -> TTSTrainingJob:
        return TTSTrainingJob(dataset=tmp_path, out=tmp_path / "out", train=TrainConfig(), **kw)  # type: ignore[arg-type]

    assert prompt_format(job(init=editx_stack / EDITX_DIR)) == "editx"
    assert prompt_format(job(init=stack / "Step-Audio-TTS-3B")) == "step"  # a v1 cosyvoice.yaml
    assert prompt_format(job(config="tts-3b")) == "step"
    assert prompt_format(job(init=stack / "Step-Audio-TTS-3B", prompt_format="editx")) == "editx"


def test_lora_on_editx_examples_merges_and_loads_back(editx_stack: Path, make_dataset,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "data", n_rows=24, voice="clone_me")
    plain = [row for row in iter_rows(dataset) if not row.tags]
    pairs = [EditPair(a.id, b.id, Edit("emotion", "sad")) for a, b in pairwise(plain)]
    (dataset / EDITS_FILE).write_text(edit_pairs_lines(pairs), encoding="utf-8")
    init = editx_stack / EDITX_DIR
    lora = LoRAConfig(rank=4, alpha=8.0, targets=(*STEP1_LINEARS, "lm_head"))
    summary = train_tts(TTSTrainingJob(
        dataset=dataset, out=tmp_path / "run", init=init, merge=True, eval_fraction=0.2,
        train=TrainConfig(steps=12, batch_size=2, lr=1e-2, warmup_steps=2, eval_every=12, save_every=12, lora=lora,
                          progress=False)))
    assert summary["prompt_format"] == "editx"
    assert summary["train_examples"] + summary["eval_examples"] == 12 + len(pairs)  # 12 rows kept, the edits
    assert summary["skipped"] == {"step tags": 12}
    assert summary["final_loss"] < 0.6 * summary["first_loss"]  # the data's skewed audio codes are quickly learnt
    assert summary["final_eval_loss"] < summary["initial_eval_loss"]
    assert summary["trainable_params"] < 0.5 * summary["total_params"]
    merged = tmp_path / "run" / "model"
    assert (merged / DECODER_DIR / "cosyvoice.yaml").is_file() and (merged / "tokenizer.model").is_file()
    config = json.loads((merged / "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    base, tuned = load_step1(init), load_step1(merged)
    assert not torch.equal(base.lm_head.weight, tuned.lm_head.weight)  # merged: a plain checkpoint, changed
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    assert not (tmp_path / "run" / "speakers").exists()  # EditX has no built-in speakers to export

    engine = create_engine("editx", model_path=str(editx_stack), lm_path=str(merged), seed=0, max_new_tokens=35)
    voice = Voice("me", editx_stack / "prompt.wav", "一段语音。")
    assert engine.synthesizer is not None
    chunks = list(engine.synthesizer.synthesize("今天天气真好。", voice))
    audio = np.concatenate([c.samples for c in chunks])
    assert audio.size > 0 and chunks[-1].is_last and chunks[0].sample_rate == 24000
