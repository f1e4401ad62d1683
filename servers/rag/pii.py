"""Personal data in text: validated recognizers, run at ingest, and redaction for outputs.

`find_pii` returns every span of personal data in a text as a `Finding` (kind,
start, end). Each recognizer validates what it matches, so a number that only
looks like personal data is left alone. Every output is then checked by an
independent screen (`screening.second_scan`) and refused if it flags anything,
so whatever shape the screen flags, a recognizer here finds too (same kind);
tests/unit/test_rag_pii.py holds that agreement.

- email: a local part (any dots, any letters), "@", and domain labels up to the
  last one starting with two ASCII letters ("jane@mail.example.c0m" gives
  "jane@mail.example"); not the "@" ending URL credentials. Also written out:
  "jane(at)example.com", "jane [at] example [dot] com", and "jane at example
  dot com" (a bare "at" needs a spelled-out dot).
- phone: phonenumbers' matcher at leniency VALID: "+" numbers of any country,
  national numbers of `region`. Only digit runs holding 7 digits or more reach
  it, and long runs (tables of figures) only in pieces (`_phone_segments`).
  Whatever it says, "+" and 8 to 15 digits and "(415) 555-2671" count; a local
  "555-0199" or "555 0199" counts within 24 characters after "call", "phone",
  "tel", "ph.", "mobile", "cell", "fax", "text", or right after "at".
- payment_card: 13 to 19 digits, in groups separated by spaces or dashes (a
  card is a window of groups of 3+ digits) or all by dots or all by slashes (the
  whole run), Luhn-valid, with a length its leading digit's networks use (Visa's
  for 4). Not the groups continuing an IBAN-shaped code that holds no IBAN.
- iban: two letters in either case, two check digits, the rest in optional
  groups; the ISO 7064 mod 97-10 check holds (python-stdnum) over the upper-cased
  compact form, with 8 digits or more after the check digits and not an "RF"
  creditor reference. Words after it are trimmed off; a shorter piece of a longer
  run of groups must also have its country's format.
- national_id: formats that carry their own structure need nothing else: a US
  SSN as 123-45-6789 the SSA could issue (area not 000, 666 or 9xx, group not 00,
  serial not 0000; advertised numbers such as 078-05-1120 count), a Spanish DNI
  or NIE, the layout of an Italian codice fiscale, a Brazilian CPF as
  123.456.789-09 (each validated by python-stdnum but the codice fiscale). After
  a word naming a scheme ("SSN", "social security", "Aadhaar", "SIN", "NHS",
  "BSN", "PESEL", "Steuer-ID", "NIR", "personnummer", "CPF", ...), any number of 9
  digits or more starting within `CONTEXT_CHARS` counts, valid or not.
- ip_address: full dotted quads with every octet at most 255 (leading zeros
  allowed; three-part "1.2.3" versions never match, nor do quads inside longer
  dotted runs), and IPv6 as `ipaddress` parses it, also when a colon glues a word
  or number to it. Unspecified (0.0.0.0), loopback and private addresses count
  too: they still identify hosts inside an organisation, and the screen flags
  any quad, so skipping them here would only get outputs refused. A four-part
  version ("v1.2.3.4") is a quad too.
- secret: detect-secrets' regex plugins (AWS, GitHub, GitLab, Slack, basic-auth
  URLs, PEM private keys, ...) run through `analyze_string`, which needs no
  settings and never verifies over the network, on windows around tokens of 16+
  characters; PEM headers, GitHub, Slack and Stripe tokens of any length, whole
  JWTs (signature included) and URL passwords matched here; and, after a word
  naming a credential at the end of an identifier ("password", "db_passwd",
  "secret_token", "apiKey", "Bearer", ...), its value: six characters or more
  after "=" or ":" (after a space it must mix letters and digits), or a
  high-entropy value after any such word, "key" included. A PEM key's span is the
  whole block.
- person: names of the offline gazetteer (`gazetteer.names()`, read once, on
  first use), by this rule, in order of the evidence it needs:

  1. An honorific (Mr, Mrs, Ms, Mx, Miss, Dr, Prof, Sir, Dame) followed by one
     to three capitalized words or initials: those words ("Dr. Okafor"), up to
     a function or place word.
  2. A label ("Name:", "Patient:", "Employee:", "Signed by", ...) followed by
     capitalized words.
  3. In a run of capitalized words, a known first name followed by a
     capitalized word that is not a function or place word (known as a last
     name or not), optionally with up to two initials between ("Ada
     Lovelace", "John F. Kennedy"); up to two more words join if they are
     known last names ("Gabriel García Márquez"). A first name that is also a
     common word ("Grant", "Rose", "May") needs a known last name after it,
     and so does a run that goes on to a place or organisation word ("Chelsea
     Football Club"). Initials followed by a known last name count too ("J.
     Smith").

  A single first name ("Jack went home") is never enough, nor is a capitalized
  phrase whose first word is no first name ("Quarterly Review").

Numbers that a word before them makes personal data (labelled national ids,
local phone numbers) are looked for once the rest is found, in the text with
those findings masked, as the screen reads an output. Overlapping findings are
merged into one span of the longest one's kind (on a tie, `_PRIORITY`), so no
piece of either is left unmasked.

Speed: ingest scans whole documents, so every recognizer starts with a regular
expression or a `str.find` that rejects ordinary prose in C; phonenumbers and
detect-secrets only see the few candidates left (bench/pii.py measures it
against a bare `re` pass).
"""

from __future__ import annotations

import base64
import bisect
import functools
import ipaddress
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import phonenumbers
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
)
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector
from stdnum import iban, luhn
from stdnum.br import cpf
from stdnum.es import dni, nie
from stdnum.iso7064 import mod_97_10

from servers.rag.gazetteer import FUNCTION_WORDS, PLACE_WORDS, names

KINDS: tuple[str, ...] = (
    "email",
    "phone",
    "payment_card",
    "iban",
    "national_id",
    "ip_address",
    "secret",
    "person",
)
#: What "mask" puts in place of a span, per kind.
PLACEHOLDERS: Mapping[str, str] = {kind: f"[{kind.upper()}]" for kind in KINDS}
#: What "drop" puts in place of a span, whatever its kind.
DROPPED = "[REDACTED]"
#: What `redact` may do with a kind.
ACTIONS = ("keep", "mask", "drop")
#: How far after a word naming a national id scheme a bare number may start.
CONTEXT_CHARS = 40

# Which kind wins when two findings of the same length overlap: the more specific first.
# A dotted quad that phonenumbers also reads as a number is an address.
_PRECEDENCE = ("secret", "payment_card", "iban", "national_id", "email", "ip_address", "phone")
_PRIORITY = {kind: rank for rank, kind in enumerate((*_PRECEDENCE, "person"))}


@dataclass(frozen=True, slots=True)
class Finding:
    """One span of personal data.

    Attributes:
        kind: One of `KINDS`.
        start: Offset of its first character in the scanned text.
        end: Offset past its last character: `text[start:end]` is the data.
    """

    kind: str
    start: int
    end: int


def find_pii(text: str, *, region: str = "US") -> list[Finding]:
    """Every span of personal data in `text`, sorted by start, none overlapping.

    Args:
        text: The text to scan (a whole document is fine: nothing is quadratic).
        region: The country whose national phone numbers count (ISO 3166
            alpha-2); "+" numbers count in any region.

    Returns:
        The findings; where two overlapped, the longer one (on a tie, the more
        specific kind) was kept.

    >>> text = "Mail jane@example.org or call +44 20 7946 0958"
    >>> [(f.kind, text[f.start : f.end]) for f in find_pii(text)]
    [('email', 'jane@example.org'), ('phone', '+44 20 7946 0958')]
    """
    scan = _Scan(text, _lowercase(text), region)
    found = _without_overlaps([finding for find in _RECOGNIZERS for finding in find(scan)])
    # Numbers that only a word before them makes personal data ("SSN: ...", "call ..."),
    # looked for after each such word with what was found so far masked, as the screen
    # reads an output: masking what stands between a word and a number brings the number
    # closer, and a number already found keeps its kind (a phone number right after a
    # label excepted). A word inside a finding ("secret = aadhaar: ...") is read where it
    # is.
    view = _MaskedView(text, found)
    for rule in _CONTEXT_RULES:
        for start, end in rule.words(scan):
            moved = view.span(start, end)
            if moved is None:
                found.extend(rule.findings_after(text, start, end))
            else:
                after = rule.findings_after(view.masked, *moved)
                found.extend(view.original(finding) for finding in after)
    return _without_overlaps(found)


