"""The texts to speak: a list from a file (one a line, or JSONL), or sentences an LLM writes about topics.

Texts are stripped and deduplicated in order, because a duplicate text would map to the same row id and
only waste a synthesis. A line that starts with instruction tags is refused: tags come from the grid, so
every row's labels are the ones its manifest records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stepaudio.data.manifest import DatasetError
from stepaudio.engines.base import ChatMessage, ChatModel, GenerationOptions
from stepaudio.text.tags import KNOWN_TAGS, parse_tags

_NUMBERING = re.compile(r"^\s*(?:\d+[.)、:]|[-*•·]|\(\d+\))\s*")
_QUOTES = "\"'“”‘’「」『』"
_LABEL = re.compile(r"^[A-Za-z][\w -]{0,20}:\s+(?=\S)")  # "Starchy: I cooked ..." -> "I cooked ..."
_PREAMBLE = re.compile(r"^(?:here (?:are|is)|sure|certainly|of course|好的|以下是)\b", re.IGNORECASE)

EXPAND_SYSTEM = (
    "You write sentences for a text-to-speech corpus. Answer with the sentences only: one sentence a line, "
    "no numbering, no quotes, no commentary."
)


@dataclass(frozen=True)
class ExpandOptions:
    """How topics become texts: `per_topic` sentences each, in `language`, at most `max_chars` long."""

    per_topic: int = 10
    language: str | None = None
    max_chars: int = 200
    rounds: int = 3  # asks per topic until `per_topic` new sentences are found
    max_new_tokens: int = 400
    temperature: float = 0.8
    seed: int | None = 0


def dedupe(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))


def load_texts(path: str | Path) -> list[str]:
    """Texts of a `.jsonl` file (objects with "text", or JSON strings) or of a plain file, one per line."""
    source = Path(path)
    if not source.is_file():
        raise DatasetError(f"text list not found: {source}")
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{source}: not UTF-8 text ({exc})") from exc
    texts: list[str] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        text = _jsonl_text(source, lineno, line) if source.suffix == ".jsonl" else line.strip()
        _check_untagged(text, f"{source}:{lineno}")
        texts.append(text)
    found = dedupe(texts)
    if not found:
        raise DatasetError(f"{source}: no texts (empty file)")
    return found


def _jsonl_text(source: Path, lineno: int, line: str) -> str:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{source}:{lineno}: bad JSON ({exc.msg})") from exc
    if isinstance(value, dict):
        value = value.get("text")
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{source}:{lineno}: expected a JSON string or an object with a non-empty 'text'")
    return value.strip()


def _check_untagged(text: str, where: str) -> None:
    tags = parse_tags(text, on_unknown="ignore").tags
    known = [tag for tag in tags if tag in KNOWN_TAGS]
    if known:
        raise DatasetError(
            f"{where}: the text starts with instruction tag(s) {', '.join(known)}; give tags through the grid "
            "(--emotions, --dialects, --speeds, --styles) so the manifest records them"
        )


def expansion_prompt(topic: str, count: int, language: str | None) -> str:
    where = f" in {language}" if language else ""
    return f"Write {count} short, different sentences{where} about {topic}. One sentence per line."


def parse_sentences(reply: str, max_chars: int = 200) -> list[str]:
    """Sentences of an LLM reply: list marks, quotes and preambles removed, one per line, deduplicated."""
    out = []
    for raw in reply.splitlines():
        line = _NUMBERING.sub("", raw).strip().strip(_QUOTES).strip()
        if _PREAMBLE.match(line):
            continue
        line = _LABEL.sub("", line).strip(_QUOTES).strip()
        if not line or len(line) > max_chars or line.endswith(":"):
            continue
        if parse_tags(line, on_unknown="ignore").tags:  # "(Note: ...)" and the like are not corpus text
            continue
        if not re.search(r"\w", line):
            continue
        out.append(line)
    return dedupe(out)


def expand_topics(chat: ChatModel, topics: Sequence[str], options: ExpandOptions | None = None) -> list[str]:
    """Ask `chat` for sentences about each topic until it has `per_topic` new ones (or runs out of rounds)."""
    opts = options or ExpandOptions()
    found: list[str] = []
    for topic in dedupe(topics):
        new: list[str] = []
        for round_index in range(opts.rounds):
            wanted = opts.per_topic - len(new)
            if wanted <= 0:
                break
            messages = [ChatMessage("system", EXPAND_SYSTEM),
                        ChatMessage("user", expansion_prompt(topic, wanted, opts.language))]
            seed = None if opts.seed is None else opts.seed + round_index
            generation = GenerationOptions(max_new_tokens=opts.max_new_tokens, temperature=opts.temperature,
                                           seed=seed)
            reply = "".join(delta.text for delta in chat.respond(messages, options=generation))
            seen = set(found) | set(new)
            new += [s for s in parse_sentences(reply, opts.max_chars) if s not in seen][:wanted]
        found += new
    if not found:
        raise DatasetError(f"the chat model wrote no usable sentences about {', '.join(topics)}")
    return found
