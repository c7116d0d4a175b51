"""Audio rows into the prompt: the k-th audio piece's adaptor rows overwrite the embeddings right after the
k-th `<audio_start>` (the `<audio_patch>` run the prompt reserved for them), REFERENCE-SA2.md §4."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def splice_audio(
    embeds: torch.Tensor,
    input_ids: torch.Tensor,
    audio: Sequence[torch.Tensor],
    anchor_id: int,
    *,
    patch_id: int | None = None,
) -> torch.Tensor:
    """Prompt embeddings [L, H] of `input_ids` [L] with `audio[k]` [n_k, H] written after the k-th anchor.

    Returns a new tensor. With `patch_id`, each run after an anchor must be exactly n_k placeholders, so a
    prompt built with the wrong count fails here instead of silently overwriting text.
    """
    if embeds.ndim != 2 or input_ids.ndim != 1 or embeds.shape[0] != input_ids.shape[0]:
        raise ValueError(f"embeddings {list(embeds.shape)} do not match ids {list(input_ids.shape)}")
    anchors = (input_ids == anchor_id).nonzero().flatten().tolist()
    if len(anchors) != len(audio):
        raise ValueError(f"the prompt has {len(anchors)} audio anchor(s) (id {anchor_id}) for {len(audio)} piece(s)")
    out = embeds.clone()
    for position, rows in zip(anchors, audio, strict=True):
        if rows.ndim != 2 or rows.shape[1] != embeds.shape[1]:
            raise ValueError(f"audio rows {list(rows.shape)} do not fit embeddings of width {embeds.shape[1]}")
        start, end = position + 1, position + 1 + rows.shape[0]
        if end > embeds.shape[0]:
            raise ValueError(f"{rows.shape[0]} audio rows after position {position} run past the prompt's end")
        if patch_id is not None:
            run = start
            while run < input_ids.shape[0] and int(input_ids[run]) == patch_id:
                run += 1
            if run != end:
                raise ValueError(
                    f"{run - start} placeholder(s) (id {patch_id}) after position {position} for {rows.shape[0]} rows"
                )
        out[start:end] = rows.to(dtype=out.dtype, device=out.device)
    return out
