"""An independent second scan: personal data still present in an output about to leave.

Every output (chunk text, summary, export) is redacted from the findings made
at ingest (`pii.find_pii`), then scanned here; if this scan finds anything of a
kind the purpose does not keep, the output is refused rather than sent.

A check is only worth something if it does not share the first scan's
mistakes, so nothing here reuses `pii`'s recognizers or its libraries
(phonenumbers, python-stdnum, detect-secrets, `ipaddress`): the patterns are
deliberately cruder and broader, with their own small checksums. Being broader
is what makes a document unreadable when `pii` misses a shape flagged here, so
`pii` is held to find whatever this scan flags (tests/unit/test_rag_pii.py); a
shape is flagged here only when it is personal data as written, not merely
digits (a table of small numbers, a decimal, a creditor reference).

- email: anything@anything.tld, except the "@" ending a URL's credentials;
  "jane(at)example.com", "jane [at] example [dot] com".
- phone: "+" and 8 to 15 digits with separators, "(415) 555-2671", and a local
  "555-0199" within 16 characters after "call", "phone", "tel", "ph", "mobile",
  "cell" or "fax" (not the "[PHONE]" placeholder), or right after "at".
- payment_card: the leading digit groups of a run (spaces and dashes; groups of
  3 digits or more but the run's last), or a whole run of dot- or slash-separated
  groups, starting with 2 to 6 (every major network), as long as cards of that
  first digit are, passing Luhn.
- iban: two letters in either case, two digits, 11 to 30 more letters or
  digits (trailing words aside), 8 digits or more after the check digits, not
  "RF" (creditor references), mod 97 == 1.
- national_id: a US SSN (123-45-6789) the SSA could issue, a Spanish DNI or
  NIE with its check letter, an Italian codice fiscale shape, a Brazilian CPF
  with its check digits, or the first run of 9 to 15 digits within 40
  characters after a word naming a national id ("SSN", "Aadhaar", "PESEL", ...).
- ip_address: any dotted quad of 0 to 255; colon-hex groups with one "::" or
  all eight groups.
- secret: PEM private-key headers, credentials in URLs (user:password@),
  AWS access key ids, GitHub, Slack and Stripe tokens, JWTs; after a word
  naming a credential at the start of an identifier's part ("password",
  "db_passwd", "secret_token", "apiKey", "Bearer"; not "monkey" or
  "authentication") its value of six characters or more (after a bare space,
  with letters and digits), and long random-looking values after such words or
  "key".
- person: an honorific and a capitalized word, or two capitalized words in a
  row of which the first is a known first name and the second a known last
  name (the gazetteer's data; the rule is this module's own).

Redaction placeholders ("[EMAIL]", "[REDACTED]") match none of these.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from servers.rag.gazetteer import names
from servers.rag.pii import KINDS, Finding


def second_scan(text: str, kinds: Iterable[str]) -> list[Finding]:
    """Personal data of `kinds` still present in `text`, found independently of `pii`.

    Args:
        text: An output, already redacted.
        kinds: The kinds that must not appear (those the purpose does not keep).

    Returns:
        What was found, sorted by start (spans of different kinds may overlap).

    Raises:
        ValueError: A kind that is not one of `pii.KINDS`.

    >>> [f.kind for f in second_scan("Write to [EMAIL] or ann@example.org", ["email"])]
    ['email']
    """
    wanted = set(kinds)
    unknown = wanted.difference(KINDS)
    if unknown:
        raise ValueError(f"unknown PII kinds: {', '.join(sorted(unknown))}")
    found = {finding for kind in KINDS if kind in wanted for finding in _SCANS[kind](text)}
    return sorted(found, key=lambda f: (f.start, f.end, f.kind))


# -- email -------------------------------------------------------------------------------

# Starts only where a local part can start, so a long token costs one pass, not a square.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
)
# "jane(at)example.com", "jane [at] example [dot] com": the bracketed forms.
_BRACKETED_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+[ \t]*[(\[](?i:at)[)\]][ \t]*[A-Za-z0-9\-]+"
    r"(?:(?:\.|[ \t]*[(\[](?i:dot)[)\]][ \t]*)[A-Za-z0-9\-]+)*"
    r"(?:\.|[ \t]*[(\[](?i:dot)[)\]][ \t]*)[A-Za-z]{2,}"
)
# Text between "://" and an "@" with no space, path, query or fragment in between: the
# "@" ends a URL's userinfo ("https://user:password@host"), a secret, not an address.
_USERINFO_BEFORE = re.compile(r"://[^\s/?#@]*\Z")


def _emails(text: str) -> Iterator[Finding]:
    if "@" in text:
        for match in _EMAIL.finditer(text):
            if not _USERINFO_BEFORE.search(text, max(0, match.start() - 300), match.start()):
                yield Finding("email", match.start(), match.end())
    if "(" in text or "[" in text:
        for match in _BRACKETED_EMAIL.finditer(text):
            yield Finding("email", match.start(), match.end())


# -- phone -------------------------------------------------------------------------------

_INTERNATIONAL = re.compile(r"\+\d(?:[ \t.\-()/]{0,2}\d){7,14}(?!\d)")
_NORTH_AMERICAN = re.compile(r"\(\d{3}\)[ \t]?\d{3}[ \t.\-]\d{4}(?!\d)")
# "555-0199" on its own, within 16 characters after a word saying it is a phone number,
# or right after "at".
_LOCAL = re.compile(r"(?<![\w\-.])(?<!\d )\d{3}[ \-]\d{4}(?![\w\-]|\.\d)")
# (Not the placeholder "[PHONE]": masking a number must not make the next one look called.)
_SAYS_PHONE = re.compile(
    r"(?i:(?<!\[)\b(?:call|phone|tel|ph|mobile|cell|fax)\b(?!\])[^\n]{0,16}|\bat[ \t]+)\Z"
)


def _phones(text: str) -> Iterator[Finding]:
    for pattern in (_INTERNATIONAL, _NORTH_AMERICAN):
        for match in pattern.finditer(text):
            yield Finding("phone", match.start(), match.end())
    for match in _LOCAL.finditer(text):
        # pos and endpos keep the text before the window in view of "\b".
        if _SAYS_PHONE.search(text, max(0, match.start() - 24), match.start()):
            yield Finding("phone", match.start(), match.end())


# -- payment cards -----------------------------------------------------------------------

# Digit groups not glued to a word, nor continuing a code such as "DE89 3704 ..." or a
# decimal: separated by spaces and dashes, or all by dots, or all by slashes.
_DIGIT_RUN = re.compile(
    r"(?<![\w\-])(?<!\d[ \-./])\d+(?:(?:[ \-]\d+)+|(?:\.\d+)+|(?:/\d+)+)?(?![\w\-]|[./]\d)"
)
# A group shorter than this ends a card, unless it ends the run: "52 34 56 78 ..." is a
# table of small numbers, not a card.
_SHORTEST_GROUP = 3


# Card lengths by first digit, roughly as the networks issue them (2: Mastercard, Mir;
# 3: Amex, Diners, JCB; 4: Visa; 5: Mastercard, Maestro; 6: Discover, UnionPay, ...).
_CARD_LENGTHS: dict[str, frozenset[int]] = {
    "2": frozenset(range(16, 20)),
    "3": frozenset(range(14, 20)),
    "4": frozenset({13, 16, 19}),
    "5": frozenset(range(16, 20)),
    "6": frozenset(range(16, 20)),
}


def _luhn(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _is_card(digits: str) -> bool:
    return len(digits) in _CARD_LENGTHS.get(digits[0], ()) and _luhn(digits)


def _cards(text: str) -> Iterator[Finding]:
    for run in _DIGIT_RUN.finditer(text):
        if run.end() - run.start() < 13:
            continue
        groups = list(re.finditer(r"\d+", run.group()))
        if len(groups) > 1 and run.group()[groups[0].end()] in "./":
            # Dots or slashes: the whole run or nothing (no piece of a dotted figure).
            if _is_card("".join(group.group() for group in groups)):
                yield Finding("payment_card", run.start(), run.end())
            continue
        digits = ""
        for index, group in enumerate(groups):
            if len(group.group()) < _SHORTEST_GROUP and index < len(groups) - 1:
                break
            digits += group.group()
            if len(digits) > 19:
                break
            if _is_card(digits):
                yield Finding("payment_card", run.start(), run.start() + group.end())


# -- IBAN --------------------------------------------------------------------------------

# In either case ("gb82west..."); an account number has at least 8 digits after the check
# digits, which keeps prose such as "es2015 modules are great" out.
_IBAN_SHAPE = re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}\b")
_FEWEST_ACCOUNT_DIGITS = 8


def _mod97(candidate: str) -> bool:
    rearranged = candidate[4:] + candidate[:4]
    number = "".join(str(int(character, 36)) for character in rearranged)
    return int(number) % 97 == 1


def _account_like(compact: str) -> bool:
    """IBAN length, enough digits, and not an "RF" creditor reference (same checksum)."""
    digits = sum(character.isdigit() for character in compact[4:])
    return 15 <= len(compact) <= 34 and digits >= _FEWEST_ACCOUNT_DIGITS and compact[:2] != "RF"


def _ibans(text: str) -> Iterator[Finding]:
    for match in _IBAN_SHAPE.finditer(text):
        shape = match.group()
        # The whole shape, then without trailing words ("... 0130 00 EUR").
        end = len(shape)
        while end:
            compact = shape[:end].replace(" ", "").upper()
            if _account_like(compact) and _mod97(compact):
                yield Finding("iban", match.start(), match.start() + end)
                break
            space = shape.rfind(" ", 0, end)
            if space < 0 or not shape[space + 1 : end].isalpha():
                break
            end = space


# -- national ids ------------------------------------------------------------------------

_SSN_SHAPE = re.compile(r"(?<![\d\-])(\d{3})-(\d{2})-(\d{4})(?![\d\-])")
_DNI_SHAPE = re.compile(r"\b([XYZ]?)-?(\d{7,8})-?([A-Z])\b")
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_CODICE_FISCALE_SHAPE = re.compile(
    r"\b[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]\b"
)
_CPF_SHAPE = re.compile(r"(?<![\d.])\d{3}\.\d{3}\.\d{3}-\d{2}(?!\d)")
_ID_WORDS = re.compile(
    r"(?i:\bssn\b|\bss#|social\s+security|social\s+insurance|aadhaa?r|uidai|burgerservicenummer"
    r"|pesel|steuer-?id|\bidnr\b|personnummer|\bcpf\b|s[eé]curit[eé]\s+sociale)"
    r"|\b(?:SIN|NHS|BSN|NIR|INSEE)\b"
)
_DIGITS_AFTER_WORD = re.compile(r"(?<![\w])\d(?:[ \-.]?\d){8,14}(?!\d)")
_WORD_REACH = 40


def _plausible_ssn(match: re.Match[str]) -> bool:
    """The SSA's rules for numbers it could issue: no 000, 666 or 9xx area, no zero group."""
    area, group, serial = match.groups()
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _dni_letter_matches(match: re.Match[str]) -> bool:
    prefix, digits, letter = match.groups()
    if prefix:
        if len(digits) != 7:
            return False
        digits = str("XYZ".index(prefix)) + digits
    elif len(digits) != 8:
        return False
    return _DNI_LETTERS[int(digits) % 23] == letter