@dataclass(frozen=True, slots=True)
class _Scan:
    """A text being scanned, with what several recognizers need of it, computed once.

    Attributes:
        text: The text.
        lowered: `text` in lowercase, every offset unchanged (`_lowercase`).
        region: The country whose national phone numbers count.
    """

    text: str
    lowered: str
    region: str


@dataclass(frozen=True, slots=True)
class _ContextRule:
    """Personal data that a word before it makes so ("SSN", "call").

    Attributes:
        words: Where such words (or enough of them to find them by) are in the text,
            as (start, end) offsets.
        findings_after: What a text holds after such a word, given where it is.
    """

    words: Callable[[_Scan], Iterable[tuple[int, int]]]
    findings_after: Callable[[str, int, int], Iterator[Finding]]


class _MaskedView:
    """A text with findings replaced, and the way back to the text's offsets.

    Each finding becomes the shorter of what `redact` may put in its place (its
    placeholder or `DROPPED`), so distances in the view are never longer than in an
    output.
    """

    def __init__(self, text: str, findings: Sequence[Finding]) -> None:
        pieces: list[str] = []
        # Where each piece of `text` copied into the view starts in the view, and where it
        # starts and ends in `text`; each replacement by where it starts in the view.
        self._view_starts: list[int] = []
        self._text_starts: list[int] = []
        self._text_ends: list[int] = []
        self._replaced: dict[int, Finding] = {}
        copied = size = 0
        for finding in findings:
            self._view_starts.append(size)
            self._text_starts.append(copied)
            self._text_ends.append(finding.start)
            replacement = min(PLACEHOLDERS[finding.kind], DROPPED, key=len)
            pieces += (text[copied : finding.start], replacement)
            size += finding.start - copied
            self._replaced[size] = finding
            size += len(replacement)
            copied = finding.end
        self._view_starts.append(size)
        self._text_starts.append(copied)
        self._text_ends.append(len(text))
        pieces.append(text[copied:])
        self.masked = "".join(pieces)

    def span(self, start: int, end: int) -> tuple[int, int] | None:
        """Where `text[start:end]` is in the view, unless a replaced finding overlaps it."""
        piece = bisect.bisect_right(self._text_starts, start) - 1
        if end > self._text_ends[piece]:
            return None
        shift = self._view_starts[piece] - self._text_starts[piece]
        return start + shift, end + shift

    def original(self, finding: Finding) -> Finding:
        """`finding`, made in the view, at its offsets in the text.

        It lies outside any replacement, or starts where one does: then it stands for
        the finding that was replaced.
        """
        replaced = self._replaced.get(finding.start)
        if replaced is not None:
            return Finding(finding.kind, replaced.start, replaced.end)
        piece = bisect.bisect_right(self._view_starts, finding.start) - 1
        shift = self._text_starts[piece] - self._view_starts[piece]
        return Finding(finding.kind, finding.start + shift, finding.end + shift)


def redact(
    text: str, findings: Sequence[Finding], actions: Mapping[str, str]
) -> tuple[str, Counter[str]]:
    """`text` with its findings kept, masked or dropped, per kind.

    Args:
        text: The text the findings were found in.
        findings: Non-overlapping spans in `text` (as `find_pii` returns them).
        actions: "keep", "mask" (a typed placeholder such as "[EMAIL]") or
            "drop" ("[REDACTED]") per kind; kinds left out are masked.

    Returns:
        The redacted text and how many spans of each kind were replaced.

    Raises:
        ValueError: An unknown kind or action, a span outside `text`, or two
            overlapping spans (a redaction must never be ambiguous).

    >>> text = "Ask jane@example.org, SSN 123-45-6789."
    >>> redact(text, find_pii(text), {"national_id": "drop"})
    ('Ask [EMAIL], SSN [REDACTED].', Counter({'email': 1, 'national_id': 1}))
    """
    counts: Counter[str] = Counter()
    pieces: list[str] = []
    copied = 0  # text[:copied] is in `pieces`
    reached = 0  # end of the furthest finding so far, kept or not
    for finding in sorted(findings, key=lambda f: (f.start, f.end)):
        if finding.kind not in PLACEHOLDERS:
            raise ValueError(f"unknown PII kind {finding.kind!r}")
        if not 0 <= finding.start <= finding.end <= len(text):
            raise ValueError(f"{finding} lies outside a text of {len(text)} characters")
        if finding.start < reached:
            raise ValueError(f"{finding} overlaps another finding")
        reached = finding.end
        action = actions.get(finding.kind, "mask")
        if action not in ACTIONS:
            raise ValueError(f"unknown PII action {action!r}")
        if action == "keep" or finding.start == finding.end:
            continue
        replacement = PLACEHOLDERS[finding.kind] if action == "mask" else DROPPED
        pieces.append(text[copied : finding.start])
        pieces.append(replacement)
        copied = finding.end
        counts[finding.kind] += 1
    pieces.append(text[copied:])
    return "".join(pieces), counts


def _without_overlaps(found: list[Finding]) -> list[Finding]:
    """`found` sorted by start, each cluster of overlapping findings merged into one.

    The sweep over the sorted findings is O(n log n) for a whole document.
    """
    found.sort(key=lambda f: (f.start, f.end))
    kept: list[Finding] = []
    cluster: list[Finding] = []
    cluster_end = 0
    for finding in found:
        if cluster and finding.start >= cluster_end:
            kept.append(_merge_cluster(cluster))
            cluster = []
        cluster_end = max(cluster_end, finding.end) if cluster else finding.end
        cluster.append(finding)
    if cluster:
        kept.append(_merge_cluster(cluster))
    return kept


def _merge_cluster(cluster: list[Finding]) -> Finding:
    """One finding over a cluster of overlapping ones: their union, of the longest one's kind.

    On a tie in length, `_PRIORITY` picks the kind. The union, not the longest alone: a
    finding cut short by another ("+44 20 7946 0958" and an address glued to its end)
    would leave a piece of itself unmasked, which the screen then finds.
    """
    if len(cluster) == 1:
        return cluster[0]
    longest = min(cluster, key=lambda f: (f.start - f.end, _PRIORITY[f.kind], f.start))
    return Finding(longest.kind, cluster[0].start, max(f.end for f in cluster))


# -- email -------------------------------------------------------------------------------

