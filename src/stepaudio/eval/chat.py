"""StepEval-Audio-360 style chat evaluation: an engine answers multi-turn conversations, an LLM judge scores.

Every user turn is answered in order, through the one spoken turn (`realtime.turn`): spoken turns go to the
chat model as audio when the engine hears audio (Step-Audio-Chat), otherwise through its recognizer.
The history the engine sees is its own earlier replies (`history="own"`, a real conversation) or the
dataset's assistant turns where it has them (`history="dataset"`, every model gets the same context). A
dataset assistant turn after a user turn is handed to the judge as a reference answer.

Scores follow the paper: factuality and relevance are the share of judged replies marked 1, chat score the
mean of the 1-5 scores; replies the judge did not score usably are counted and listed, not averaged in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from stepaudio.audio.io import Audio, load_audio
from stepaudio.engines.base import ChatMessage, Engine, GenerationOptions
from stepaudio.errors import StepAudioError
from stepaudio.eval.judge import Judge, JudgeError, Verdict
from stepaudio.eval.stepeval import Conversation, Turn
from stepaudio.realtime.turn import Conversation as SpokenConversation
from stepaudio.realtime.turn import TurnDone, TurnSettings, UserHeard

InputMode = Literal["auto", "audio", "text"]
History = Literal["own", "dataset"]
MAX_JUDGE_FAILURES_IN_A_ROW = 3


@dataclass(frozen=True)
class ChatEvalConfig:
    input_mode: InputMode = "auto"  # audio when a turn has it, else text
    history: History = "own"
    max_new_tokens: int = 256
    temperature: float = 0.0  # greedy: a rerun gives the same replies
    top_p: float = 1.0
    seed: int = 0
    language: str | None = None  # passed to the recognizer for spoken turns
    system_prompt: str | None = None
    max_context_tokens: int = 8192  # the history budget (oldest turns dropped beyond it)


@dataclass(frozen=True)
class TurnResult:
    conversation_id: str
    category: str
    turn: int  # 1-based index among the conversation's user turns
    question: str  # what the chat model was given as text (the transcript for a spoken turn)
    spoken: bool
    reply: str
    reference: str | None
    reply_s: float
    verdict: Verdict | None = None
    error: str | None = None


@dataclass(frozen=True)
class CategoryScore:
    replies: int
    factuality: float | None
    relevance: float | None
    chat_score: float | None


@dataclass(frozen=True)
class ChatSummary:
    conversations: int
    replies: int
    judged: int  # replies with a complete verdict
    incomplete: int  # replies whose verdict lacks a field (listed in `problems`)
    failed: int  # replies not produced or not judged (engine or judge endpoint error)
    factuality: float | None
    relevance: float | None
    chat_score: float | None
    categories: dict[str, CategoryScore] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def run_chat_eval(conversations: Sequence[Conversation], engine: Engine, judge: Judge | None,
                  config: ChatEvalConfig = ChatEvalConfig(),
                  on_turn: Callable[[TurnResult], None] | None = None) -> list[TurnResult]:
    """Answer (and, with a judge, score) every user turn; `on_turn` sees each result (a progress bar)."""
    if engine.chat is None:
        raise StepAudioError(f"engine {engine.name!r} has no chat model")
    results: list[TurnResult] = []
    failures_in_a_row = 0
    for conversation in conversations:
        for result in _conversation(conversation, engine, judge, config):
            if result.error and result.error.startswith("judge:"):
                failures_in_a_row += 1
                if failures_in_a_row >= MAX_JUDGE_FAILURES_IN_A_ROW:
                    raise JudgeError(f"the judge failed {failures_in_a_row} times in a row; last: {result.error}")
            else:
                failures_in_a_row = 0
            results.append(result)
            if on_turn is not None:
                on_turn(result)
    return results


def _conversation(conv: Conversation, engine: Engine, judge: Judge | None, config: ChatEvalConfig
                  ) -> Iterable[TurnResult]:
    seen: list[tuple[str, str]] = []  # (role, text) for the judge
    options = GenerationOptions(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                top_p=config.top_p, seed=config.seed)
    hears = engine.abilities.hears_audio
    # the judge reads the question: a spoken turn the dataset gives no text for is transcribed, even where the
    # engine hears the audio itself
    unwritten = any(t.role == "user" and t.audio is not None and not t.text for t in conv.turns)
    settings = TurnSettings(language=config.language, options=options, speak=False,
                            transcripts="always" if unwritten and config.input_mode != "text" else "needed")
    talk = SpokenConversation(engine, settings, system_prompt=config.system_prompt or "",
                              max_context_tokens=config.max_context_tokens)
    number = 0
    turns = conv.turns
    for index, turn in enumerate(turns):
        if turn.role == "system":
            talk.add(ChatMessage("system", turn.text))
            continue
        if turn.role == "assistant":
            if config.history == "dataset" or number == 0:  # a leading assistant turn is context either way
                talk.add(ChatMessage("assistant", turn.text))
                seen.append(("assistant", turn.text))
            continue
        number += 1
        following = turns[index + 1] if index + 1 < len(turns) else None
        reference = following.text if following is not None and following.role == "assistant" else None
        spoken = False
        try:
            audio = _user_audio(turn, config)
            spoken = audio is not None
            # an engine that hears gets the audio, with the dataset's words as the transcript for later turns
            message = ChatMessage("user", "" if spoken else turn.text, audio=audio,
                                  transcript=turn.text if spoken and hears and turn.text else None)
            start = time.perf_counter()
            done = None
            heard = None
            keep = config.history == "own" or reference is None  # else the dataset's answer follows
            for event in talk.send(message, keep_reply=keep):
                if isinstance(event, UserHeard):
                    heard = event.text
                elif isinstance(event, TurnDone):
                    done = event
            elapsed = time.perf_counter() - start
        except StepAudioError as exc:  # the rest of the conversation depends on this turn: stop it here
            yield TurnResult(conv.id, conv.category, number, turn.text, spoken, "", reference, 0.0,
                             error=f"engine: {exc}")
            return
        reply = done.reply if done is not None else ""
        question = heard if heard is not None else (turn.text or "")
        verdict, error = None, None
        if judge is not None:
            try:
                verdict = judge.judge(seen, question, reply, reference)
            except JudgeError as exc:
                error = f"judge: {exc}"
        yield TurnResult(conv.id, conv.category, number, question, spoken, reply, reference, elapsed, verdict, error)
        seen.append(("user", question))
        if config.history == "own" or reference is None:
            seen.append(("assistant", reply))


def _user_audio(turn: Turn, config: ChatEvalConfig) -> Audio | None:
    """The user turn's speech, when it is to be given as speech."""
    if config.input_mode == "audio" and turn.audio is None:
        raise StepAudioError(f"turn has no audio (--input audio): {turn.text[:60]!r}")
    if turn.audio is None or (config.input_mode == "text" and turn.text):
        return None
    return load_audio(turn.audio)


