"""An LLM judge over any OpenAI-compatible `/v1/chat/completions` endpoint, as the paper scores StepEval-Audio-360.

Each reply gets factuality (0/1), relevance (0/1) and a chat score (1-5); the run reports factuality and
relevance as the share of 1s and the chat score as a mean. The prompt is package data
(`stepaudio/eval/prompts/chat_judge.txt`) and its sha256 goes into the report, so a number always names the
prompt that produced it. Judges answer loosely (code fences, prose around the JSON, "4/5", "yes"), so the
parser accepts those; a field it cannot read, or one out of range, becomes None with the reason recorded,
never an exception: one odd answer must not end a two-hour run.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from stepaudio.errors import StepAudioError

PROMPT_FILE = "chat_judge.txt"
REFERENCE_FILE = "chat_judge_reference.txt"
_KEYS: dict[str, tuple[str, ...]] = {
    "factuality": ("factuality", "factual", "fact", "factually_correct"),
    "relevance": ("relevance", "relevant", "relevancy"),
    "score": ("score", "chat_score", "overall", "rating", "quality"),
}
_WORDS = {"yes": 1.0, "true": 1.0, "correct": 1.0, "relevant": 1.0, "no": 0.0, "false": 0.0, "incorrect": 0.0,
          "wrong": 0.0, "irrelevant": 0.0}


class JudgeError(StepAudioError):
    """The judge endpoint could not be reached or answered with an error (not: answered oddly)."""


@dataclass(frozen=True)
class JudgeConfig:
    url: str  # http://host:port, .../v1 or the full .../v1/chat/completions
    model: str = "gpt-4o"
    api_key: str | None = None
    temperature: float = 0.0
    max_tokens: int = 256
    timeout_s: float = 120.0
    retries: int = 2  # extra attempts after a failed request (not after an odd answer)
    seed: int | None = 0

    @property
    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        if base.endswith("/chat/completions"):
            return base
        return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


@dataclass(frozen=True)
class Verdict:
    """The judge's reading of one reply; a None field says the judge gave no usable value (see `problems`)."""

    factuality: int | None
    relevance: int | None
    score: float | None
    reason: str = ""
    problems: tuple[str, ...] = ()
    raw: str = ""

    @property
    def complete(self) -> bool:
        return self.factuality is not None and self.relevance is not None and self.score is not None


def load_prompt(name: str = PROMPT_FILE) -> str:
    return resources.files("stepaudio.eval").joinpath("prompts", name).read_text(encoding="utf-8")


def prompt_sha256() -> str:
    """Hash of both prompt files, recorded with every result."""
    digest = hashlib.sha256()
    for name in (PROMPT_FILE, REFERENCE_FILE):
        digest.update(load_prompt(name).encode())
    return digest.hexdigest()


def build_prompt(history: Sequence[tuple[str, str]], question: str, reply: str, reference: str | None = None
                 ) -> str:
    """The judge prompt for `reply` to `question` after `history` ((role, text) pairs)."""
    lines = [f"{role}: {text}" for role, text in history if text.strip()]
    reference_block = load_prompt(REFERENCE_FILE).format(reference=reference) if reference else ""
    return load_prompt().format(conversation="\n".join(lines) or "(no earlier turns)", question=question,
                                reply=reply or "(the assistant said nothing)", reference_block=reference_block)


def parse_verdict(text: str) -> Verdict:
    """Read factuality, relevance and score from a judge answer; never raises."""
    raw = text
    cleaned = re.sub(r"<think>.*?</think>", " ", text or "", flags=re.S | re.I)
    found = _json_object(cleaned)
    problems: list[str] = []
    if found is None:
        found = _key_values(cleaned)
        if found:
            problems.append("no JSON object in the answer; read 'key: value' text")
    if not found:
        return Verdict(None, None, None, problems=("no verdict in the judge's answer",), raw=raw)
    factuality = _binary("factuality", _pick(found, "factuality"), problems)
    relevance = _binary("relevance", _pick(found, "relevance"), problems)
    score = _score(_pick(found, "score"), problems)
    reason = found.get("reason", found.get("explanation", ""))
    return Verdict(factuality, relevance, score, str(reason or "")[:500], tuple(problems), raw)