# Any dots in the local part ("a..b@" and "jane.@" are typos, still someone's address) and
# any letters; the domain runs over every label, and the address ends after the last one
# that starts like a top-level domain (two ASCII letters): "jane@mail.example.c0m" gives
# "jane@mail.example", as the screen reads it.
_EMAIL = re.compile(r"(?<![\w.%+\-])[\w.%+\-]+@(?P<domain>[\w\-]+(?:\.[\w\-]+)+)")
_DOT = re.compile(r"\.")
_LABEL = re.compile(r"[\w\-]+")
_TLD_START = re.compile(r"[A-Za-z]{2}")
# How far before its "at" a local part may start, and after it the domain may end.
_MAX_LOCAL = 256
_MAX_DOMAIN = 256
# Above one "@" per this many characters, scan the whole text instead of windows.
_DENSE_AT = 2_000
# "scheme://user:password@host" or "://user@host": that "@" ends URL credentials, it does
# not make an address. Userinfo stops at a path, a query, a fragment or a space.
_URL_USERINFO = re.compile(r"://[^\s/?#@]*\Z")
# Addresses written out against robots: "jane(at)example.com", "jane [at] example [dot]
# com", "jane at example dot com". A bare "at" needs a spelled-out dot after it: "find us
# at example.com" names a site.
_BRACKETED_AT = r"[ \t]*[(\[{<][ \t]*at[ \t]*[)\]}>][ \t]*"
_SPELLED_DOT = r"[ \t]*[(\[{<][ \t]*dot[ \t]*[)\]}>][ \t]*|[ \t]+dot[ \t]+"
_OBFUSCATED_EMAIL = re.compile(
    rf"(?i)(?<![\w.%+\-])[\w.%+\-]+(?P<at>{_BRACKETED_AT}|[ \t]+at[ \t]+)"
    rf"(?P<domain>[\w\-]+(?:(?:{_SPELLED_DOT}|\.)[\w\-]+)+)"
)
_DOMAIN_DOT = re.compile(rf"(?i){_SPELLED_DOT}|\.")
# Where an obfuscated address may be, in the lowercased text: "at" or "dot" before a
# closing bracket (a literal first, so the scan runs at C speed), or " dot ".
_BRACKETED_WORDS = (re.compile(r"at[ \t]*[)\]}>]"), re.compile(r"dot[ \t]*[)\]}>]"))


def _find_emails(scan: _Scan) -> Iterator[Finding]:
    text = scan.text
    ats = text.count("@")
    if ats:
        if ats * _DENSE_AT > len(text):
            # Many "@": one pass over the whole text beats a window per "@".
            matches: Iterable[re.Match[str]] = _EMAIL.finditer(text)
        else:
            signs = _occurrences(text, "@")
            matches = _matches_around(_EMAIL, text, signs, _MAX_LOCAL, _MAX_DOMAIN)
        for match in matches:
            start = match.start()
            if _URL_USERINFO.search(text, max(0, start - 256), start):
                continue
            end = _address_end(text, match.start("domain"), match.end(), _DOT)
            if end is not None:
                yield Finding("email", start, end)
    yield from _find_obfuscated_emails(text, scan.lowered)


def _find_obfuscated_emails(text: str, lowered: str) -> Iterator[Finding]:
    hints = set(_occurrences(lowered, " dot "))
    if any(bracket in text for bracket in ")]}>"):
        hints.update(m.start() for word in _BRACKETED_WORDS for m in word.finditer(lowered))
    for match in _matches_around(_OBFUSCATED_EMAIL, text, sorted(hints), _MAX_LOCAL, _MAX_DOMAIN):
        domain_start = match.start("domain")
        dots = _DOMAIN_DOT.finditer(text, domain_start, match.end())
        if match["at"].strip().lower() == "at" and all(dot.group() == "." for dot in dots):
            continue
        end = _address_end(text, domain_start, match.end(), _DOMAIN_DOT)
        if end is not None:
            yield Finding("email", match.start(), end)


def _address_end(text: str, start: int, end: int, dots: re.Pattern[str]) -> int | None:
    """Where the address whose domain is `text[start:end]` ends, if it has a top-level domain.

    That is after the last label (not the first) starting with two ASCII letters; labels
    are separated by what `dots` matches.
    """
    address_end = None
    for dot in dots.finditer(text, start, end):
        label = _LABEL.match(text, dot.end(), end)
        if label is not None and _TLD_START.match(label.group()):
            address_end = label.end()
    return address_end


def _occurrences(text: str, needle: str) -> Iterator[int]:
    """Offsets of `needle` in `text`, in order (str.find speed)."""
    position = text.find(needle)
    while position >= 0:
        yield position
        position = text.find(needle, position + 1)


def _matches_around(
    pattern: re.Pattern[str], text: str, anchors: Iterable[int], before: int, after: int
) -> Iterator[re.Match[str]]:
    """The match of `pattern` holding each anchor (sorted offsets), each found in a window.

    Prose has few anchors ("@", "(at)"), so scanning a window around each beats a pass of
    `pattern` over the whole text. A match ending before the anchor is searched again from
    its second character: the one holding the anchor may start inside it ("at j.doe (at)
    example.com").
    """
    done = 0
    for anchor in anchors:
        if anchor < done:
            continue
        position = max(done, anchor - before)
        window_end = min(len(text), anchor + after)
        while (match := pattern.search(text, position, window_end)) is not None:
            if match.start() > anchor:
                break
            if anchor < match.end():
                done = match.end()
                yield match
                break
            position = match.start() + 1


# -- phone -------------------------------------------------------------------------------

# A run of digits with the separators phone numbers use, not glued to a word, an
# identifier ("INV-2024-000123"), a decimal, or the digits of a code before it
# ("DE89 3704 ..."). The look-behinds come after the first character so that the
# scan for that character runs at C speed.
_PHONE_CANDIDATE = re.compile(
    r"[+(\d](?<![\w+\-./][+(\d])(?<!\d[ \-][+(\d])[ \t]?\d?[\d \t()./\-]{5,}\d(?![\w\-])"
)
_MIN_PHONE_DIGITS = 7
_PHONE_LOOKAHEAD = 3
_PHONE_WINDOW = 40
_PHONE_BREAK = re.compile(r"[ \t]*/[ \t]*|\t[ \t]*| {2,}")
_PHONE_START = re.compile(r"[+(]")


def _find_phones(scan: _Scan) -> Iterator[Finding]:
    text, region = scan.text, scan.region
    for candidate in _PHONE_CANDIDATE.finditer(text):
        run = candidate.group()
        if sum(character.isdigit() for character in run) < _MIN_PHONE_DIGITS:
            continue
        for start, end in _phone_segments(run, candidate.start()):
            # A few characters more, so the matcher sees a time after a date ("2024-01-15 10:30").
            window = text[start : end + _PHONE_LOOKAHEAD]
            for match in phonenumbers.PhoneNumberMatcher(
                window, region, leniency=phonenumbers.Leniency.VALID
            ):
                if start + match.end <= end:
                    yield Finding("phone", start + match.start, start + match.end)


def _phone_segments(run: str, offset: int) -> Iterator[tuple[int, int]]:
    """Where in a candidate run (at `offset`) to look for phone numbers, cheaply.

    A run no longer than any written phone number is one segment. A longer run
    is a list or a table of numbers: it is cut at " / ", tabs and wider gaps,
    and a piece still too long is only looked at from each "+" or "(" in it,
    so a page of figures costs a few matcher calls, not hundreds.
    """
    if len(run) <= _PHONE_WINDOW:
        yield offset, offset + len(run)
        return
    piece_start = 0
    for gap in [*_PHONE_BREAK.finditer(run), None]:
        piece_end = gap.start() if gap is not None else len(run)
        if piece_end - piece_start <= _PHONE_WINDOW:
            yield offset + piece_start, offset + piece_end
        else:
            for marker in _PHONE_START.finditer(run, piece_start, piece_end):
                yield (
                    offset + marker.start(),
                    offset + min(piece_end, marker.start() + _PHONE_WINDOW),
                )
        if gap is not None:
            piece_start = gap.end()


