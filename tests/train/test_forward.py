"""The training forward equals the model's own forward, padding changes nothing, checkpointing keeps gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stepaudio.testing.tiny_lm import random_step1, tiny_step1_config
from stepaudio.train.batching import collate
from stepaudio.train.examples import TrainExample
from stepaudio.train.forward import TTSLossModule


def _examples(vocab: int) -> list[TrainExample]:
    g = torch.Generator().manual_seed(3)
    out = []
    for n_prompt, n_answer in ((9, 6), (5, 3), (12, 7)):
        ids = torch.randint(0, vocab, (n_prompt + n_answer,), generator=g).tolist()
        out.append(TrainExample.of(f"{n_prompt:016x}", ids, n_prompt))
    return out


def _reference_loss(model, example: TrainExample) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    ids = torch.tensor([example.input_ids.tolist()])
    logits = model(ids)[0]
    targets = [(t, int(example.input_ids[t])) for t in range(1, len(example)) if example.loss_mask[t]]
    loss = sum(F.cross_entropy(logits[t - 1 : t], torch.tensor([y]), reduction="sum") for t, y in targets)
    return float(loss), len(targets)


def test_padded_batch_loss_is_the_sum_of_single_row_losses_of_the_real_model() -> None:
    model = random_step1(tiny_step1_config(vocab_size=300), seed=1)
    examples = _examples(300)
    module = TTSLossModule(model)
    batch = collate(examples)
    loss, count = module(batch.input_ids, batch.valid, batch.labels)
    expected = [_reference_loss(model, e) for e in examples]
    assert int(count) == sum(n for _, n in expected) == sum(e.target_tokens for e in examples)
    torch.testing.assert_close(float(loss), sum(v for v, _ in expected), rtol=1e-5, atol=1e-4)


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    grads = []
    for checkpointing in (False, True):
        model = random_step1(tiny_step1_config(vocab_size=300), seed=1)
        for p in model.parameters():
            p.requires_grad_(True)
        module = TTSLossModule(model, activation_checkpointing=checkpointing).train()
        batch = collate(_examples(300))
        loss, _ = module(batch.input_ids, batch.valid, batch.labels)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
