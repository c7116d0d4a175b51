"""A tiny Step-Audio 2 release folder shared by the step2 engine tests, a spy on what reaches the model, and a
runtime that replays scripted replies through the real tokenizer (for output formats a random model never
writes: tool calls, voice switches, think mode, interleaved speech)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from stepaudio.engines.base import CancelToken
from stepaudio.engines.step2.model import Step2Model
from stepaudio.engines.step2.runtime import Prompt, Step2Runtime
from stepaudio.lm import GenerationConfig
from stepaudio.testing.tiny_step2 import PromptSpy, write_tiny_step2_stack


@pytest.fixture(scope="session")
def step2_stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_step2_stack(tmp_path_factory.mktemp("step2"))


@pytest.fixture(scope="session")
def step2_runtime(step2_stack: Path) -> Step2Runtime:
    return Step2Runtime.load(step2_stack)


@pytest.fixture
def prompt_spy(monkeypatch: pytest.MonkeyPatch) -> PromptSpy:
    spy = PromptSpy()
    monkeypatch.setattr(Step2Model, "prompt_embeds", spy.wrap(Step2Model.prompt_embeds))
    return spy


class ScriptedRuntime(Step2Runtime):
    """The real tokenizer and prompt building; `run` answers with the next scripted reply (text, or ids)."""

    def __init__(self, runtime: Step2Runtime, replies: Sequence[str | Sequence[int]]) -> None:
        super().__init__(runtime.model, runtime.tokenizer)
        self.replies = list(replies)
        self.prompts: list[Prompt] = []

    def run(self, prompt: Prompt, config: GenerationConfig, cancel: CancelToken | None = None) -> Iterator[int]:
        self.prompts.append(prompt)
        reply = self.replies.pop(0)
        yield from self.tokenizer.encode(reply) if isinstance(reply, str) else reply

    def prompt_text(self, index: int = -1) -> str:
        return self.tokenizer.decode(list(self.prompts[index].ids))