# Shapes that are phone numbers whatever phonenumbers says of them, since the screen flags
# them too: "+" and 8 to 15 digits (an unassigned or made-up number is still written as
# someone's), and the North American "(415) 555-2671".
_PLUS_NUMBER = re.compile(r"\+(?:\d[ \t.\-()/]{0,2}){7,14}\d(?!\d)")
_AREA_CODE_NUMBER = re.compile(r"\(\d{3}\)[ \t]?\d{3}[ \t.\-]\d{4}(?!\d)")
# A local number ("555-0199", "555 0199") counts only after a word saying it is one
# (`_PHONE_WORD`) within `_LOCAL_CONTEXT` characters, or right after "at": alone,
# NNN-NNNN is as often a part number or a reference.
_LOCAL_NUMBER = re.compile(r"\d(?<![\w\-.]\d)(?<!\d[ ]\d)\d\d[ \-]\d{4}(?![\w\-]|\.\d)")
_LOCAL_CONTEXT = 24
_PHONE_WORD = re.compile(
    r"(?i:\b(?:call(?:s|ed|ing)?|(?:tele)?phone[sd]?|tel|ph|mobile|mob|cell(?:phone)?|fax"
    r"|text)\b.*|\bat[ \t]+)\Z",
    re.DOTALL,
)
# Where such a word may start, found in the lowercased text ("ph" also finds "phone" and
# "telephone", "mob" "mobile").
_PHONE_WORD_HINTS = ("call", "ph", "tel", "mob", "cell", "fax", "text")
_AFTER_AT = re.compile(r"[ \t]+\d{3}[ \-]\d{4}")


def _find_phone_shapes(scan: _Scan) -> Iterator[Finding]:
    text = scan.text
    if "+" in text:
        for match in _PLUS_NUMBER.finditer(text):
            yield Finding("phone", match.start(), match.end())
    if "(" in text:
        for match in _AREA_CODE_NUMBER.finditer(text):
            yield Finding("phone", match.start(), match.end())


def _phone_words(scan: _Scan) -> list[tuple[int, int]]:
    """Where a word saying a phone number follows may be, "at" right before one too."""
    text, lowered = scan.text, scan.lowered
    words = {(p, p + len(word)) for word in _PHONE_WORD_HINTS for p in _occurrences(lowered, word)}
    for at in (*_occurrences(lowered, "at "), *_occurrences(lowered, "at\t")):
        if _AFTER_AT.match(text, at + 2):
            words.add((at, at + 2))
    return sorted(words)


def _local_numbers_after(text: str, start: int, end: int) -> Iterator[Finding]:
    """Local numbers starting within `_LOCAL_CONTEXT` after `start`, a phone word before them."""
    for match in _LOCAL_NUMBER.finditer(text, start, start + 2 * _LOCAL_CONTEXT):
        if match.start() > start + _LOCAL_CONTEXT:
            break
        if _PHONE_WORD.search(text, max(0, match.start() - _LOCAL_CONTEXT), match.start()):
            yield Finding("phone", match.start(), match.end())


# -- payment cards -----------------------------------------------------------------------

# Groups of digits separated by spaces or dashes (mixed), or all by dots, or all by
# slashes, not glued to a word. With spaces or dashes a card is a window of whole groups (a
# card and its expiry, a row of numbers); with dots or slashes it is the whole run
# ("4111.1111.1111.1111"), never a piece of a decimal, a version or a date. A run may
# follow other digits ("CPF 111.444.777-35 4111 1111 ..."): once the number before it is
# masked, the screen sees the card alone.
_DIGIT_GROUPS = re.compile(
    r"\d(?<![\w\-]\d)\d*"
    r"(?P<separated>(?:[ \-]\d+)+|(?:\.\d+)+|(?:/\d+)+)?"
    r"(?![\w\-]|[./]\d)"
)
_GROUP = re.compile(r"\d+")
_MIN_GROUP_DIGITS = 3
# What comes before a run continuing an IBAN-shaped code ("FR76 3000 6000 ..."): unless
# the code holds an IBAN already, the groups are an account number's, never a card's.
_CODE_BEFORE = re.compile(r"(?<!\S)[A-Za-z]{2}\d\d(?: [A-Za-z0-9]{1,4})*(?<=\d) \Z")
_LONGEST_CODE_BEFORE = 80

# (first prefix, last prefix, lengths). A leading digit counts with every length its
# networks use (2: Mastercard, Mir; 3: American Express, Diners Club, JCB; 5: Mastercard,
# Maestro; 6: Discover, UnionPay, RuPay, Maestro), whoever the issuer: smaller schemes
# print cards across these ranges, and the screen flags them all. Visa keeps its lengths,
# and Maestro also issues shorter cards.
_ISSUERS: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("2", "2", frozenset(range(16, 20))),
    ("3", "3", frozenset(range(14, 20))),
    ("4", "4", frozenset({13, 16, 19})),
    ("5", "5", frozenset(range(16, 20))),
    ("6", "6", frozenset(range(16, 20))),
    ("5018", "5018", frozenset(range(13, 16))),  # Maestro
    ("5020", "5020", frozenset(range(13, 16))),
    ("5038", "5038", frozenset(range(13, 16))),
    ("5893", "5893", frozenset(range(13, 16))),
    ("6304", "6304", frozenset(range(13, 16))),
    ("6759", "6759", frozenset(range(13, 16))),
    ("6761", "6763", frozenset(range(13, 16))),
)


def is_card_number(digits: str) -> bool:
    """Whether `digits` (digits only) is a payment card number: length, issuer, Luhn.

    >>> is_card_number("4111111111111111"), is_card_number("4111111111111112")
    (True, False)
    """
    if not 13 <= len(digits) <= 19 or not digits.isdigit():
        return False
    issued = any(
        low <= digits[: len(low)] <= high and len(digits) in lengths
        for low, high, lengths in _ISSUERS
    )
    return issued and luhn.is_valid(digits)


def _find_cards(scan: _Scan) -> Iterator[Finding]:
    text = scan.text
    for run in _DIGIT_GROUPS.finditer(text):
        if run.end() - run.start() < 13:
            continue
        digits = run.group()
        separated = run["separated"]
        if separated and separated[0] in "./":
            if is_card_number(digits.replace(separated[0], "")):
                yield Finding("payment_card", run.start(), run.end())
            continue
        groups = [(g.start(), g.end()) for g in _GROUP.finditer(digits)]
        base = run.start()
        first = 0
        while first < len(groups):
            found = _card_at(digits, groups, first)
            start = base + groups[first][0]
            if found is None or _continues_account_number(text, start):
                first += 1
                continue
            yield Finding("payment_card", start, base + groups[found][1])
            first = found + 1


def _continues_account_number(text: str, start: int) -> bool:
    """Whether digit groups at `start` continue an IBAN-shaped code holding no IBAN."""
    code = _CODE_BEFORE.search(text, max(0, start - _LONGEST_CODE_BEFORE), start)
    return code is not None and _iban_end(text, code.start(), code.end() - 1) is None


def _card_at(run: str, groups: list[tuple[int, int]], first: int) -> int | None:
    """The last group of the longest card starting at group `first`, if any.

    A group of fewer than `_MIN_GROUP_DIGITS` digits can only end a card.
    """
    best = None
    digits = ""
    for last in range(first, len(groups)):
        start, end = groups[last]
        digits += run[start:end]
        if is_card_number(digits):
            best = last
        if end - start < _MIN_GROUP_DIGITS or len(digits) >= 19:
            break
    return best


# -- IBAN --------------------------------------------------------------------------------

# Two letters in either case, two check digits, then 11 to 30 letters or digits, each after
# an optional space (one character per repetition: linear backtracking). The scan starts at
# the first check digit, digits being rarer than letters, and looks behind it for the rest.
_IBAN_CANDIDATE = re.compile(
    r"\d(?<=[A-Za-z]{2}\d)(?<!\w[A-Za-z]{2}\d)\d(?:[ ]?[A-Za-z0-9]){11,30}(?!\w)"
)
# Every country's account number has more digits than this; "es2015 modules are great" not.
_MIN_ACCOUNT_DIGITS = 8
_SHORTEST_IBAN = 15
_NEXT_IBAN = re.compile(r" (?=[A-Za-z]{2}\d\d)")
# Groups as IBANs are printed: four characters each, the last one to four, none glued to
# what follows ("... 5Q1A 1314:18d7::1" ends before the address).
_PRINTED_IBAN = re.compile(
    r"[A-Za-z]{2}\d\d(?: [A-Za-z0-9]{4}(?![\w:@/\-]|\.\w))*"
    r"(?: [A-Za-z0-9]{1,3}(?![\w:@/\-]|\.\w))?"
)