class Judge:
    """Sends judge prompts to the endpoint in `config` and parses the answers."""

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config

    def judge(self, history: Sequence[tuple[str, str]], question: str, reply: str,
              reference: str | None = None) -> Verdict:
        """Raises JudgeError only when the endpoint fails; an unusable answer is a Verdict with problems."""
        return parse_verdict(self.complete(build_prompt(history, question, reply, reference)))

    def complete(self, prompt: str) -> str:
        cfg = self.config
        body: dict[str, Any] = {"model": cfg.model, "messages": [{"role": "user", "content": prompt}],
                                "temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "stream": False}
        if cfg.seed is not None:
            body["seed"] = cfg.seed
        headers = {"Content-Type": "application/json"}
        if cfg.api_key:
            headers["Authorization"] = f"Bearer {cfg.api_key}"
        request = urllib.request.Request(cfg.endpoint, json.dumps(body).encode(), headers, method="POST")
        last = ""
        for attempt in range(cfg.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=cfg.timeout_s) as response:
                    data = json.loads(response.read())
                return str(data["choices"][0]["message"].get("content") or "")
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode(errors="replace")
                last = f"HTTP {exc.code} from {cfg.endpoint}: {detail}"
                if exc.code < 500 and exc.code != 429:
                    break  # the request itself is wrong: retrying will not help
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"cannot reach the judge at {cfg.endpoint}: {getattr(exc, 'reason', exc)}"
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                last = f"the judge at {cfg.endpoint} did not answer like a chat completion: {exc}"
            if attempt < cfg.retries:
                time.sleep(min(2.0 ** attempt, 10.0))
        raise JudgeError(last)


# Parsing helpers -------------------------------------------------------------------------------------------


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text` that has one of the verdict keys (code fences and prose allowed)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and any(_pick(value, key) is not None for key in _KEYS):
            return {str(k).lower(): v for k, v in value.items()}
    return None


def _key_values(text: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, aliases in _KEYS.items():
        names = "|".join(aliases)
        match = re.search(rf"(?:{names})\W{{0,3}}\s*[:=]\s*[\"']?([^\s,;\"'}}]+(?:\s*(?:/|out of)\s*\d+)?)", text,
                          flags=re.I)
        if match:
            found[key] = match.group(1)
    reason = re.search(r"reason\W{0,3}\s*[:=]\s*(.+)", text, flags=re.I)
    if reason:
        found["reason"] = reason.group(1).strip().strip("\"'")
    return found


def _pick(found: dict[str, Any], key: str) -> Any:
    lowered = {str(k).lower(): v for k, v in found.items()}
    for alias in _KEYS[key]:
        if alias in lowered and lowered[alias] is not None:
            return lowered[alias]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        word = value.strip().lower().rstrip(".")
        if word in _WORDS:
            return _WORDS[word]
        fraction = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+)", word)
        if fraction:
            return float(fraction.group(1))
        try:
            return float(word)
        except ValueError:
            return None
    return None


def _binary(name: str, value: Any, problems: list[str]) -> int | None:
    if value is None:
        problems.append(f"{name} missing")
        return None
    number = _number(value)
    if number is None:
        problems.append(f"{name} {value!r} is not a number")
        return None
    if number not in (0.0, 1.0):
        problems.append(f"{name} {value!r} out of range (0 or 1)")
        return None
    return int(number)


def _score(value: Any, problems: list[str]) -> float | None:
    if value is None:
        problems.append("score missing")
        return None
    number = _number(value)
    if number is None:
        problems.append(f"score {value!r} is not a number")
        return None
    if not 1.0 <= number <= 5.0:
        problems.append(f"score {value!r} out of range (1-5)")
        return None
    return number