def _cpf_digits_match(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    if len(set(digits)) == 1:
        return False
    for length in (9, 10):
        total = sum(
            d * weight for d, weight in zip(digits[:length], range(length + 1, 1, -1), strict=True)
        )
        if (total * 10) % 11 % 10 != digits[length]:
            return False
    return True


def _national_ids(text: str) -> Iterator[Finding]:
    for match in _SSN_SHAPE.finditer(text):
        if _plausible_ssn(match):
            yield Finding("national_id", match.start(), match.end())
    for match in _DNI_SHAPE.finditer(text):
        if _dni_letter_matches(match):
            yield Finding("national_id", match.start(), match.end())
    for match in _CODICE_FISCALE_SHAPE.finditer(text):
        yield Finding("national_id", match.start(), match.end())
    for match in _CPF_SHAPE.finditer(text):
        if _cpf_digits_match(match.group()):
            yield Finding("national_id", match.start(), match.end())
    for word in _ID_WORDS.finditer(text):
        # The first long number after the word, if it is near enough.
        reach = min(len(text), word.end() + _WORD_REACH + 20)
        number = _DIGITS_AFTER_WORD.search(text, word.end(), reach)
        if number is not None and number.start() <= word.end() + _WORD_REACH:
            yield Finding("national_id", number.start(), number.end())


# -- IP addresses ------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_DOTTED_QUAD = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\d|\.\d)")
_COLON_HEX = re.compile(r"(?<![\w:.])[0-9A-Fa-f:]{2,39}(?![\w:]|\.\w)")


def _ip_addresses(text: str) -> Iterator[Finding]:
    for match in _DOTTED_QUAD.finditer(text):
        yield Finding("ip_address", match.start(), match.end())
    if "::" not in text and text.count(":") < 7:
        return
    for match in _COLON_HEX.finditer(text):
        # A single colon at either end is the sentence's ("MAC 00:1A:2B:3C:4D:5E: ok").
        candidate = match.group()
        if candidate.startswith(":") and not candidate.startswith("::"):
            candidate = candidate[1:]
        if candidate.endswith(":") and not candidate.endswith("::"):
            candidate = candidate[:-1]
        groups = candidate.split(":")
        compressed = "::" in candidate
        if (
            candidate.count("::") <= 1
            and ":::" not in candidate
            and len(groups) >= 3
            and (compressed or len(groups) == 8)
            and len(groups) <= 9
            and any(groups)
            and all(len(group) <= 4 for group in groups)
        ):
            yield Finding("ip_address", match.start(), match.end())


# -- secrets -----------------------------------------------------------------------------

_TOKEN_SHAPES = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----"
    r"|(?<=://)[^\s:/@\[\]]+:[^\s:/@\[\]]+(?=@)"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}"
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|\b[rs]k_live_[A-Za-z0-9]{16,}"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"
)
# A key word starting a part of an identifier ("db_password", "apiKey"; not "monkey" or
# "authentication") and followed by an assignment or a space.
_WORD_START = r"(?:(?<![A-Za-z])|(?<=[a-z])(?=[A-Z]))"
_KEYED = re.compile(
    _WORD_START + r"(?i:key|token|secret|password|passwd|pwd|bearer|auth)(?=[\"' \t:=])"
    r"[\"']?[ \t]*[:=]?[ \t]*[\"']?([A-Za-z0-9+/=_\-]{20,})"
)
# A credential word and its value, random-looking or not: "password=Sup3rS3cr3t!",
# "secret_token: 9f8e7d6c5b4a", "Bearer abc123...". After bare spaces the value must mix
# letters and digits ("password manager" is prose); an auth scheme is not the value
# ("token: Bearer abc123...").
_CREDENTIAL = re.compile(
    _WORD_START
    + r"(?i:pass(?:word|wd)|pwd|secret|token|auth|bearer|(?:api|access|private)[_\-]?key)"
    r"[\"']?(?:[ \t]*[:=][ \t]*|(?P<space>[ \t]+))[\"']?"
    r"(?:(?i:basic|bearer|digest|negotiate|token)[ \t]+)?+(?P<value>[^\s\"'\[\]]{6,})"
)
_MIN_BITS = 3.0