def _find_ibans(scan: _Scan) -> Iterator[Finding]:
    text = scan.text
    position = 0
    while (candidate := _IBAN_CANDIDATE.search(text, position)) is not None:
        start = candidate.start() - 2
        # Without an IBAN here, one may start inside ("fe91 QA67 B0KE ..."); after a
        # shorter one, what follows it may hold another.
        position = candidate.start() + 1
        end = _iban_end(text, start, candidate.end())
        if end is not None:
            yield Finding("iban", start, end)
            position = end


def _iban_end(text: str, start: int, end: int) -> int | None:
    """Where the IBAN at the start of the candidate `text[start:end]` ends, if one does.

    Its check digits must hold (`_is_iban`) over the whole candidate, the candidate less
    words after it ("... 0130 00 EUR"), its first word if that is long enough
    ("GB82WEST12345698765432 HFCTNY57O10C427I"), its groups as IBANs are printed (four
    characters each, the last one to four), or what comes before a group that could
    start another IBAN. A shorter piece ("DE89 3704 0044 0532 0130 00 1234 5678") needs
    its country's format too, lest one list of digit groups in 97 pass.
    """
    checksum_ends = {end}
    printed = _PRINTED_IBAN.match(text, start, end + 2)  # and what follows the last group
    if printed is not None:
        checksum_ends.add(min(end, printed.end()))
    first_space = text.find(" ", start, end)
    if first_space - start >= _SHORTEST_IBAN:
        checksum_ends.add(first_space)
    # Before a group that could start another IBAN ("GB82 ... D925 AB17 4N8E ...").
    checksum_ends.update(m.start() for m in _NEXT_IBAN.finditer(text, start + 4, end))
    for stop in (end, *(i for i in range(end - 1, start, -1) if text[i] == " ")):
        compact = text[start:stop].replace(" ", "").upper()
        if not _is_iban(compact):
            continue
        words_after = stop in checksum_ends or text[stop + 1 : end].replace(" ", "").isalpha()
        if words_after or iban.is_valid(compact):
            return stop
    return None


def _is_iban(compact: str) -> bool:
    """Whether `compact` (upper case, no spaces) is an IBAN: its mod 97-10 check holds.

    The country's account format is not required: check digits that hold over a format
    that does not (a typo that kept the checksum, a format since changed) still name
    someone's account, and the screen flags them. "RF" creditor references share the
    checksum but name an invoice.

    >>> _is_iban("GB82WEST12345698765432"), _is_iban("GB82WEST12345698765433")
    (True, False)
    """
    return (
        _SHORTEST_IBAN <= len(compact) <= 34
        and not compact.startswith("RF")
        and sum(c.isdigit() for c in compact[4:]) >= _MIN_ACCOUNT_DIGITS
        and mod_97_10.is_valid(compact[4:] + compact[:4])
    )


# -- national identification numbers -----------------------------------------------------

# Formats distinctive enough to stand alone, one named group per scheme, each with the
# boundaries the screen gives it: a US SSN (123-45-6789; letters may touch it), a Spanish
# DNI (12345678Z) or NIE (X1234567L), a Brazilian CPF (123.456.789-09), an Italian codice
# fiscale. The first digit or letter leads, so the scan runs at C speed.
_DIGIT_LED_IDS = re.compile(
    r"\d(?:(?<![\d\-]\d)(?P<ssn>\d\d-\d\d-\d{4}(?![\d\-]))"
    r"|(?<!\w\d)(?P<dni>\d{7}-?[A-Z](?!\w))"
    r"|(?<![\d.]\d)(?P<cpf>\d\d\.\d{3}\.\d{3}-\d\d(?!\d)))"
)
_LETTER_LED_IDS = re.compile(
    r"[A-Z](?<!\w[A-Z])"
    r"(?:(?<=[XYZ])(?P<nie>-?\d{7}-?[A-Z])"
    r"|(?P<codicefiscale>[A-Z]{5}[0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{2}[A-Z]"
    r"[0-9LMNPQRSTUV]{3}[A-Z]))"
    r"(?!\w)"
)


def _plausible_ssn(number: str) -> bool:
    """Whether `number` (9 digits, maybe with dashes or spaces) is an SSN the SSA could issue.

    The area is not 000, 666 or 900-999, the group not 00, the serial not 0000. Unlike
    python-stdnum, numbers once printed in advertising (078-05-1120, ...) count: they are
    still written down as people's numbers, and the screen flags them.

    >>> _plausible_ssn("078-05-1120"), _plausible_ssn("666-12-3456")
    (True, False)
    """
    digits = number.replace("-", "").replace(" ", "")
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# Each format's validator; the codice fiscale's layout is evidence enough (a wrong check
# letter is a typo, and the screen flags the layout).
_SELF_EVIDENT: Mapping[str, Callable[[str], bool] | None] = {
    "ssn": _plausible_ssn,
    "dni": dni.is_valid,
    "cpf": cpf.is_valid,
    "nie": nie.is_valid,
    "codicefiscale": None,
}

# Words naming a national id scheme, as the screen reads them: in any case, across any
# whitespace, most even inside a longer word ("aadhaarcard"); acronyms only as written.
_ID_LABEL = re.compile(
    r"(?i:\bssn\b|\bss#|social\s+(?:security|insurance)|aadhaa?r|uidai"
    r"|burgerservicenummer|sofinummer|pesel|steuer-?id|\bidnr\b|personnummer|\bcpf\b"
    r"|s[eé]curit[eé]\s+sociale)"
    r"|\b(?:SIN|NHS|BSN|NIR|INSEE)\b"
)
# Pieces of those words, found with str.find: the label pattern only runs around them.
# Lowercase ones are looked for in the lowercased text, acronyms as written.
_ID_LABEL_HINTS = (
    "ssn",
    "ss#",
    "social",
    "aadha",
    "uidai",
    "nummer",
    "pesel",
    "steuer",
    "idnr",
    "cpf",
    "curit",
)
_ID_ACRONYMS = ("IN", "NHS", "BSN", "NIR")  # "IN" for "SIN" and "INSEE"
_LONGEST_LABEL = 24
# A number after a label: digit groups (Corsica's "2A" and "2B" as well) with single
# separators between them.
_LABELLED_NUMBER = r"(?<!\w)\d+(?:[ \-.+/](?:\d+|2[AB](?!\w)))*"
_NUMBER_OR_PLACEHOLDER = re.compile(rf"{_LABELLED_NUMBER}|\[[A-Z_]+\]")
_MIN_LABELLED_DIGITS = 9
_SHORTEST_ID_REPLACEMENT = min(len(PLACEHOLDERS["national_id"]), len(DROPPED))
_LONGEST_LABELLED_NUMBER = 64


def _find_national_ids(scan: _Scan) -> Iterator[Finding]:
    text = scan.text
    for pattern in (_DIGIT_LED_IDS, _LETTER_LED_IDS):
        for match in pattern.finditer(text):
            validator = _SELF_EVIDENT[match.lastgroup or ""]
            if validator is None or validator(match.group()):
                yield Finding("national_id", match.start(), match.end())


def _id_labels(scan: _Scan) -> list[tuple[int, int]]:
    """Where each word naming a national id scheme (`_ID_LABEL`) is."""
    text = scan.text
    hints = {p for hint in _ID_LABEL_HINTS for p in _occurrences(scan.lowered, hint)}
    hints.update(p for acronym in _ID_ACRONYMS for p in _occurrences(text, acronym))
    labels = _matches_around(_ID_LABEL, text, sorted(hints), _LONGEST_LABEL, _LONGEST_LABEL)
    return [label.span() for label in labels]


