"""Text renditions of uploaded documents: the text chunks index, with its pages and headings.

A rendition is what every later step (sentences, chunks, summaries) reads. For plain text and
Markdown it is the upload itself, decoded as strict UTF-8 and normalised in no way, so that
``rendition.text.encode() == data`` and a chunk's byte offsets point into the original file.
HTML and PDF have no such identity: their rendition is derived text (blocks separated by blank
lines, pages joined by blank lines), and byte offsets point into its UTF-8 encoding.

Everything here is pure and synchronous (run it off the event loop). Hostile input is bounded:
pages and rendition size are capped, no pattern backtracks more than linearly, HTML that never
closes its markup is defused before html.parser (quadratic on it) reads it, and every failure
of a parser becomes :class:`UnreadableDocument`, never an unexpected exception.
"""

from __future__ import annotations

import bisect
import codecs
import io
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePosixPath

from pypdf import PasswordType, PdfReader
from pypdf.generic import Destination

__all__ = [
    "MAX_HEADING_CHARS",
    "MAX_PDF_PAGES",
    "MAX_TEXT_CHARS",
    "MEDIA_TYPES",
    "DocumentTooLarge",
    "Heading",
    "Rendition",
    "UnreadableDocument",
    "UnsupportedMediaType",
    "extract",
    "media_type_of",
]

MEDIA_TYPES = ("text/plain", "text/markdown", "text/html", "application/pdf")

MAX_TEXT_CHARS = 64 * 1024 * 1024
"""Longest rendition we build (characters): a 50 MB text upload fits, a decompression bomb not."""

MAX_PDF_PAGES = 5_000
"""Most pages a PDF may have; each page costs a content-stream parse."""

MAX_HEADING_CHARS = 256
"""Heading titles are cut to this length: they travel in section paths, bounded like strings."""

_MAX_OUTLINE_HEADINGS = 10_000


class UnsupportedMediaType(ValueError):
    """The upload's media type is not one we read (see :data:`MEDIA_TYPES`)."""


class UnreadableDocument(ValueError):
    """The bytes are not what their media type claims: bad UTF-8, a broken or locked PDF, ..."""


class DocumentTooLarge(UnreadableDocument):
    """The document is readable but beyond our bounds (pages or rendition size)."""


@dataclass(frozen=True)
class Heading:
    """A heading of the rendition: where it starts, how deep it is, what it says.

    Attributes:
        char_start: Offset in the rendition text of the heading's first character (for
            Markdown the start of its line, for PDF bookmarks the start of their page).
        level: 1 for a top-level heading, 2 below it, and so on.
        title: The heading's text, whitespace-trimmed and at most :data:`MAX_HEADING_CHARS`.
    """

    char_start: int
    level: int
    title: str


