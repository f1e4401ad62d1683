"""Sentences and chunks of a rendition, with exact lineage.

Every span here is a ``[start, end)`` pair of character offsets into the rendition text, and a
chunk also carries the matching UTF-8 byte offsets, so that for every chunk ``c``::

    text[c.char_start:c.char_end].encode() == text.encode()[c.byte_start:c.byte_end]

Sentence boundaries come from pysbd (rule-based, no model to download), with two changes:

- Line breaks inside a paragraph are read as spaces (pysbd ends a sentence at every line
  break, which cuts hard-wrapped text and PDF lines into fragments), except around headings,
  list items, quotes, table rows and rules.
- pysbd costs about 4 µs per character. A boundary that needs no judgement is cut without
  it: a word of two letters or more that is no abbreviation pysbd knows, then ``.``, ``!``
  or ``?``, outside brackets and quotes, then an upper-case letter; or a CJK full stop
  outside brackets. A piece with no sentence punctuation left inside (a CJK full stop that
  closes a quote does not count: the sentence goes on after it) is a sentence as it is.
  pysbd reads the rest, at most :data:`_MAX_SEGMENTER_CHARS` at a time (it is quadratic on
  hostile text).

Its offsets are not trusted either: pysbd's own ``char_span`` search goes wrong on repeated
text, and even with ``clean=False`` it sometimes drops or rewrites characters. We locate each
sentence ourselves, from a cursor that only moves forward, and whatever pysbd lost is folded
back in, so the spans always cover every non-whitespace character of the text, in order.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pysbd  # type: ignore[import-untyped]
from pysbd.lang.english import English  # type: ignore[import-untyped]

from servers.rag.extraction import Rendition

__all__ = ["ChunkSpan", "chunk_text", "sentence_spans"]

Span = tuple[int, int]

_PARAGRAPH_BREAK = re.compile(r"(?:\r\n|\r|\n)[^\S\r\n]*(?:\r\n|\r|\n)")
_NON_SPACE = re.compile(r"\S")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# pysbd's time per character grows with its input (1.2 s for 10,000 characters of "a. a. ",
# 0.02 s for 1,000): it reads at most this much at once, cut at a line break or a space.
_MAX_SEGMENTER_CHARS = 1_000
# How far past the cursor a sentence may be found when pysbd dropped characters before it.
_MAX_DROPPED_CHARS = 64
# A line break ends a sentence after a heading, a setext underline or a rule, and before a list
# item, a quote, a heading, a table row or an underline; anywhere else it is a soft wrap.
_BREAKS_AFTER = re.compile(r"[ \t]*(?:#|[-=*_][-=*_ \t]*$)")
_BULLETS = "-*+\u2022\u2023\u25e6\u25aa\u2013"  # ASCII, bullets, triangle, circle, square, en dash
_BREAKS_BEFORE = re.compile(
    rf"[ \t]*(?:[{_BULLETS}][ \t]|\d{{1,9}}[.)][ \t]|[>#|]|[-=*_][-=*_ \t]*$)"
)
_CLOSERS = "\"')]\u201d\u2019"  # and the closing curly quotes
_OPENERS = "\"'([\u201c\u2018"
_TERMINATORS = ".!?\u3002\uff01\uff1f\u2026"  # and the CJK full stops, the ellipsis
# Where a sentence may end: sentence punctuation and closing quotes or brackets, before
# whitespace, an optional opening quote or bracket and a letter; or CJK full stops, unless a
# closing bracket follows. Each run of punctuation is tried once, from its start, and never
# given back: on "....." a backtracking pattern would be quadratic. (So is a leading \w*:
# the word before a period is read separately.)
_CJK_TERMINATORS = "\u3002\uff01\uff1f"
_CJK_CLOSERS = "\u300d\u300f\uff09\u3011\u3015"  # corner brackets, parentheses, lenticular
_ALL_CLOSERS = re.escape(_CLOSERS + _CJK_CLOSERS)
_CANDIDATE = re.compile(
    rf"(?<![.!?])([.!?]++)[{re.escape(_CLOSERS)}]*+(?=\s+[{re.escape(_OPENERS)}]?([^\W\d_]))"
    rf"|(?<![{_CJK_TERMINATORS}])[{_CJK_TERMINATORS}]++(?![{_ALL_CLOSERS}])"
)
# Brackets and quotes a sentence end must not fall inside: (), [], curly quotes, CJK corner
# brackets and full-width parentheses.
_PAIRS = (
    ("(", ")"),
    ("[", "]"),
    ("\u201c", "\u201d"),
    ("\u300c", "\u300d"),
    ("\u300e", "\u300f"),
    ("\uff08", "\uff09"),
)
_BRACKETS = re.compile("[" + re.escape("".join(o + c for o, c in _PAIRS)) + '"]')
_MAX_WORD_CHARS = 40  # a longer "word" before a period is no word we can judge
# Sentence punctuation inside a piece: pysbd must decide whether it ends a sentence.
_UNDECIDED = re.compile(
    rf"[!?\u2026]|[{_CJK_TERMINATORS}](?![{_ALL_CLOSERS}])|\.[{re.escape(_CLOSERS)}]*\s"
)
_ABBREVIATIONS = frozenset(
    abbreviation.lower()
    for abbreviation in English.Abbreviation.ABBREVIATIONS
    + English.Abbreviation.PREPOSITIVE_ABBREVIATIONS
    + English.Abbreviation.NUMBER_ABBREVIATIONS
)
# pysbd 0.3.4 backtracks exponentially on a period before a long bracket of digits
# ("..[111 111 111 111 111 111 111 111 111 111]" never returns; pySBD issue #79), and its
# own rewrites can put the period there. Its pattern needs "[" then a digit: pysbd is shown
# another bracket, of the same length, before every digit.
_REFERENCE_BRACKET = re.compile(r"\[(?=\d)")
_GUARD_BRACKET = "\u2772"  # LIGHT LEFT TORTOISE SHELL BRACKET ORNAMENT
# Where a long sentence may be cut; rfind over these is C-speed, unlike a scan for isspace().
_CUT_CHARS = (" ", "\n", "\t", "\r", "\f", "\v", "\xa0", "\u3000", "\u2028", "\u2029")


def sentence_spans(text: str) -> list[Span]:
    r"""Exact ``[start, end)`` of each sentence of ``text``, in order.

    Spans hold no surrounding whitespace, none is empty, and together they cover every
    non-whitespace character. Paragraphs (separated by blank lines) never share a sentence.

    >>> text = "It rained. It rained.\n\nThen it stopped."
    >>> [text[a:b] for a, b in sentence_spans(text)]
    ['It rained.', 'It rained.', 'Then it stopped.']
    """
    return _SentenceFinder().spans(text, 0, len(text))


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    """Where a chunk lies in its rendition.

    Attributes:
        index: Position of the chunk in the document, from 0.
        char_start: Offset of its first character in the rendition text.
        char_end: Offset just past its last character.
        byte_start: ``char_start`` in the rendition's UTF-8 encoding.
        byte_end: ``char_end`` in the rendition's UTF-8 encoding.
        page: 1-based page of its first character; 0 when the document is not paged.
        section_path: Titles of the headings enclosing it, outermost first.
        sentences: Absolute char spans of its sentences (a sentence longer than a chunk
            appears as its pieces).
    """

    index: int
    char_start: int
    char_end: int
    byte_start: int
    byte_end: int
    page: int
    section_path: tuple[str, ...]
    sentences: tuple[Span, ...]


def chunk_text(
    rendition: Rendition, *, target_chars: int = 1200, overlap_sentences: int = 1
) -> list[ChunkSpan]:
    """Cut a rendition into chunks of whole sentences, each at most ``target_chars`` long.

    Consecutive sentences are packed while the chunk (from its first sentence's start to its
    last one's end) stays within ``target_chars``; a sentence longer than that is cut at
    whitespace, or anywhere when it has none. A chunk never crosses a heading or a page
    boundary, so its section path and page are those of its first character. Consecutive
    chunks of a section share ``overlap_sentences`` sentences, unless sharing them would
    leave no room for a new one.

    Args:
        rendition: The text with its pages and headings.
        target_chars: Longest chunk, in characters (at least 1).
        overlap_sentences: Sentences repeated at the start of the next chunk (0 or more).

    Raises:
        ValueError: For a ``target_chars`` below 1 or a negative ``overlap_sentences``.
    """
    if target_chars < 1:
        raise ValueError(f"target_chars must be at least 1, not {target_chars}")
    if overlap_sentences < 0:
        raise ValueError(f"overlap_sentences cannot be negative, not {overlap_sentences}")
    text = rendition.text
    boundaries = sorted(
        {0, len(text)}
        | {h.char_start for h in rendition.headings if 0 < h.char_start < len(text)}
        | {start for start, _ in rendition.pages if 0 < start < len(text)}
    )
    finder = _SentenceFinder()
    # Starts and ends each only grow, so each gets its own running count: linear overall.
    byte_starts, byte_ends = _Utf8Offsets(text), _Utf8Offsets(text)
    chunks: list[ChunkSpan] = []
    for region_start, region_end in itertools.pairwise(boundaries):
        pieces = [
            piece
            for sentence in finder.spans(text, region_start, region_end)
            for piece in _pieces(text, sentence, target_chars)
        ]
        for first, last in _pack(pieces, target_chars, overlap_sentences):
            start, end = pieces[first][0], pieces[last - 1][1]
            chunks.append(
                ChunkSpan(
                    index=len(chunks),
                    char_start=start,
                    char_end=end,
                    byte_start=byte_starts.at(start),
                    byte_end=byte_ends.at(end),
                    page=rendition.page_of(start),
                    section_path=rendition.section_path(start),
                    sentences=tuple(pieces[first:last]),
                )
            )
    return chunks


class _SentenceFinder:
    """Sentence spans of a text range, paragraph by paragraph, located from a moving cursor."""

    def __init__(self) -> None:
        # A segmenter keeps the text it last read: one per finder, never shared by threads.
        self._segmenter = pysbd.Segmenter(language="en", clean=False)

    def spans(self, text: str, start: int, end: int) -> list[Span]:
        found: list[Span] = []
        for paragraph_start, paragraph_end in _paragraphs(text, start, end):
            self._locate(text, paragraph_start, paragraph_end, found)
        return found

    def _locate(self, text: str, start: int, end: int, found: list[Span]) -> None:
        """Append the spans of the sentences pysbd finds in ``text[start:end]``."""
        piece = _unwrapped(text[start:end])
        cursor = 0
        for sentence in self._sentences(piece):
            core = sentence.strip()
            if not core:
                continue
            next_char = _NON_SPACE.search(piece, cursor)
            if next_char is None:
                break
            first = next_char.start()
            if piece.startswith(core, first):
                last = first + len(core)
            else:
                # pysbd changed the text: it dropped characters before the sentence (fold them
                # into it), or rewrote it (walk as many non-whitespace characters as it has).
                at = piece.find(core, first, first + len(core) + _MAX_DROPPED_CHARS)
                last = at + len(core) if at >= 0 else _after_non_space(piece, first, core)
            if last > first:
                found.append((start + first, start + last))
                cursor = last
        if (rest := _NON_SPACE.search(piece, cursor)) is not None:
            found.append((start + rest.start(), start + len(piece.rstrip())))

    def _sentences(self, piece: str) -> Iterator[str]:
        """The sentences of a paragraph, as pysbd would find them, mostly without asking it."""
        for line in _LINE_BREAK.split(piece):
            cut = counted = 0
            depths = _Depths()
            for candidate in _CANDIDATE.finditer(line):
                end = candidate.end()
                depths.count(line[counted:end])  # each character counted once: linear
                counted = end
                if depths.balanced() and _is_certain_end(line, candidate):
                    yield from self._undecided(line[cut:end])
                    cut = end
                    depths = _Depths()
            yield from self._undecided(line[cut:])

    def _undecided(self, piece: str) -> list[str]:
        core = piece.rstrip().rstrip(_CLOSERS + _CJK_CLOSERS + _TERMINATORS)
        if _UNDECIDED.search(core) is None:
            return [piece]
        sentences: list[str] = []
        for start, end in _slices(piece, 0, len(piece)):
            sentences.extend(self._segment(piece[start:end]))
        return sentences

    def _segment(self, piece: str) -> list[str]:
        guarded = _REFERENCE_BRACKET.sub(_GUARD_BRACKET, piece)
        try:
            sentences: list[str] = self._segmenter.segment(guarded)
        # A segmenter failure on odd input costs sentence boundaries, never the document.
        except Exception:  # noqa: BLE001
            return [piece]
        if guarded != piece:
            return [sentence.replace(_GUARD_BRACKET, "[") for sentence in sentences]
        return sentences


def _unwrapped(paragraph: str) -> str:
    """The paragraph with its soft line breaks turned to spaces: same length, same offsets."""
    lines = _LINE_BREAK.split(paragraph)
    if len(lines) == 1:
        return paragraph
    breaks = _LINE_BREAK.findall(paragraph)
    joined = [lines[0]]
    for before, line_break, after in zip(lines[:-1], breaks, lines[1:], strict=True):
        hard = _BREAKS_AFTER.match(before) or _BREAKS_BEFORE.match(after)
        joined.append(line_break if hard else " " * len(line_break))
        joined.append(after)
    return "".join(joined)


def _is_certain_end(line: str, candidate: re.Match[str]) -> bool:
    """Whether a sentence surely ends at ``candidate`` (its brackets and quotes closed)."""
    punctuation, following = candidate.group(1, 2)
    if punctuation is None:
        return True  # a CJK full stop
    if not following.isupper():
        return False
    if punctuation == ".":
        word = _word_before(line, candidate.start())
        if len(word) < 2 or not word.isalpha() or word.lower() in _ABBREVIATIONS:
            return False  # initials, numbers, "Dr.", "etc.", and no word at all
        # "U.S." is no sentence end, nor is "file.txt."
        return line[candidate.start() - len(word) - 1 : candidate.start() - len(word)] != "."
    return "." not in punctuation  # "?", "!", "?!", but no ellipsis


class _Depths:
    """How deep in brackets and quotes the text counted so far ends."""

    def __init__(self) -> None:
        self._depths = [0] * len(_PAIRS)
        self._straight_quotes = 0

    def count(self, text: str) -> None:
        if _BRACKETS.search(text) is None:
            return
        for index, (opening, closing) in enumerate(_PAIRS):
            self._depths[index] += text.count(opening) - text.count(closing)
        self._straight_quotes += text.count('"')

    def balanced(self) -> bool:
        return not any(self._depths) and self._straight_quotes % 2 == 0


def _word_before(line: str, end: int) -> str:
    """The letters and digits just before ``end``; "" when there are more than a word's worth."""
    start = end
    while start > 0 and end - start <= _MAX_WORD_CHARS and line[start - 1].isalnum():
        start -= 1
    return line[start:end] if end - start <= _MAX_WORD_CHARS else ""


def _after_non_space(text: str, start: int, model: str) -> int:
    """The offset just past as many non-whitespace characters from ``start`` as ``model`` has."""
    remaining = len(model) - sum(char.isspace() for char in model)
    position = start
    while position < len(text) and remaining:
        if not text[position].isspace():
            remaining -= 1
        position += 1
    return position


def _paragraphs(text: str, start: int, end: int) -> Iterator[Span]:
    """Ranges of ``text[start:end]`` between blank lines, trimmed, none empty."""
    position = start
    for match in _PARAGRAPH_BREAK.finditer(text, start, end):
        yield from _trimmed(text, position, match.start())
        position = match.end()
    yield from _trimmed(text, position, end)


def _trimmed(text: str, start: int, end: int) -> Iterator[Span]:
    first = _NON_SPACE.search(text, start, end)
    if first is not None:
        yield first.start(), start + len(text[start:end].rstrip())


def _slices(text: str, start: int, end: int) -> Iterator[Span]:
    """Cut text longer than the segmenter should see, at line breaks, else spaces."""
    while end - start > _MAX_SEGMENTER_CHARS:
        limit = start + _MAX_SEGMENTER_CHARS
        cut = -1
        for line_break in _LINE_BREAK.finditer(text, start + _MAX_SEGMENTER_CHARS // 2, limit):
            cut = line_break.start()
        if cut < 0:
            cut = _last_space(text, start + 1, limit)
        if cut < 0:
            cut = limit
        yield from _trimmed(text, start, cut)
        following = _NON_SPACE.search(text, cut, end)
        if following is None:
            return
        start = following.start()
    yield start, end


def _last_space(text: str, start: int, end: int) -> int:
    """Offset of the last cutting whitespace in ``text[start:end]``, or -1."""
    return max(text.rfind(char, start, end) for char in _CUT_CHARS)


def _pieces(text: str, sentence: Span, target: int) -> Iterator[Span]:
    """A sentence as spans of at most ``target`` characters, cut at whitespace when it can."""
    start, end = sentence
    while end - start > target:
        cut = _last_space(text, start + 1, start + target + 1)
        if cut < 0:
            cut = start + target
        yield start, start + len(text[start:cut].rstrip())
        following = _NON_SPACE.search(text, cut, end)
        if following is None:  # unreachable: spans end on a non-space
            return
        start = following.start()
    yield start, end


def _pack(spans: list[Span], target: int, overlap: int) -> Iterator[Span]:
    """Index ranges ``[first, last)`` of the spans each chunk holds."""
    first = 0
    while first < len(spans):
        last = first + 1
        while last < len(spans) and spans[last][1] - spans[first][0] <= target:
            last += 1
        yield first, last
        if last == len(spans):
            return
        # Repeat up to `overlap` sentences, but leave room for the next new one.
        first = max(last - overlap, first + 1)
        while first < last and spans[last][1] - spans[first][0] > target:
            first += 1


class _Utf8Offsets:
    """UTF-8 byte offsets of ascending char offsets, by a running count."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._ascii = text.isascii()
        self._char = 0
        self._byte = 0

    def at(self, char: int) -> int:
        if self._ascii:
            return char
        if char < self._char:
            self._char = self._byte = 0  # not expected; start again rather than be wrong
        self._byte += len(self._text[self._char : char].encode())
        self._char = char
        return self._byte