def _numbers_after_label(text: str, start: int, end: int) -> Iterator[Finding]:
    """Every number of 9 digits or more starting within `CONTEXT_CHARS` after a label.

    Its scheme's checksum does not matter: "SSN 912-34-5678" or "Aadhaar 1234 5678 9012"
    is still written as someone's number (a typo, an ITIN), and the screen flags it.
    Read with findings masked (`find_pii`), the first thing after the label may be a phone
    number: "NHS number 943 476 5919" is a national id whatever else it reads as.
    """
    # Each number found is masked in the output, which brings the next one closer.
    reach = end + CONTEXT_CHARS
    window_end = min(len(text), reach + 4 * _LONGEST_LABELLED_NUMBER)
    first = True
    for match in _NUMBER_OR_PLACEHOLDER.finditer(text, end, window_end):
        if match.start() > reach:
            break
        long_number = sum(c.isdigit() for c in match.group()) >= _MIN_LABELLED_DIGITS
        if long_number or (first and match.group() == PLACEHOLDERS["phone"]):
            yield Finding("national_id", match.start(), match.end())
            reach += max(0, len(match.group()) - _SHORTEST_ID_REPLACEMENT)
        first = False


def _lowercase(text: str) -> str:
    """`text` in lowercase with every offset unchanged (a few letters lengthen in `lower`)."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else text.translate(_ASCII_LOWER)


_ASCII_LOWER = {ord(upper): ord(upper.lower()) for upper in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def _whole_words(haystack: str, word: str) -> Iterator[int]:
    """End offsets of `word` in `haystack` where it stands as a whole word (str.find speed).

    A word ending in punctuation ("ss#") may run straight into what follows.
    """
    check_after = word[-1].isalnum()
    position = haystack.find(word)
    while position >= 0:
        end = position + len(word)
        before = haystack[position - 1] if position else " "
        after = haystack[end] if check_after and end < len(haystack) else " "
        if not (before.isalnum() or before == "_" or after.isalnum() or after == "_"):
            yield end
        position = haystack.find(word, position + 1)


# -- IP addresses ------------------------------------------------------------------------

# The literal "." leads, so the scan for candidates runs at C speed; the first
# octet is read backwards from there.
_IPV4_TAIL = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_IPV6_ANCHOR = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6_CHARACTERS = frozenset("0123456789abcdefABCDEF:.")
_IPV6_MAX_CHARS = 45


def _find_ip_addresses(scan: _Scan) -> Iterator[Finding]:
    text = scan.text
    for tail in _IPV4_TAIL.finditer(text):
        start = tail.start()
        # Any decimal digits, as `\d` reads them (the screen's too): Arabic-Indic ones as well.
        while start > tail.start() - 3 and start > 0 and text[start - 1].isdecimal():
            start -= 1
        end = tail.end()
        if start == tail.start() or _continues(text, start, end):
            continue
        # `ipaddress` refuses leading zeros, yet "010.001.002.003" still names a host.
        octets = (str(int(octet)) for octet in text[start:end].split("."))
        try:
            ipaddress.IPv4Address(".".join(octets))
        except ValueError:
            continue
        yield Finding("ip_address", start, end)
    done = 0
    for anchor in _IPV6_ANCHOR.finditer(text):
        if anchor.start() < done:
            continue
        start, end = anchor.start(), anchor.end()
        while (
            start > max(0, anchor.start() - _IPV6_MAX_CHARS) and text[start - 1] in _IPV6_CHARACTERS
        ):
            start -= 1
        while (
            end < min(len(text), anchor.end() + _IPV6_MAX_CHARS) and text[end] in _IPV6_CHARACTERS
        ):
            end += 1
        done = end
        span = _ipv6_span(text, start, end)
        if span is not None:
            yield Finding("ip_address", *span)


def _ipv6_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The IPv6 address in a run of the characters it is written with, if any.

    The run itself, or the run without what a colon glues to it: an IPv4 address or a
    word before ("10.0.0.1:fe80::1", "Cafe:fe80::1"), a word or number after
    ("fe80::1:8080x", "fe80::1: down"). The first that parses, longest first.
    """
    # Single colons only: cutting at a "::" leaves half an address ("::1") behind.
    colons = [
        i
        for i in range(start + 1, end - 1)
        if text[i] == ":" and ":" not in text[i - 1 : i + 2 : 2]
    ]
    compressed = text.find("::", start, end)
    starts = [start, *(i for i in colons if compressed < 0 or i < compressed)]
    ends = [end, *(i for i in reversed(colons) if i > compressed)]
    for head in starts:
        for tail in ends:
            candidate = text[head:tail]
            # A sentence's full stop; a colon of the sentence, not a group's.
            last = tail - candidate.endswith(".")
            last -= text[head:last].endswith(":") and not text[head:last].endswith("::")
            first = head + (candidate.startswith(":") and not candidate.startswith("::"))
            if _is_ipv6(text, first, last):
                return first, last
    return None


def _continues(text: str, start: int, end: int) -> bool:
    """Whether a dotted quad at [start, end) is part of a longer dotted run or number."""
    before = text[start - 1] if start else ""
    after = text[end : end + 2]
    return (
        before.isdecimal()
        or before == "."
        or after[:1].isdecimal()
        or (after[:1] == "." and after[1:2].isdecimal())
    )


def _is_ipv6(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start else ""
    after = text[end] if end < len(text) else ""
    if before.isalnum() or before == "_" or after.isalnum() or after == "_":
        return False
    candidate = text[start:end]
    if not any(character.isalnum() for character in candidate):
        return False  # "::" alone
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


# -- secrets -----------------------------------------------------------------------------

# Lines worth handing to detect-secrets: a long token, a key header, credentials in a URL.
_SECRET_HINT = re.compile(
    r"[A-Za-z0-9_\-+/=.:]{16,}|PRIVATE KEY|PuTTY-User-Key|://[^\s:/@]+:[^\s@/]+@"
)
_WINDOW = 256
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY_LINE = re.compile(r"\n[ \t]*[A-Za-z0-9+/=:\- ]{16,}[ \t]*(?=\n|$)")
_PEM_MAX_CHARS = 16_384
# Shapes matched here rather than by detect-secrets, whose patterns are exact (a GitHub
# token of 36 characters, a Stripe key of 24) or stop short (a JWT without its signature):
# any PEM private-key header, GitHub, Slack and Stripe tokens of any length, and a whole
# JWT (header, payload, signature; JWE's five parts).
_TOKEN_SHAPES = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"|gh[pousr]_[A-Za-z0-9_]{30,}"
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|(?P<jwt>eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+){0,2})"
)
# A word naming a credential at the end of an identifier ("password", "db_password",
# "secret_token", "apiKey", "X-API-Key", "Bearer"), found from these pieces of it in the
# lowercased text; "key" alone only counts before a random-looking value.
_CREDENTIAL_HINTS = ("pass", "pwd", "secret", "token", "auth", "bearer", "key")
_CREDENTIAL_WORD = re.compile(
    r"(?i:(?P<credential>pass(?:word|wd)|pwd|secret|token|authorization|auth|bearer"
    r"|(?:api|access|private)[_\- ]?key)|key)"
    r"(?=[\"' \t:=])"
)
_LONGEST_CREDENTIAL_WORD = 13
# The password of "scheme://user:password@host", whatever characters it holds (detect-
# secrets' basic-auth pattern stops at "!", "$", "+" and other URL sub-delimiters).
_URL_PASSWORD = re.compile(r"://[^\s:/@\[\]]+:(?P<password>[^\s:/@\[\]]+)@")
# What follows a credential word: an assignment ("=", ":", "=>") or spaces ("is" too),
# quotes allowed, then a value of six characters or more without spaces. After spaces the
# value needs a letter and a digit: "password manager", "bearer bonds" are prose.
_ASSIGNED_VALUE = re.compile(
    r"[\"']?(?:[ \t]*(?:=>|[:=])[ \t]*|(?P<spaced>[ \t]+(?:is[ \t]+)?))[\"']?"
    r"(?:(?i:basic|bearer|digest|negotiate|token)[ \t]+)?+"
    r"(?P<value>[^\s\"'\[][^\s\"']{5,})"
)
_TRAILING_PUNCTUATION = ".,;:)]}>"
# After any such word, "key" included, an optional assignment and a long random value.
_KEYED_VALUE = re.compile(
    r"[\"']?[ \t]*(?:=>|[:=]|is(?=[ \t]))?[ \t]*[\"']?(?P<value>[A-Za-z0-9+/=_\-]{16,})"
)
_BASE64_LIMIT = 3.0
_HEX_LIMIT = 3.0
_HEX = frozenset("0123456789abcdefABCDEF")