@dataclass(frozen=True)
class Rendition:
    r"""The text of a document, with the pages and headings that give chunks their lineage.

    Attributes:
        text: What chunks index.
        pages: Char ``[start, end)`` of each page (page *n* is index *n - 1*); ``()`` when the
            document has no pages.
        headings: Sorted by ``char_start``.

    >>> r = Rendition("# A\nx\n## B\ny", (), (Heading(0, 1, "A"), Heading(6, 2, "B")))
    >>> r.section_path(4), r.section_path(12), r.page_of(0)
    (('A',), ('A', 'B'), 0)
    """

    text: str
    pages: tuple[tuple[int, int], ...] = ()
    headings: tuple[Heading, ...] = ()
    _heading_starts: list[int] = field(init=False, repr=False, compare=False)
    _heading_paths: list[tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _page_starts: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        starts = [h.char_start for h in self.headings]
        if any(a > b for a, b in itertools.pairwise(starts)):
            raise ValueError("headings must be sorted by char_start")
        # Each heading's path is computed once, so section_path is one bisection.
        paths: list[tuple[str, ...]] = []
        stack: list[Heading] = []
        for heading in self.headings:
            while stack and stack[-1].level >= heading.level:
                stack.pop()
            stack.append(heading)
            paths.append(tuple(h.title for h in stack))
        object.__setattr__(self, "_heading_starts", starts)
        object.__setattr__(self, "_heading_paths", paths)
        object.__setattr__(self, "_page_starts", [start for start, _ in self.pages])

    def section_path(self, char: int) -> tuple[str, ...]:
        """Titles of the headings enclosing ``char``, outermost first; ``()`` before any."""
        index = bisect.bisect_right(self._heading_starts, char) - 1
        return self._heading_paths[index] if index >= 0 else ()

    def page_of(self, char: int) -> int:
        """1-based page of ``char`` (a separator counts with the page before it); 0 if unpaged."""
        if not self._page_starts:
            return 0
        return max(bisect.bisect_right(self._page_starts, char), 1)


def media_type_of(filename: str, declared: str) -> str:
    """The media type to read an upload as: the declared one, else inferred from the name.

    Parameters are dropped and the type is lower-cased. The name decides only when the client
    declared nothing useful (empty or ``application/octet-stream``); a declared type is never
    second-guessed. The result may be a type :func:`extract` refuses.

    >>> media_type_of("notes.md", "text/markdown; charset=utf-8")
    'text/markdown'
    >>> media_type_of("Report.PDF", "application/octet-stream")
    'application/pdf'
    """
    media_type = _essence(declared)
    if media_type in ("", "application/octet-stream"):
        suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
        return _BY_SUFFIX.get(suffix, media_type)
    return _ALIASES.get(media_type, media_type)


def extract(data: bytes, media_type: str) -> Rendition:
    """Build the rendition of an upload.

    Args:
        data: The whole upload.
        media_type: One of :data:`MEDIA_TYPES`, parameters allowed (an HTML ``charset``
            parameter is honoured as the transport-layer encoding).

    Raises:
        UnsupportedMediaType: For any other media type.
        UnreadableDocument: When the bytes are not a readable document of that type.
        DocumentTooLarge: When it is readable but beyond :data:`MAX_PDF_PAGES` or
            :data:`MAX_TEXT_CHARS`.
    """
    essence = _essence(media_type)
    if essence == "text/plain":
        return Rendition(_decode_utf8(data))
    if essence == "text/markdown":
        text = _decode_utf8(data)
        return Rendition(text, (), _markdown_headings(text))
    if essence == "text/html":
        return _html_rendition(data, _charset_parameter(media_type))
    if essence == "application/pdf":
        return _pdf_rendition(data)
    raise UnsupportedMediaType(f"media type {essence or '(none)'!r} is not one of {MEDIA_TYPES}")


_BY_SUFFIX = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}
_ALIASES = {
    "text/x-markdown": "text/markdown",
    "application/xhtml+xml": "text/html",
    "application/x-pdf": "application/pdf",
}


def _essence(media_type: str) -> str:
    return media_type.split(";", 1)[0].strip().lower()


def _charset_parameter(media_type: str) -> str | None:
    for parameter in media_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def _check_size(length: int) -> None:
    if length > MAX_TEXT_CHARS:
        raise DocumentTooLarge(f"the text is longer than {MAX_TEXT_CHARS} characters")


# --- Plain text and Markdown -----------------------------------------------------------------


