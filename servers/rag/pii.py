"""Personal data in text: validated recognizers, run at ingest, and redaction for outputs.

`find_pii` returns every span of personal data in a text as a `Finding` (kind,
start, end). Each recognizer validates what it matches, so a number that only
looks like personal data is left alone:

- email: a local part of at most 64 characters without leading, trailing or
  doubled dots, "@", a domain of LDH labels ending in an alphabetic TLD.
- phone: phonenumbers' matcher at leniency VALID: "+" numbers of any country,
  national numbers of `region`. Only digit runs holding 7 digits or more reach
  it, and long runs (tables of figures) only in pieces (`_phone_segments`).
- payment_card: 13 to 19 digits (single spaces or dashes between groups of 3+),
  Luhn-valid, with a known issuer prefix and a length that issuer uses.
- iban: two letters, two check digits, the rest in optional groups; valid for
  python-stdnum (country format and mod 97), trailing words trimmed off.
- national_id: formats that carry their own structure need nothing else (US SSN
  as 123-45-6789, Spanish DNI and NIE, Italian codice fiscale, Brazilian CPF as
  123.456.789-09); bare digit runs count only after a word naming the scheme
  within `CONTEXT_CHARS` characters ("SSN", "social security", "Aadhaar",
  "SIN", "NHS", "BSN", "PESEL", "Steuer-ID", "NIR", "personnummer", "CPF").
  Every candidate is validated by python-stdnum.
- ip_address: full dotted quads with every octet at most 255 (leading zeros
  allowed; three-part "1.2.3" versions never match, nor do quads inside longer
  dotted runs), and IPv6 as `ipaddress` parses it. Unspecified (0.0.0.0),
  loopback and private addresses count too: they still identify hosts inside
  an organisation, and the independent screen (`screening`) flags any quad, so
  skipping them here would only get outputs refused. A four-part version
  ("v1.2.3.4") is a quad too.
- secret: detect-secrets' regex plugins (AWS, GitHub, GitLab, Slack, Stripe,
  JWT, basic-auth URLs, PEM private keys, ...) run through `analyze_string`,
  which needs no settings and never verifies over the network, on windows
  around tokens of 16+ characters; plus high-entropy values right after a
  key/token/secret/password word. A PEM key's span is the whole block.
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

Overlapping findings keep the longer span; on a tie, `_PRIORITY` decides.

Speed: ingest scans whole documents, so every recognizer starts with a regular
expression that rejects ordinary prose in C; phonenumbers and detect-secrets
only see the few candidates left (bench/pii.py measures it against a bare `re`
pass).
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
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
from detect_secrets.plugins.jwt import JwtTokenDetector
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
from stdnum.ca import sin
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.gb import nhs
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.pl import pesel
from stdnum.se import personnummer
from stdnum.us import ssn

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
#: How far before a bare number the word naming its scheme may stand.
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
    found: list[Finding] = []
    for recognizer in _RECOGNIZERS:
        found.extend(recognizer(text, region))
    return _without_overlaps(found)


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
    """`found` sorted by start, each cluster of overlapping findings resolved greedily.

    Clusters are small, so the longest-first choice inside one costs nothing,
    and the sweep over the sorted findings is O(n log n) for a whole document.
    """
    found.sort(key=lambda f: (f.start, f.end))
    kept: list[Finding] = []
    cluster: list[Finding] = []
    cluster_end = 0
    for finding in found:
        if cluster and finding.start >= cluster_end:
            kept.extend(_resolve_cluster(cluster))
            cluster = []
        cluster_end = max(cluster_end, finding.end) if cluster else finding.end
        cluster.append(finding)
    kept.extend(_resolve_cluster(cluster))
    return kept


def _resolve_cluster(cluster: list[Finding]) -> list[Finding]:
    """The longest findings of one cluster that do not overlap (ties: `_PRIORITY`)."""
    if len(cluster) <= 1:
        return cluster
    chosen: list[Finding] = []
    for finding in sorted(
        cluster, key=lambda f: (f.start - f.end, _PRIORITY[f.kind], f.start, f.end)
    ):
        if all(finding.end <= other.start or other.end <= finding.start for other in chosen):
            chosen.append(finding)
    return sorted(chosen, key=lambda f: f.start)


# -- email -------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+\-])"
    r"(?P<local>[A-Za-z0-9_%+\-](?:[A-Za-z0-9._%+\-]{0,62}[A-Za-z0-9_%+\-])?)"
    r"@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}"
    r"(?![\w\-]|\.[A-Za-z0-9])"
)
_MAX_LOCAL = 64
_MAX_ADDRESS = 254
# Above one "@" per this many characters, scan the whole text instead of windows.
_DENSE_AT = 2_000
# "://user:" right before a candidate address: URL credentials, not an address.
_URL_CREDENTIALS = re.compile(r"://[^\s/@:]*:\Z")


def _find_emails(text: str, region: str) -> Iterator[Finding]:
    ats = text.count("@")
    if ats == 0:
        return
    if ats * _DENSE_AT > len(text):
        # Many "@": one pass over the whole text beats a window per "@".
        matches: Iterable[re.Match[str]] = _EMAIL.finditer(text)
    else:
        matches = _emails_around_ats(text)
    for match in matches:
        if _is_address(text, match):
            yield Finding("email", match.start(), match.end())


def _emails_around_ats(text: str) -> Iterator[re.Match[str]]:
    """Matches of `_EMAIL` found in a window around each "@" (prose has few)."""
    done = 0
    at = text.find("@")
    while at >= 0:
        window_end = min(len(text), at + _MAX_ADDRESS + 8)
        for match in _EMAIL.finditer(text, max(done, at - _MAX_LOCAL - 1), window_end):
            if match.start() <= at < match.end():
                done = match.end()
                yield match
                break
        at = text.find("@", max(at + 1, done))


def _is_address(text: str, match: re.Match[str]) -> bool:
    if ".." in match["local"] or match.end() - match.start() > _MAX_ADDRESS:
        return False
    # "scheme://user:password@host" holds a secret (basic auth), not an address.
    start = match.start()
    return _URL_CREDENTIALS.search(text, max(0, start - 256), start) is None


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


def _find_phones(text: str, region: str) -> Iterator[Finding]:
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


# -- payment cards -----------------------------------------------------------------------

# Groups of digits separated by one space or dash, not continuing a code such as
# "DE89 3704 ..."; a card is a window of whole groups.
_DIGIT_GROUPS = re.compile(r"\d(?<![\w\-.]\d)(?<!\d[ \-]\d)\d*(?:[ \-]\d+)*(?![\w\-]|\.\d)")
_GROUP = re.compile(r"\d+")
_MIN_GROUP_DIGITS = 3

# (first prefix, last prefix, lengths): issuer identification ranges of the major schemes.
_ISSUERS: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("4", "4", frozenset({13, 16, 19})),  # Visa
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),  # Mastercard 2-series
    ("34", "34", frozenset({15})),  # American Express
    ("37", "37", frozenset({15})),
    ("6011", "6011", frozenset(range(16, 20))),  # Discover
    ("644", "649", frozenset(range(16, 20))),
    ("65", "65", frozenset(range(16, 20))),
    ("300", "305", frozenset(range(14, 20))),  # Diners Club
    ("36", "36", frozenset(range(14, 20))),
    ("38", "39", frozenset(range(16, 20))),
    ("3528", "3589", frozenset(range(16, 20))),  # JCB
    ("62", "62", frozenset(range(16, 20))),  # UnionPay
    ("2200", "2204", frozenset(range(16, 20))),  # Mir
    ("5018", "5018", frozenset(range(13, 20))),  # Maestro
    ("5020", "5020", frozenset(range(13, 20))),
    ("5038", "5038", frozenset(range(13, 20))),
    ("5893", "5893", frozenset(range(13, 20))),
    ("6304", "6304", frozenset(range(13, 20))),
    ("6759", "6759", frozenset(range(13, 20))),
    ("6761", "6763", frozenset(range(13, 20))),
    ("60", "60", frozenset({16})),  # RuPay
    ("508", "508", frozenset({16})),
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


def _find_cards(text: str, region: str) -> Iterator[Finding]:
    for run in _DIGIT_GROUPS.finditer(text):
        if run.end() - run.start() < 13:
            continue
        digits = run.group()
        groups = [(g.start(), g.end()) for g in _GROUP.finditer(digits)]
        base = run.start()
        first = 0
        while first < len(groups):
            found = _card_at(digits, groups, first)
            if found is None:
                first += 1
                continue
            yield Finding("payment_card", base + groups[first][0], base + groups[found][1])
            first = found + 1


def _card_at(run: str, groups: list[tuple[int, int]], first: int) -> int | None:
    """The last group of the longest card starting at group `first`, if any."""
    best = None
    digits = ""
    for last in range(first, len(groups)):
        start, end = groups[last]
        if (end - start < _MIN_GROUP_DIGITS and last < len(groups) - 1) or len(digits) > 19:
            break
        digits += run[start:end]
        if is_card_number(digits):
            best = last
    return best


# -- IBAN --------------------------------------------------------------------------------

# Each repetition takes one character (after an optional space): linear backtracking.
_IBAN_CANDIDATE = re.compile(r"[A-Z](?<![\w\-][A-Z])[A-Z]\d{2}(?:[ ]?[A-Z0-9]){11,30}(?![\w\-])")


def _find_ibans(text: str, region: str) -> Iterator[Finding]:
    for candidate in _IBAN_CANDIDATE.finditer(text):
        found = candidate.group()
        # The whole match first, then shorter ones ending before a space (a word after it).
        ends = [len(found), *(i for i in range(len(found) - 1, 0, -1) if found[i] == " ")]
        for end in ends:
            compact = found[:end].replace(" ", "")
            if len(compact) >= 15 and iban.is_valid(compact):
                yield Finding("iban", candidate.start(), candidate.start() + end)
                break


# -- national identification numbers -----------------------------------------------------

# Formats distinctive enough to stand alone, one named group per scheme: US SSN
# (123-45-6789), Spanish DNI, Brazilian CPF (123.456.789-09); Spanish NIE,
# Italian codice fiscale.
_DIGIT_LED_IDS = re.compile(
    r"\d(?<![\w\-.]\d)"
    r"(?:(?P<ssn>\d{2}-\d{2}-\d{4})|(?P<dni>\d{7}-?[A-Z])|(?P<cpf>\d{2}\.\d{3}\.\d{3}-\d{2}))"
    r"(?![\w\-]|\.\d)"
)
_LETTER_LED_IDS = re.compile(
    r"[A-Z](?<![\w\-][A-Z])"
    r"(?:(?P<nie>(?<=[XYZ])-?\d{7}-?[A-Z])"
    r"|(?P<codicefiscale>[A-Z]{5}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z]"
    r"[0-9LMNPQRSTUV]{3}[A-Z]))"
    r"(?![\w\-])"
)
_SELF_EVIDENT: Mapping[str, Callable[[str], bool]] = {
    "ssn": ssn.is_valid,
    "dni": dni.is_valid,
    "cpf": cpf.is_valid,
    "nie": nie.is_valid,
    "codicefiscale": codicefiscale.is_valid,
}


@dataclass(frozen=True, slots=True)
class _BareScheme:
    """A national id written as bare digits: valid only after a word naming it.

    Attributes:
        words: Lowercase words naming the scheme, matched in any case.
        acronyms: Acronyms matched only as written ("SIN", not "sin").
        shape: The number as it is written.
        is_valid: python-stdnum's validator (given the number without spaces).
    """

    words: tuple[str, ...]
    acronyms: tuple[str, ...]
    shape: re.Pattern[str]
    is_valid: Callable[[str], bool]


_LONGEST_BARE_ID = 32


def _bare_shape(shape: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w\-.])(?:{shape})(?![\w\-]|\.\d)")


_BARE_SCHEMES = (
    _BareScheme(
        ("ssn", "ss#", "social security"), (), _bare_shape(r"\d{3}[ ]?\d{2}[ ]?\d{4}"), ssn.is_valid
    ),
    _BareScheme(
        ("aadhaar", "aadhar", "uidai"),
        (),
        _bare_shape(r"[2-9]\d{3}[ \-]?\d{4}[ \-]?\d{4}"),
        aadhaar.is_valid,
    ),
    _BareScheme(
        ("social insurance",), ("SIN",), _bare_shape(r"\d{3}[ \-]?\d{3}[ \-]?\d{3}"), sin.is_valid
    ),
    _BareScheme((), ("NHS",), _bare_shape(r"\d{3}[ \-]?\d{3}[ \-]?\d{4}"), nhs.is_valid),
    _BareScheme(
        ("burgerservicenummer", "sofinummer"),
        ("BSN",),
        _bare_shape(r"\d{4}\.?\d{2}\.?\d{3}"),
        bsn.is_valid,
    ),
    _BareScheme(("pesel",), (), _bare_shape(r"\d{11}"), pesel.is_valid),
    _BareScheme(
        ("steuer-id", "steuerid", "steuer-idnr", "idnr", "steueridentifikationsnummer"),
        (),
        _bare_shape(r"\d{2}[ ]?\d{3}[ ]?\d{3}[ ]?\d{3}"),
        idnr.is_valid,
    ),
    _BareScheme(
        ("sécurité sociale", "securite sociale"),
        ("NIR", "INSEE"),
        _bare_shape(r"[12][ ]?\d{2}[ ]?\d{2}[ ]?(?:\d{2}|2A|2B)[ ]?\d{3}[ ]?\d{3}[ ]?\d{2}"),
        nir.is_valid,
    ),
    _BareScheme(
        ("personnummer",), (), _bare_shape(r"(?:\d{2})?\d{6}[\-+]?\d{4}"), personnummer.is_valid
    ),
    _BareScheme(("cpf",), (), _bare_shape(r"\d{11}"), cpf.is_valid),
)


def _find_national_ids(text: str, region: str) -> Iterator[Finding]:
    for pattern in (_DIGIT_LED_IDS, _LETTER_LED_IDS):
        for match in pattern.finditer(text):
            group = match.lastgroup
            if group is not None and _SELF_EVIDENT[group](match.group()):
                yield Finding("national_id", match.start(), match.end())
    lowered = _lowercase(text)
    for scheme in _BARE_SCHEMES:
        named = [(lowered, word) for word in scheme.words]
        named += [(text, acronym) for acronym in scheme.acronyms]
        for haystack, word in named:
            for end in _whole_words(haystack, word):
                yield from _bare_numbers_after(text, end, scheme)


def _bare_numbers_after(text: str, end: int, scheme: _BareScheme) -> Iterator[Finding]:
    """Valid numbers of `scheme` starting within `CONTEXT_CHARS` after offset `end`."""
    window_end = min(len(text), end + CONTEXT_CHARS + _LONGEST_BARE_ID)
    for match in scheme.shape.finditer(text, end, window_end):
        if match.start() > end + CONTEXT_CHARS:
            break
        if match.end() == window_end < len(text):
            continue  # cut short by the window: the number may go on
        # Validators take the number as written, less the spaces some formats group with.
        if scheme.is_valid(match.group().replace(" ", "")):
            yield Finding("national_id", match.start(), match.end())


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
_DIGITS = frozenset("0123456789")
_IPV6_ANCHOR = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6_CHARACTERS = frozenset("0123456789abcdefABCDEF:.")
_IPV6_MAX_CHARS = 45


def _find_ip_addresses(text: str, region: str) -> Iterator[Finding]:
    for tail in _IPV4_TAIL.finditer(text):
        start = tail.start()
        while start > tail.start() - 3 and start > 0 and text[start - 1] in _DIGITS:
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
        end -= text[start:end].endswith(".")  # a sentence's full stop
        if _is_ipv6(text, start, end):
            yield Finding("ip_address", start, end)


def _continues(text: str, start: int, end: int) -> bool:
    """Whether a dotted quad at [start, end) is part of a longer dotted run or number."""
    before = text[start - 1] if start else ""
    after = text[end : end + 2]
    return (
        before in _DIGITS
        or before == "."
        or after[:1] in _DIGITS
        or (after[:1] == "." and after[1:2] in _DIGITS)
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
# A key/token/secret/password word, an optional assignment, then a long value.
_KEYED_VALUE = re.compile(
    r"(?i:\b(?:(?:api|access|secret|private)?[_\- ]?key|secret|client[_\- ]?secret"
    r"|auth(?:[_\- ]?token)?|access[_\- ]?token|token|password|passwd|pwd|bearer)s?\b)"
    r"[\"']?[ \t]*(?:[:=]|=>|\bis\b)?[ \t]*[\"']?"
    r"(?P<value>[A-Za-z0-9+/_\-.~=]{16,})"
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
        JwtTokenDetector(),
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


def _find_secrets(text: str, region: str) -> Iterator[Finding]:
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
        for match in _KEYED_VALUE.finditer(window):
            value = match["value"].rstrip(".")
            if _is_high_entropy(value):
                yield Finding(
                    "secret",
                    start + match.start("value"),
                    start + match.start("value") + len(value),
                )


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


def _find_people(text: str, region: str) -> Iterator[Finding]:
    """Person names, by the rule in this module's docstring."""
    for honorific in _HONORIFIC.finditer(text):
        start = honorific.start()
        if start and (text[start - 1].isalnum() or text[start - 1] in "_."):
            continue
        yield from _name_at(text, honorific.end())
    lowered = _lowercase(text)
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


_RECOGNIZERS: tuple[Callable[[str, str], Iterable[Finding]], ...] = (
    _find_emails,
    _find_phones,
    _find_cards,
    _find_ibans,
    _find_national_ids,
    _find_ip_addresses,
    _find_secrets,
    _find_people,
)