def _bits_per_character(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _secrets(text: str) -> Iterator[Finding]:
    for match in _TOKEN_SHAPES.finditer(text):
        yield Finding("secret", match.start(), match.end())
    for match in _KEYED.finditer(text):
        value = match.group(1)
        has_both = any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
        if has_both and _bits_per_character(value) > _MIN_BITS:
            yield Finding("secret", match.start(1), match.end(1))
    for match in _CREDENTIAL.finditer(text):
        value = match["value"]
        digit = any(c.isdigit() for c in value)
        letter = any(c.isalpha() for c in value)
        if (digit and letter) or (match["space"] is None and (digit or letter)):
            yield Finding("secret", match.start("value"), match.end("value"))


# -- person names ------------------------------------------------------------------------

_HONORIFIC_NAME = re.compile(
    r"(?<![\w.])(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Dame)\.?[ \t]+[A-Z][a-z]+\b"
)
# A capitalized word and, in a look-ahead so that pairs overlap, the next one
# (possessive "'s" allowed).
_WORD_PAIR = re.compile(
    r"(?<![\w'\u2019\-])[A-Z][a-z]+"
    r"(?=(?:[ \t]+\n?|\n)[ \t]*([A-Z][a-z]+)(?![\w\-]|['\u2019](?!s\b)))"
)


def _people(text: str) -> Iterator[Finding]:
    for match in _HONORIFIC_NAME.finditer(text):
        yield Finding("person", match.start(), match.end())
    lexicon = names()
    for match in _WORD_PAIR.finditer(text):
        if match.group().lower() in lexicon.first and match.group(1).lower() in lexicon.last:
            yield Finding("person", match.start(), match.end(1))


_SCANS: dict[str, Callable[[str], Iterator[Finding]]] = {
    "email": _emails,
    "phone": _phones,
    "payment_card": _cards,
    "iban": _ibans,
    "national_id": _national_ids,
    "ip_address": _ip_addresses,
    "secret": _secrets,
    "person": _people,
}