def summarize(results: Sequence[TurnResult]) -> ChatSummary:
    """The paper's three numbers over all judged replies, and per category."""
    problems = []
    for r in results:
        if r.error:
            problems.append(f"{r.conversation_id} turn {r.turn}: {r.error}")
        elif r.verdict is not None and r.verdict.problems:
            problems.append(f"{r.conversation_id} turn {r.turn}: {'; '.join(r.verdict.problems)}")
    categories = {}
    for name in sorted({r.category for r in results}):
        subset = [r for r in results if r.category == name]
        fact, rel, score = _scores(subset)
        categories[name] = CategoryScore(len(subset), fact, rel, score)
    fact, rel, score = _scores(results)
    verdicts = [r.verdict for r in results if r.verdict is not None]
    return ChatSummary(
        conversations=len({r.conversation_id for r in results}), replies=sum(1 for r in results if not
                                                                             r.error or r.error.startswith("judge")),
        judged=sum(1 for v in verdicts if v.complete), incomplete=sum(1 for v in verdicts if not v.complete),
        failed=sum(1 for r in results if r.error), factuality=fact, relevance=rel, chat_score=score,
        categories=categories, problems=tuple(problems))


def _scores(results: Sequence[TurnResult]) -> tuple[float | None, float | None, float | None]:
    verdicts = [r.verdict for r in results if r.verdict is not None]
    return (_mean([v.factuality for v in verdicts if v.factuality is not None]),
            _mean([v.relevance for v in verdicts if v.relevance is not None]),
            _mean([v.score for v in verdicts if v.score is not None]))


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def engine_models(engine_name: str, options: dict[str, Any]) -> list[Any]:
    """Model records (report.ModelRecord) for a report: the lite engine's packaged models carry their sizes and
    sha256 (the resolver checks them before loading); other engines are named with their options."""
    from stepaudio.eval.report import ModelFile, ModelRecord

    if engine_name == "step2":
        from stepaudio.eval.engine_models import engine_model_records

        return engine_model_records(engine_name, options, ["chat"])
    if engine_name != "lite":
        return [ModelRecord("engine", engine_name, (), note=f"options {options}")]
    from stepaudio.engines.lite import models
    from stepaudio.engines.lite.engine import LiteConfig

    config = LiteConfig.from_options(dict(options))
    records = []
    for role, name in (("asr", config.asr_model), ("chat", config.chat_model), ("tts", config.tts_model or "joe")):
        key = models.ALIASES.get(name.lower(), name.lower())
        spec = models.MODELS.get(key)
        if spec is None:
            records.append(ModelRecord(role, name, (), note="a local path or hub id: not hashed here"))
            continue
        files = tuple(ModelFile(f.name, f.size, f.sha256) for f in spec.files)
        records.append(ModelRecord(role, spec.name, files, note=", ".join(spec.packages)))
    return records
