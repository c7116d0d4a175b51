"""Split text into sentences as it streams in, so speech can start on the first one while the rest is written.

Chinese and Japanese full stops (。！？) end a sentence at once; ASCII ones (. ! ?) only before whitespace, and
not after abbreviations, initials or a list number. Closing quotes and brackets stay with their sentence.
Newlines end a sentence. A sentence longer than `max_chars` is cut at the last comma or space (the first one
only once it runs `FIRST_SLACK_CHARS` past `first_max_chars` without ending). With
`first_clause_chars`, the first sentence of Chinese or Japanese text ends at its first clause mark (，、；：) that
has at least that many characters before it; with `first_clause_words`, the first sentence of spaced text ends
at its first , ; or : before a space that has at least that many words before it. A voice renders a sentence
whole, so a reply's first audio otherwise waits for its whole first sentence to be written and rendered (on 2
cores a 60-character English sentence is ~0.7 s of writing and ~0.3 s of rendering before the first sound).
Feeding text in pieces gives exactly the sentences that `split_sentences` gives for the whole text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CJK_TERMINALS = frozenset("。！？!?…")  # after a CJK char even ASCII !? ends a sentence
FULLWIDTH_TERMINALS = frozenset("。！？")
ASCII_TERMINALS = frozenset(".!?")
CLOSERS = frozenset("\"'”’」』）)]】》")
SOFT_BREAKS = frozenset("，、；：,;:")
CJK_CLAUSE_MARKS = frozenset("，、；：")  # ASCII ,;: also count right after a CJK character
FIRST_SLACK_CHARS = 8  # how far past `first_max_chars` a first sentence may end and still be kept whole
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "eg", "ie", "no", "fig", "approx",
    "dept", "est", "inc", "ltd", "co", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "mt"
})
_WORD_BEFORE = re.compile(r"([A-Za-z.]+|\d+)$")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


class SentenceSplitter:
    """Incremental splitter: `push` text pieces, get finished sentences; `finish` at the end for the rest."""

    def __init__(self, max_chars: int = 250, first_max_chars: int | None = None,
                 first_clause_chars: int | None = None, first_clause_words: int | None = None) -> None:
        if min(max_chars, first_max_chars or max_chars) < 8:
            raise ValueError("max_chars must be at least 8")
        if first_clause_chars is not None and first_clause_chars < 1:
            raise ValueError("first_clause_chars must be at least 1")
        if first_clause_words is not None and first_clause_words < 1:
            raise ValueError("first_clause_words must be at least 1")
        self.max_chars = max_chars
        self.first_max_chars = first_max_chars or max_chars  # cut the first sentence sooner: speech starts early
        self.first_clause_chars = first_clause_chars
        self.first_clause_words = first_clause_words
        self._buffer = ""
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        self._buffer += text
        return self._drain(final=False)

    def finish(self) -> list[str]:
        sentences = self._drain(final=True)
        rest = self._buffer.strip()
        self._buffer = ""
        return [*sentences, rest] if rest else sentences

    def _drain(self, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            limit = self.max_chars if self._emitted else self.first_max_chars
            # a first sentence that ends within a few characters past its limit stays whole, never "...time is" +
            # "it."; it is cut at the limit only once that many characters came without an end
            allowed = limit if self._emitted else limit + FIRST_SLACK_CHARS
            cut = _find_boundary(self._buffer, final)
            if not self._emitted:
                for clause in (_first_cjk_clause(self._buffer, self.first_clause_chars),
                               _first_spaced_clause(self._buffer, self.first_clause_words)):
                    if clause is not None and (cut is None or clause < cut):
                        cut = clause
            too_long = cut > allowed if cut is not None else len(self._buffer) > allowed
            if too_long:
                cut = _soft_cut(self._buffer, limit)
            if cut is None:
                return out
            sentence, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
            if sentence:
                out.append(sentence)
                self._emitted += 1


def split_sentences(text: str, max_chars: int = 250, first_max_chars: int | None = None,
                    first_clause_chars: int | None = None, first_clause_words: int | None = None) -> list[str]:
    splitter = SentenceSplitter(max_chars, first_max_chars, first_clause_chars, first_clause_words)
    return [*splitter.push(text), *splitter.finish()]


def sentence_segments(text: str, max_chars: int) -> list[str]:
    """Sentences merged up to `max_chars`, so a TTS model gets whole sentences per prompt but never a page. Spaced
    scripts keep the space between merged sentences ("One. Two."); CJK ones join as written."""
    out: list[str] = []
    for sentence in split_sentences(text, max_chars=max_chars):
        if out:
            last = out[-1][-1:]
            seam = "" if _CJK.match(last) or _CJK.match(sentence[:1]) or last in FULLWIDTH_TERMINALS else " "
            if len(out[-1]) + len(seam) + len(sentence) <= max_chars:
                out[-1] += seam + sentence
                continue
        out.append(sentence)
    return out or [text]


def _find_boundary(buffer: str, final: bool) -> int | None:
    """Index just past the first sentence end in `buffer`, or None while undecided."""
    for i, char in enumerate(buffer):
        if char == "\n":
            if buffer[:i].strip():
                return i + 1
            continue
        if char not in ASCII_TERMINALS and char not in FULLWIDTH_TERMINALS and char != "…":
            continue
        end = i + 1
        while end < len(buffer) and (buffer[end] in CLOSERS or buffer[end] in ASCII_TERMINALS
                                     or buffer[end] in FULLWIDTH_TERMINALS or buffer[end] == "…"):
            end += 1
        if end == len(buffer):
            return end if final and buffer[:i].strip() else None  # need one more char to decide
        if _ends_here(buffer, i, end):
            return end
    return None


def _first_cjk_clause(buffer: str, min_chars: int | None) -> int | None:
    """Index just past the first CJK clause mark with at least `min_chars` non-space characters before it."""
    if min_chars is None:
        return None
    for i, char in enumerate(buffer):
        if char in FULLWIDTH_TERMINALS or char == "\n":
            return None  # the sentence ends first
        cjk_mark = char in CJK_CLAUSE_MARKS or (char in ",;:" and i > 0 and bool(_CJK.match(buffer[i - 1])))
        if cjk_mark and len("".join(buffer[:i].split())) >= min_chars:
            return i + 1  # not waiting for a closing quote: the mark is usually the newest character
    return None


def _first_spaced_clause(buffer: str, min_words: int | None) -> int | None:
    """Index just past the first ASCII , ; or : followed by a space (not "1,000") after a word, with at least
    `min_words` words before it; None while a sentence end or CJK text comes first, or nothing is decided yet."""
    if min_words is None:
        return None
    for i, char in enumerate(buffer):
        if char in ASCII_TERMINALS or char in FULLWIDTH_TERMINALS or char == "\n" or _CJK.match(char):
            return None  # the sentence ends first, or CJK text (its own rule)
        if char in ",;:" and i + 1 < len(buffer) and buffer[i + 1].isspace() and i > 0 and buffer[i - 1].isalnum() \
                and len(buffer[:i].split()) >= min_words:
            return i + 1
    return None


def _ends_here(buffer: str, index: int, end: int) -> bool:
    char, following = buffer[index], buffer[end]
    if char in FULLWIDTH_TERMINALS:
        return True
    previous = buffer[index - 1] if index > 0 else ""
    if _CJK.match(previous) and char in CJK_TERMINALS:
        return True
    if not following.isspace():
        return bool(_CJK.match(following)) and char != "."
    if char != ".":
        return True
    return not _is_abbreviation(buffer[:index])


def _is_abbreviation(before: str) -> bool:
    match = _WORD_BEFORE.search(before)
    if match is None:
        return False
    word = match.group(1)
    if word.isdigit():  # "1." opening a list item, not "in 1990."
        line_start = before[: match.start()].rsplit("\n", 1)[-1]
        return not line_start.strip()
    bare = word.replace(".", "").lower()
    if len(bare) == 1 and word[-1].isupper():  # an initial: "J. K. Rowling"
        return True
    return bare in ABBREVIATIONS or (word.count(".") >= 1 and len(bare) <= 3 and "." in word)


def _soft_cut(buffer: str, max_chars: int) -> int:
    """Cut a too-long sentence after its last comma (else space) within `max_chars`."""
    window = buffer[:max_chars]
    for i in range(len(window) - 1, 0, -1):
        if window[i] in SOFT_BREAKS:
            return i + 1
    space = buffer[: max_chars + 1].rfind(" ")  # a space right after the limit ends a word within it
    return space + 1 if space > 0 else max_chars


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def continuation(before: str, piece: str) -> str:
    """`piece` as it continues `before` in a transcript: after a space where both sides are in a spaced script
    (sentences come out stripped; Chinese and Japanese join without one)."""
    piece = piece.strip()
    if before and piece and not _is_wide(before[-1]) and not _is_wide(piece[0]):
        return " " + piece
    return piece


def join_sentences(parts: Iterable[str]) -> str:
    text = ""
    for part in parts:
        text += continuation(text, part)
    return text


def _is_wide(char: str) -> bool:
    return 0x2E80 <= ord(char) <= 0x9FFF or 0xFF00 <= ord(char) <= 0xFFEF