@functools.cache
def _detectors() -> tuple[RegexBasedDetector, ...]:
    """The detect-secrets plugins that name a kind of credential by its shape.

    Plugins that guess from keywords alone (Keyword, Cloudant, Softlayer, IBM)
    or that match common words (Artifactory's "AP..." prefix) are left out;
    IPs are `ip_address` findings, not secrets.
    """
    return (
        AWSKeyDetector(),
        AzureStorageKeyDetector(),
        BasicAuthDetector(),
        DiscordBotTokenDetector(),
        GitHubTokenDetector(),
        GitLabTokenDetector(),
        MailchimpDetector(),
        NpmDetector(),
        OpenAIDetector(),
        PrivateKeyDetector(),
        PypiTokenDetector(),
        SendGridDetector(),
        SlackDetector(),
        SquareOAuthDetector(),
        StripeDetector(),
        TelegramBotTokenDetector(),
        TwilioKeyDetector(),
    )


@functools.cache
def _entropy_plugins() -> tuple[Base64HighEntropyString, HexHighEntropyString]:
    return Base64HighEntropyString(limit=_BASE64_LIMIT), HexHighEntropyString(limit=_HEX_LIMIT)


def _find_secrets(scan: _Scan) -> Iterator[Finding]:
    text = scan.text
    # Where each PEM block ends, found once (a key header looks for the next one).
    pem_ends = [m.end() for m in _PEM_END.finditer(text)] if "PRIVATE KEY" in text else []
    for start, end in _secret_windows(text):
        window = text[start:end]
        for detector in _detectors():
            for value in set(detector.analyze_string(window)):
                if not value:
                    continue
                position = window.find(value)
                while position >= 0:
                    found = start + position
                    yield _secret_span(text, found, found + len(value), pem_ends)
                    position = window.find(value, position + len(value))
        for match in _TOKEN_SHAPES.finditer(window):
            if match["jwt"] is None or _is_jwt(match["jwt"]):
                yield _secret_span(text, start + match.start(), start + match.end(), pem_ends)
        for match in _URL_PASSWORD.finditer(window):
            yield Finding("secret", start + match.start("password"), start + match.end("password"))
    yield from _keyed_secrets(text, scan.lowered)


def _is_jwt(token: str) -> bool:
    """Whether `token` (three to five dot-separated base64url parts) is a JWT.

    A payload that is a JSON object too ("eyJ...") is evidence enough, as it is for the
    screen; otherwise (JWE) the header must decode to a JSON object.
    """
    header, payload = token.split(".")[:2]
    if payload.startswith("eyJ"):
        return True
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:  # also binascii.Error and UnicodeDecodeError
        return False
    return isinstance(decoded, dict)


def _keyed_secrets(text: str, lowered: str) -> Iterator[Finding]:
    """Values after a word naming a credential (`_CREDENTIAL_WORD`)."""
    hints = {p for hint in _CREDENTIAL_HINTS for p in _occurrences(lowered, hint)}
    for hint in sorted(hints):
        word = _credential_word_at(text, hint)
        if word is not None:
            yield from _values_after(text, word)


def _credential_word_at(text: str, hint: int) -> re.Match[str] | None:
    """The credential word holding offset `hint`, if it starts a part of an identifier."""
    start = max(0, hint - _LONGEST_CREDENTIAL_WORD)
    for word in _CREDENTIAL_WORD.finditer(text, start, hint + _LONGEST_CREDENTIAL_WORD + 1):
        if not word.start() <= hint < word.end():
            continue
        if _starts_identifier_part(text, word.start()):
            return word
        # "xapi_key" is no API key, but its "key" may still start a part.
        bare = _CREDENTIAL_WORD.match(text, hint)
        return bare if bare is not None and _starts_identifier_part(text, hint) else None
    return None


def _starts_identifier_part(text: str, position: int) -> bool:
    """Whether a word at `position` starts a part of an identifier ("db_password", "apiKey")."""
    before = text[position - 1] if position else " "
    if not ("a" <= before <= "z" or "A" <= before <= "Z"):
        return True
    return before.islower() and text[position].isupper()  # camelCase


def _values_after(text: str, word: re.Match[str]) -> Iterator[Finding]:
    if word["credential"] is not None:
        assigned = _ASSIGNED_VALUE.match(text, word.end())
        if assigned is not None:
            value = assigned["value"]
            has_digit = any(c.isdigit() for c in value)
            has_letter = any(c.isalpha() for c in value)
            if (has_letter or has_digit) and (
                assigned["spaced"] is None or (has_letter and has_digit)
            ):
                start = assigned.start("value")
                yield Finding("secret", start, start + len(value.rstrip(_TRAILING_PUNCTUATION)))
    keyed = _KEYED_VALUE.match(text, word.end())
    if keyed is not None and _is_high_entropy(keyed["value"]):
        yield Finding("secret", keyed.start("value"), keyed.end("value"))


def _secret_windows(text: str) -> Iterator[tuple[int, int]]:
    """Merged windows of `_WINDOW` characters around each hint, never crossing a line."""
    current: tuple[int, int] | None = None
    for hint in _SECRET_HINT.finditer(text):
        line_start = text.rfind("\n", 0, hint.start()) + 1
        line_end = text.find("\n", hint.end())
        line_end = len(text) if line_end < 0 else line_end
        start = max(line_start, hint.start() - _WINDOW)
        end = min(line_end, hint.end() + _WINDOW)
        if current is not None and start <= current[1]:
            current = (current[0], max(current[1], end))
            continue
        if current is not None:
            yield current
        current = (start, end)
    if current is not None:
        yield current


def _secret_span(text: str, start: int, end: int, pem_ends: list[int]) -> Finding:
    """The secret at [start, end), or the whole PEM block when it is a key header.

    Args:
        text: The scanned text.
        start: Where the value detect-secrets reported starts.
        end: Where it ends.
        pem_ends: Offsets just past every "-----END ... PRIVATE KEY-----", sorted.
    """
    value = text[start:end]
    if "PRIVATE KEY" not in value and "PuTTY-User-Key" not in value:
        return Finding("secret", start, end)
    dashes = text.rfind("-----", max(0, start - 5), start + 1)
    block_start = dashes if dashes >= 0 else start
    closing = bisect.bisect_right(pem_ends, end)
    if closing < len(pem_ends) and pem_ends[closing] - end <= _PEM_MAX_CHARS:
        return Finding("secret", block_start, pem_ends[closing])
    # No END line: the header's line and the body lines after it.
    line_end = text.find("\n", end)
    block_end = len(text) if line_end < 0 else line_end
    while line_end >= 0 and block_end - end <= _PEM_MAX_CHARS:
        body = _PEM_BODY_LINE.match(text, line_end)
        if body is None:
            break
        block_end = body.end()
        line_end = block_end if block_end < len(text) else -1
    return Finding("secret", block_start, block_end)


def _is_high_entropy(value: str) -> bool:
    """A random-looking credential: letters and digits, and detect-secrets' entropy above limit.

    The limits are lower than detect-secrets' defaults (4.5 and 3.0 bits for
    long quoted strings in code): these values are short, and the word before
    them already says they are credentials.
    """
    if not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    base64, hexadecimal = _entropy_plugins()
    if set(value) <= _HEX:
        return hexadecimal.calculate_shannon_entropy(value) > _HEX_LIMIT
    return base64.calculate_shannon_entropy(value) > _BASE64_LIMIT