def _decode_utf8(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnreadableDocument(f"not UTF-8 text: invalid byte at offset {error.start}") from None
    if "\x00" in text:
        # A NUL is binary data wearing a text type, and PostgreSQL cannot store it in text.
        raise UnreadableDocument(f"not text: NUL character at offset {text.index(chr(0))}")
    _check_size(len(text))
    return text


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)?")
# Greedy to the end of the line: a lazy title before optional spaces backtracks quadratically.
_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*))?")
_SETEXT_UNDERLINE = re.compile(r" {0,3}(=+|-+)[ \t]*")
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}(?=[^`]*$)|~{3,})")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_THEMATIC_BREAK = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*")
# Lines that open a container (list item, block quote) or an HTML block: what follows them
# without a blank line belongs to the container, so a "---" there is never a setext underline.
_CONTAINER = re.compile(r" {0,3}(?:[-+*][ \t]|[-+*]$|\d{1,9}[.)](?:[ \t]|$)|>|<)")
_INDENTED = re.compile(r"(?: {4}| {0,3}\t)")
_NEWLINE = r"(?:\r\n|\r|\n)"
# YAML front matter: "---" on the first line, closed by "---" or "..." on a line of its own.
_FRONT_MATTER = re.compile(
    rf"---[ \t]*{_NEWLINE}(?:.*?{_NEWLINE})??(?:---|\.\.\.)[ \t]*(?:{_NEWLINE}|\Z)", re.S
)


def _markdown_headings(text: str) -> tuple[Heading, ...]:
    """ATX and setext headings outside code, found by one pass over the lines.

    Not a CommonMark parser: headings nested in list items or block quotes are not sections,
    and inline markup in titles is kept as written. What it does get right is what moves
    section boundaries: fenced and indented code, setext underlines versus thematic breaks,
    and YAML front matter.
    """
    scanner = _MarkdownScanner()
    front_matter = _FRONT_MATTER.match(text)
    for match in _LINE.finditer(text, front_matter.end() if front_matter else 0):
        if not match.group():
            break
        scanner.line(match.start(), match.group().rstrip("\r\n"))
    return tuple(scanner.headings)


class _MarkdownScanner:
    """What the lines read so far leave open: a code fence, a paragraph, a list or quote."""

    def __init__(self) -> None:
        self.headings: list[Heading] = []
        self._fence: str | None = None
        self._paragraph_start: int | None = None
        self._paragraph_lines: list[str] = []
        self._in_container = False

    def line(self, start: int, line: str) -> None:
        if self._fence is not None:
            closing = _FENCE_CLOSE.fullmatch(line)
            mark = closing.group(1) if closing else ""
            if mark[:1] == self._fence[0] and len(mark) >= len(self._fence):
                self._fence = None
        elif not line.strip():
            self._end_blocks()
        elif opening := _FENCE_OPEN.match(line):
            self._fence = opening.group(1)
            self._end_blocks()
        elif self._paragraph_start is None and not self._in_container and _INDENTED.match(line):
            pass  # indented code
        elif atx := _ATX.fullmatch(line):
            _add_heading(self.headings, start, len(atx.group(1)), _atx_title(atx.group(2) or ""))
            self._end_blocks()
        elif underline := _SETEXT_UNDERLINE.fullmatch(line):
            self._underline(start, line, underline.group(1)[0])
        elif _THEMATIC_BREAK.fullmatch(line):
            self._end_blocks()
        elif _CONTAINER.match(line):
            self._paragraph_start, self._in_container = None, True
        elif not self._in_container:
            self._paragraph_line(start, line)

    def _underline(self, start: int, line: str, mark: str) -> None:
        if self._paragraph_start is not None:
            level = 1 if mark == "=" else 2
            title = " ".join(self._paragraph_lines)
            _add_heading(self.headings, self._paragraph_start, level, title)
            self._paragraph_start = None
        elif mark == "-":
            self._end_blocks()  # a thematic break
        elif not self._in_container:
            self._paragraph_line(start, line)  # "===" alone is text

    def _paragraph_line(self, start: int, line: str) -> None:
        if self._paragraph_start is None:
            self._paragraph_start, self._paragraph_lines = start, []
        self._paragraph_lines.append(line.strip())

    def _end_blocks(self) -> None:
        self._paragraph_start, self._in_container = None, False


def _atx_title(text: str) -> str:
    """An ATX heading's text without its optional closing run of ``#``."""
    text = text.rstrip(" \t")
    unclosed = text.rstrip("#")
    if not unclosed or unclosed[-1] in " \t":
        text = unclosed
    return text


def _add_heading(headings: list[Heading], start: int, level: int, title: str) -> None:
    title = " ".join(title.split())[:MAX_HEADING_CHARS]
    if title:  # an empty heading names no section
        headings.append(Heading(start, level, title))


# --- HTML ------------------------------------------------------------------------------------

# Labels browsers accept, by the name Python's codecs registry gives them. Anything else (a
# "base64" or "punycode" label in a hostile page) is ignored like an unknown label.
_HTML_ENCODINGS = frozenset(
    {"utf-8", "utf-16-le", "utf-16-be", "cp1252", "cp866", "cp874", "koi8-r", "koi8-u"}
    | {f"cp{n}" for n in range(1250, 1259)}
    | {f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 10, 13, 14, 15, 16)}
    | {"mac-roman", "mac-cyrillic", "shift_jis", "euc_jp", "iso2022_jp", "gbk", "gb2312"}
    | {"gb18030", "big5", "big5hkscs", "euc_kr"}
)
# WHATWG Encoding: these labels mean windows-1252; a <meta> saying UTF-16 means UTF-8.
_HTML_ENCODING_ALIASES = {"iso8859-1": "cp1252", "ascii": "cp1252", "latin-1": "cp1252"}
_META_CHARSET = re.compile(rb"<meta[^>]*?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:\-]+)", re.I)
_BOMS = {codecs.BOM_UTF8: "utf-8", codecs.BOM_UTF16_LE: "utf-16-le"}
_BOMS[codecs.BOM_UTF16_BE] = "utf-16-be"


def _html_encoding(label: str | None, *, from_meta: bool) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    name = _HTML_ENCODING_ALIASES.get(name, name)
    if name.startswith("utf-16"):
        name = "utf-8" if from_meta else ("utf-16-le" if name == "utf-16" else name)
    return name if name in _HTML_ENCODINGS else None


def _decode_html(data: bytes, transport_charset: str | None) -> str:
    """Decode as a browser would pick the encoding: BOM, then transport, then <meta>, then UTF-8."""
    bom = next((bom for bom in _BOMS if data.startswith(bom)), None)
    if bom is not None:
        encoding, data = _BOMS[bom], data[len(bom) :]
    else:
        meta = _META_CHARSET.search(data[:1024])
        encoding = (
            _html_encoding(transport_charset, from_meta=False)
            or _html_encoding(meta.group(1).decode("ascii") if meta else None, from_meta=True)
            or "utf-8"
        )
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise UnreadableDocument(f"not {encoding} HTML: invalid byte at {error.start}") from None


_SKIPPED = frozenset({"script", "style", "template", "noscript", "svg", "title"})
_HEAD_CONTENT = frozenset({"title", "meta", "link", "base", "style", "script", "noscript"})
_HEAD_CONTENT |= {"template"}
_BLOCKS = frozenset(
    {"address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog"}
    | {"div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header"}
    | {"hgroup", "hr", "html", "legend", "li", "main", "menu", "nav", "ol", "p", "pre"}
    | {"section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul"}
    | {"h1", "h2", "h3", "h4", "h5", "h6"}
)
_CELLS = frozenset({"td", "th"})
_HEADING_LEVELS = {f"h{n}": n for n in range(1, 7)}
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")


class _HtmlTextParser(HTMLParser):
    """Collects an HTML page's visible text as blocks, and its h1-h6 as headings."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.headings: list[Heading] = []
        self._length = 0  # of "\n\n".join(self.blocks)
        self._lines: list[list[str]] = [[]]  # the current block; <br> starts a new line
        self._skipping = 0
        self._in_head = False
        self._pre = 0
        self._heading: tuple[str, int] | None = None  # tag and level of the open heading

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._in_head and tag not in _HEAD_CONTENT:
            self._in_head = False  # </head> is optional; any body content ends the head
        if tag in _SKIPPED:
            self._skipping += 1
        elif tag == "head":
            self._in_head = True
        elif tag == "br":
            self._lines.append([])
        elif tag in _CELLS:
            self._lines[-1].append(" ")
        elif tag in _HEADING_LEVELS and self._heading is None:
            self._flush()
            self._heading = (tag, _HEADING_LEVELS[tag])
        elif tag in _BLOCKS and self._heading is None:
            self._flush()
            if tag == "pre":
                self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skipping = max(self._skipping - 1, 0)
        elif tag == "head":
            self._in_head = False
        elif self._heading is not None:
            if tag in _HEADING_LEVELS:  # browsers let any </hN> close an open heading
                level = self._heading[1]
                self._heading = None
                if block := self._flush():
                    start, title = block
                    _add_heading(self.headings, start, level, title)
        elif tag in _BLOCKS:
            self._flush()
            if tag == "pre":
                self._pre = max(self._pre - 1, 0)

    def handle_data(self, data: str) -> None:
        if not self._skipping and not self._in_head:
            self._lines[-1].append(data)

    def close(self) -> None:
        super().close()
        self._heading = None
        self._flush()

    def _flush(self) -> tuple[int, str] | None:
        """End the current block; return its start and text when it had any."""
        lines, self._lines = self._lines, [[]]
        if self._pre:
            # Preformatted text keeps its spaces; the newline right after <pre> is not content.
            text = "\n".join("".join(line) for line in lines).removeprefix("\n").rstrip()
        else:
            text = "\n".join(
                _HTML_SPACE.sub(" ", "".join(line)).strip(" \t\n\r\f") for line in lines
            ).strip("\n")
        if not text.strip():
            return None
        start = self._length + (2 if self.blocks else 0)
        self.blocks.append(text)
        self._length = start + len(text)
        _check_size(self._length)
        return start, text


def _html_rendition(data: bytes, transport_charset: str | None) -> Rendition:
    # The HTML parsing algorithm normalises newlines first; so do we, and <pre> keeps "\n".
    source = _decode_html(data, transport_charset).replace("\r\n", "\n").replace("\r", "\n")
    parser = _HtmlTextParser()
    try:
        parser.feed(_without_unclosed_markup(source.replace("\x00", "\ufffd")))
        parser.close()
    except UnreadableDocument:
        raise
    # html.parser accepts anything, but its declaration scanner still has assertions that some
    # malformed markup reaches; those mean the page is unreadable, not that we failed.
    except Exception as error:  # noqa: BLE001
        raise UnreadableDocument(f"not readable HTML: {type(error).__name__}") from None
    return Rendition("\n\n".join(parser.blocks), (), tuple(parser.headings))


def _without_unclosed_markup(source: str) -> str:
    """The page with every ``<`` that no ``>`` follows made text, and an unclosed comment cut.

    Python's html.parser (3.11 to 3.13.4 at least) is quadratic when markup never closes: it
    rescans to the end from each ``<`` (8,000 times ``<a `` take 5 s). Browsers read such a
    ``<`` as text and an unclosed ``<!--`` as a comment running to the end, so this changes
    no text they would show, and the parser only ever sees markup that ends. Linear: each
    ``>`` is searched for once.
    """
    kept: list[str] = []
    position = 0
    closing = -1  # the next ">" at or after the current "<", once looked for
    while (opening := source.find("<", position)) >= 0:
        if source.startswith("<!--", opening):
            end = source.find("-->", opening + 4)
            if end < 0:
                kept.append(source[position:opening])
                return "".join(kept)
            kept.append(source[position : end + 3])
            position = end + 3
            continue
        if closing < opening:
            closing = source.find(">", opening + 1)
        if closing < 0:
            kept.append(source[position:opening])
            kept.append(source[opening:].replace("<", "&lt;"))
            return "".join(kept)
        kept.append(source[position : opening + 1])
        position = opening + 1
    kept.append(source[position:])
    return "".join(kept)


# --- PDF -------------------------------------------------------------------------------------

_SURROGATES = re.compile("[\ud800-\udfff]")


def _clean_pdf_text(text: str) -> str:
    # Broken ToUnicode maps yield lone surrogates (which cannot be encoded) and NULs.
    return _SURROGATES.sub("\ufffd", text.replace("\x00", ""))


def _pdf_rendition(data: bytes) -> Rendition:
    # pypdf raises many kinds of errors (its own, ValueError, KeyError, RecursionError, zlib's)
    # on malformed files; each one means the same thing to the uploader.
    try:
        reader = PdfReader(io.BytesIO(data))
        locked = reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED
        page_count = 0 if locked else len(reader.pages)
    except Exception as error:  # noqa: BLE001
        raise UnreadableDocument(f"not a readable PDF: {type(error).__name__}") from None
    if locked:
        raise UnreadableDocument("the PDF is encrypted and needs a password")
    if page_count == 0:
        raise UnreadableDocument("the PDF has no pages")
    if page_count > MAX_PDF_PAGES:
        raise DocumentTooLarge(f"the PDF has {page_count} pages, more than {MAX_PDF_PAGES}")
    texts: list[str] = []
    pages: list[tuple[int, int]] = []
    length = 0
    try:
        for page in reader.pages:
            text = _clean_pdf_text(page.extract_text())
            start = length + (2 if texts else 0)
            texts.append(text)
            pages.append((start, start + len(text)))
            length = start + len(text)
            _check_size(length)
    except DocumentTooLarge:
        raise
    except Exception as error:  # noqa: BLE001
        raise UnreadableDocument(f"not a readable PDF: {type(error).__name__}") from None
    return Rendition("\n\n".join(texts), tuple(pages), _pdf_outline_headings(reader, pages))


def _pdf_outline_headings(reader: PdfReader, pages: list[tuple[int, int]]) -> tuple[Heading, ...]:
    """Bookmarks as headings at the start of the page they point to.

    The outline is a convenience: a broken one costs the headings, never the document.
    """
    found: list[Heading] = []
    try:
        # Depth first, in outline order: (items, next index, their level).
        stack: list[tuple[Sequence[object], int, int]] = [(reader.outline, 0, 1)]
        while stack and len(found) < _MAX_OUTLINE_HEADINGS:
            items, index, level = stack.pop()
            while index < len(items):
                item = items[index]
                index += 1
                if isinstance(item, list):
                    # A list holds the children of the item before it; come back after them.
                    stack.append((items, index, level))
                    stack.append((item, 0, level + 1))
                    break
                if isinstance(item, Destination):
                    page = reader.get_destination_page_number(item)
                    if page is not None and 0 <= page < len(pages):
                        _add_heading(found, pages[page][0], level, str(item.title or ""))
    except Exception:  # noqa: BLE001 - see the docstring
        return ()
    # Stable: bookmarks of one page keep their outline order.
    return tuple(sorted(found, key=lambda heading: heading.char_start))