# -- person names ------------------------------------------------------------------------


def _letters(test: Callable[[str], bool]) -> str:
    """The Latin letters (Basic Latin to Latin Extended-B) passing `test`, as a class body."""
    return "".join(
        re.escape(chr(c)) for c in range(0x41, 0x250) if chr(c).isalpha() and test(chr(c))
    )


_UPPER = _letters(str.isupper)
_LOWER = _letters(str.islower)
# A capitalized word: "Smith", "McDonald", "O'Brien", "Smith-Jones", "Smith's".
_WORD = (
    rf"[{_UPPER}](?:['\u2019][{_UPPER}])?[{_LOWER}]+(?:[{_UPPER}][{_LOWER}]+)?"
    rf"(?:['\u2019\-][{_UPPER}]?[{_LOWER}]+)*(?!\w)"
)
_INITIAL = rf"[{_UPPER}]\.(?!\w)"
_TOKEN = rf"(?:{_WORD}|{_INITIAL})"
# Spaces or tabs, with at most one line break: a name never spans a blank line.
_SEP = r"(?:[ \t]+\n?|\n)[ \t]*"
_TOKENS = re.compile(_TOKEN)
# Two or more capitalized words (or initials) in a row.
_RUN = re.compile(rf"(?<![\w'\u2019\-]){_TOKEN}(?:{_SEP}{_TOKEN})+")
# Where a run may be: a cheap pattern starting with a character class (C-speed scan).
_RUN_HINT = re.compile(rf"[{_UPPER}](?:[{_LOWER}]+|\.)[ \t\n]+[{_UPPER}]")
_WORD_CHARACTERS = frozenset(_UPPER + _LOWER + "'\u2019-")
# A word and up to two more words or initials: what follows an honorific or a label.
_NAME = re.compile(rf"{_WORD}(?:{_SEP}{_TOKEN}){{0,2}}")
_HONORIFIC = re.compile(r"(?:M(?:rs?|s|x|iss)|Dr|Prof|Sir|Dame)\.?[ \t]+")
# Labels before a name, found with str.find in the lowercased text; all but
# "signed" need a colon ("Name: ...", "Signed by ...").
_LABELS = (
    "full name",
    "name",
    "patient",
    "employee",
    "applicant",
    "cardholder",
    "account holder",
    "attn",
    "contact",
)
_AFTER_LABEL = re.compile(r"[ \t]*:[ \t]*")
_AFTER_SIGNED = re.compile(r"(?:[ \t]+by)?[ \t]*:?[ \t]*")
_NOT_SURNAME = FUNCTION_WORDS | PLACE_WORDS
_POSSESSIVE = ("'s", "\u2019s")
_MAX_INITIALS = 3


def _bare(token: str) -> str:
    """`token` lowercased, without a possessive "'s"."""
    word = token.lower()
    return word[:-2] if word.endswith(_POSSESSIVE) else word


def _find_people(scan: _Scan) -> Iterator[Finding]:
    """Person names, by the rule in this module's docstring."""
    text = scan.text
    for honorific in _HONORIFIC.finditer(text):
        start = honorific.start()
        if start and (text[start - 1].isalnum() or text[start - 1] in "_."):
            continue
        yield from _name_at(text, honorific.end())
    lowered = scan.lowered
    for label in _LABELS:
        for end in _whole_words(lowered, label):
            colon = _AFTER_LABEL.match(text, end)
            if colon is not None:
                yield from _name_at(text, colon.end())
    for end in _whole_words(lowered, "signed"):
        signed = _AFTER_SIGNED.match(text, end)  # matches always: every part is optional
        yield from _name_at(text, signed.end() if signed else end)
    lexicon = names()
    position = 0
    while (hint := _RUN_HINT.search(text, position)) is not None:
        start = hint.start()
        while start > 0 and text[start - 1] in _WORD_CHARACTERS:
            start -= 1
        run = _RUN.match(text, start)
        if run is None:
            position = hint.start() + 1
            continue
        yield from _people_in_run(text, run, lexicon.first, lexicon.last, lexicon.ambiguous)
        position = run.end()


def _name_at(text: str, position: int) -> Iterator[Finding]:
    """The name starting exactly at `position` (after an honorific or a label), if any."""
    found = _NAME.match(text, position)
    if found is None:
        return
    tokens = [(t.start(), t.end(), t.group()) for t in _TOKENS.finditer(found.group())]
    # The first word always; the next ones up to a word that cannot be a name.
    count = 1
    while count < len(tokens) and _bare(tokens[count][2]) not in _NOT_SURNAME:
        count += 1
    yield _person(text, position + tokens[0][0], position + tokens[count - 1][1])


def _people_in_run(
    text: str,
    run: re.Match[str],
    first: frozenset[str],
    last: frozenset[str],
    ambiguous: frozenset[str],
) -> Iterator[Finding]:
    tokens = [(t.start(), t.end(), t.group()) for t in _TOKENS.finditer(run.group())]
    base = run.start()
    index = 0
    while index < len(tokens) - 1:
        token = tokens[index][2]
        end_index = None
        if token.endswith("."):
            # "J. Smith", "J. R. R. Tolkien": up to three initials, then a known last name.
            following = index + 1
            limit = min(len(tokens) - 1, index + _MAX_INITIALS)
            while following < limit and tokens[following][2].endswith("."):
                following += 1
            surname = tokens[following][2]
            if not surname.endswith(".") and _bare(surname) in last:
                end_index = following
        else:
            word = _bare(token)
            given = word in first or any(part in first for part in word.split("-"))
            if given or word in ambiguous:
                end_index = _surname_after(tokens, index, last, strict=not given)
        if end_index is None:
            index += 1
            continue
        yield _person(text, base + tokens[index][0], base + tokens[end_index][1])
        index = end_index + 1


def _surname_after(
    tokens: list[tuple[int, int, str]], index: int, last: frozenset[str], *, strict: bool
) -> int | None:
    """The index of the last token of the name starting at `index`, if one does."""
    following = index + 1
    initials = 0
    while following < len(tokens) and tokens[following][2].endswith(".") and initials < 2:
        following += 1
        initials += 1
    if following >= len(tokens) or tokens[following][2].endswith("."):
        return None
    surname = _bare(tokens[following][2])
    if surname in _NOT_SURNAME or (strict and surname not in last):
        return None
    # An unknown second word in a run that goes on to a place or organisation word
    # names that place or body ("Chelsea Football Club"), not a person.
    if surname not in last and any(
        _bare(token) in PLACE_WORDS for _, _, token in tokens[following + 1 : following + 4]
    ):
        return None
    # Up to two more known last names: "García Márquez", "Garcia Lopez".
    for _ in range(2):
        if (
            following + 1 < len(tokens)
            and not tokens[following][2].endswith(_POSSESSIVE)
            and _bare(tokens[following + 1][2]) in last
            and _bare(tokens[following + 1][2]) not in _NOT_SURNAME
        ):
            following += 1
    return following


def _person(text: str, start: int, end: int) -> Finding:
    """A person finding without a trailing possessive "'s"."""
    if text[start:end].endswith(_POSSESSIVE):
        end -= 2
    return Finding("person", start, end)


_RECOGNIZERS: tuple[Callable[[_Scan], Iterable[Finding]], ...] = (
    _find_emails,
    _find_phones,
    _find_phone_shapes,
    _find_cards,
    _find_ibans,
    _find_national_ids,
    _find_ip_addresses,
    _find_secrets,
    _find_people,
)
_CONTEXT_RULES = (
    _ContextRule(_id_labels, _numbers_after_label),
    _ContextRule(_phone_words, _local_numbers_after),
)
