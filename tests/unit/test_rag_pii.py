"""Rag's PII recognizers, redaction, the independent second scan and the offline gazetteer."""

from __future__ import annotations

import gzip
import itertools
import json
import string
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servers.rag import gazetteer
from servers.rag.pii import (
    CONTEXT_CHARS,
    DROPPED,
    KINDS,
    PLACEHOLDERS,
    Finding,
    find_pii,
    redact,
)
from servers.rag.screening import second_scan

PROPERTIES = settings(max_examples=60, deadline=None, database=None)
ALL_MASKED: dict[str, str] = {}
JWT = (
    "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiMTIzNDU2Nzg5MCJ9"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

# (kind, text before, the personal data, text after): valid values in plain contexts.
SAMPLES = [
    ("email", "Write to ", "jane.doe+news@mail.example.co.uk", " today."),
    ("email", "mailto:", "ops@example.org", ""),
    ("email", "Mail ", "jane(at)example.com", "."),
    ("email", "Mail ", "jane [at] example [dot] com", "."),
    ("email", "Mail ", "jane at example dot com", "."),
    ("phone", "Call ", "+44 20 7946 0958", " now."),
    ("phone", "Call ", "(415) 555-2671", " after five."),
    ("phone", "Fax: ", "+49 30 901820", "."),
    ("phone", "Tel. ", "+33 6 12 34 56 78", "."),
    ("phone", "Call ", "555-0199", " after five."),  # a local number after a phone word
    ("phone", "Phone: ", "555 0199", "."),
    ("phone", "or reach me at ", "555-0199", "."),
    ("payment_card", "Card ", "4111 1111 1111 1111", " 12/27."),
    ("payment_card", "Amex ", "378282246310005", " was charged."),
    ("payment_card", "MC ", "5555-5555-5555-4444", "."),
    ("payment_card", "Card ", "4111.1111.1111.1111", " on file."),
    ("payment_card", "Card ", "4111/1111/1111/1111", " on file."),
    ("iban", "Pay into ", "DE89 3704 0044 0532 0130 00", " EUR."),
    ("iban", "IBAN: ", "GB82WEST12345698765432", "."),
    ("iban", "iban ", "gb82west12345698765432", " (lower case)."),
    ("iban", "IBAN ", "GB82 WEST 1234 5698 7654 32", "."),
    ("iban", "iban ", "gb82 west 1234 5698 7654 32", "."),
    ("national_id", "SSN ", "123-45-6789", " on file."),
    ("national_id", "printed on the card: ", "078-05-1120", "."),  # stdnum's advertised SSN
    ("national_id", "SSN: ", "123456789", "."),
    ("national_id", "social security number ", "123 45 6789", "."),
    ("national_id", "DNI ", "12345678Z", "."),
    ("national_id", "NIE ", "X1234567L", "."),
    ("national_id", "codice fiscale ", "RSSMRA85T10A562S", "."),
    ("national_id", "CPF ", "111.444.777-35", "."),
    ("national_id", "NHS number ", "943 476 5919", "."),
    ("national_id", "Aadhaar ", "2345 6789 0124", "."),
    ("ip_address", "from ", "192.168.1.12", " at night."),
    ("ip_address", "from ", "2001:db8::8a2e:370:7334", "."),
    ("ip_address", "loopback ", "::1", " only."),
    ("secret", "key ", "AKIAIOSFODNN7EXAMPLE", " leaked."),
    ("secret", "token ", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", " revoked."),
    ("secret", "stripe ", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", " rotated."),
    ("secret", "db at https://admin:", "hunter2x99", "@db.example.com/x"),
    ("secret", "api_key = '", "x8Hq2LmZ9vR4tY7wK3pN6sB1", "'"),
    ("secret", "password=", "Sup3rS3cr3t!", "\n"),
    ("secret", "password: ", "hunter2secret", "\n"),
    ("secret", 'api_key = "', "abc123def456ghi", '"'),
    ("secret", "secret_token: ", "9f8e7d6c5b4a", "\n"),
    ("secret", "Authorization: Bearer ", "mF_9.B5f-4.1JqM", "\n"),
    ("secret", "session ", JWT, " expired."),  # a JWT is masked whole, signature included
    (
        "secret",
        "key:\n",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx4UbaDzY8xS1lY2Sxh5J4v6m9B\n"
        "abcDEF123456789abcdEFGH\n-----END RSA PRIVATE KEY-----",
        "\nend",
    ),
    ("person", "We met ", "John Smith", " yesterday."),
    ("person", "Ask Dr. ", "Okafor", " about it."),
    ("person", "Name: ", "Xavier Quillfeather", "\n"),
    ("person", "Signed by ", "Mary O'Brien", "."),
    ("person", "A novel by ", "Gabriel García Márquez", "."),
    ("person", "Memo from ", "John F. Kennedy", "."),
    ("person", "That is ", "Anna Smith", "'s car."),
    ("person", "Thanks, ", "Grant Thompson", "."),  # a common word before a known surname
]


def _sample_id(sample: tuple[str, str, str, str]) -> str:
    return f"{sample[0]}:{sample[2][:24]}"


@pytest.mark.parametrize("sample", SAMPLES, ids=_sample_id)
def test_each_kind_is_found_with_exact_offsets(sample: tuple[str, str, str, str]) -> None:
    kind, before, value, after = sample
    text = before + value + after
    assert find_pii(text) == [Finding(kind, len(before), len(before) + len(value))]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 was declined",  # Luhn fails
        "card 1234 5678 9012 3452 on file",  # Luhn holds, no issuer starts with 1
        "old account DE89 3704 0044 0532 0130 01",  # mod 97 fails
        "form 000-12-3456",  # area 000 is never issued
        "form 666-12-3456",
        "form 912-12-3456",
        "form 123-00-4567",  # group 00
        "form 123-45-0000",  # serial 0000
        "DNI 12345678A",  # wrong check letter
        "ticket 123456789 closed",  # a bare number without a word naming a scheme
        "card 4111111111111111.5 and ratio 0.4111111111111111",  # decimals
        "scores 52 34 56 78 90 12 34 04",  # Luhn holds, but small numbers in a row
        "creditor reference RF18 5390 0754 7034",  # mod 97 holds, names an invoice
        "es2015 modules and the fy2024 budget were approved by the board",
        "host 256.1.1.1 and 10.0.0.300",  # octets above 255
        "version 1.2.3, v2.14.1 and 1.2.3.4.5",  # versions, a dotted run longer than a quad
        "extension 555-0100 or 12345",  # too short for a number anywhere
        "part 555-0199 in stock, ref 555 0199",  # a local number needs a phone word
        "invoice INV-2024-000123 on 2024-01-15 at 10:30:00",
        "order ORD-20240115-7731 for $1,234,567.89",
        "the time is 12:30:45 and the MAC 00:1A:2B:3C:4D:5E",
        "Jack went home. Will Power. Grant Program. May Day.",
        "Victoria Station, San Francisco, Jordan River and the Paris Agreement",
        "The Quarterly Review and the Annual Report were late.",
        "the password manager, bearer bonds and the secret plans",  # prose after key words
        "authentication_service_v2_handler, monkey: banana123, max_tokens: 4096",
        "find us at example.com, or look (at) this",  # a bare "at" needs a spelled-out dot
        "host fe80::1::2 and the MAC 00:1A:2B:3C:4D:5E: both malformed",
    ],
)
def test_lookalikes_are_not_found(text: str) -> None:
    assert find_pii(text) == []
    assert second_scan(text, KINDS) == []  # nor refused


@pytest.mark.parametrize(
    ("before", "number"),
    [
        ("SSN ", "912-12-3456"),  # an ITIN, or a typo: still someone's number
        ("SSN: ", "000-12-3456"),
        ("Aadhaar ", "1234 5678 9012"),  # no Aadhaar starts with 1
        ("NHS number ", "123 456 7890"),  # the check digit fails
        ("social\nsecurity no. ", "123456789"),
    ],
)
def test_a_labelled_number_counts_whatever_its_checksum(before: str, number: str) -> None:
    text = f"{before}{number} on file."
    findings = find_pii(text)
    assert findings == [Finding("national_id", len(before), len(before) + len(number))]
    assert second_scan(redact(text, findings, ALL_MASKED)[0], KINDS) == []


@pytest.mark.parametrize(
    ("text", "number"),
    [
        # As written, the number is far from its word; masked, the token between shrinks to
        # "[SECRET]" and the screen, reading the output, finds it close.
        (f"SSN on the token {JWT} is 123456789.", "123456789"),
        ("Phone jane.doe.with.a.long.address@mail.example.org or 555-0199.", "555-0199"),
    ],
)
def test_masking_what_stands_between_a_word_and_its_number_exposes_nothing(
    text: str, number: str
) -> None:
    findings = find_pii(text)
    start = text.index(number)
    assert any(f.start == start and f.end == start + len(number) for f in findings)
    assert second_scan(redact(text, findings, ALL_MASKED)[0], KINDS) == []


def test_national_phone_numbers_count_only_in_their_region() -> None:
    text = "ring 020 7946 0958 please"
    assert find_pii(text, region="US") == []
    assert find_pii(text, region="GB") == [Finding("phone", 5, 18)]


def test_a_bare_number_needs_the_word_nearby() -> None:
    far = "SSN " + "x" * CONTEXT_CHARS + " 123456789"
    assert find_pii(far) == []
    assert second_scan(far, KINDS) == []


# -- overlaps ----------------------------------------------------------------------------


def test_a_tie_goes_to_the_more_specific_kind() -> None:
    # phonenumbers reads this quad as a valid number too; it is reported once, as an address.
    text = "from host 113.174.220.228 at night"
    assert find_pii(text) == [Finding("ip_address", 10, 25)]


def test_the_longer_overlapping_span_wins() -> None:
    # The phone matcher finds "+14155552671" inside the address; the address is longer.
    text = "write to +14155552671@example.com please"
    assert find_pii(text) == [Finding("email", 9, 33)]


def test_overlapping_findings_are_masked_as_one() -> None:
    # The number and the address share "0958": both are masked, as the longer one's kind,
    # so that no piece of the shorter is left for the screen.
    text = "ring +44 20 7946 0958.jane@example.com today"
    assert find_pii(text) == [Finding("email", 5, 38)]


def test_a_pem_block_is_one_secret_though_its_lines_look_like_tokens() -> None:
    kind, before, value, after = next(s for s in SAMPLES if s[2].startswith("-----BEGIN"))
    findings = find_pii(before + value + after)
    assert findings == [Finding(kind, len(before), len(before) + len(value))]


@given(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=8))
@PROPERTIES
def test_findings_are_sorted_and_never_overlap(samples: list[tuple[str, str, str, str]]) -> None:
    text = "".join(before + value + after for _, before, value, after in samples)
    findings = find_pii(text)
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))


# -- redaction ---------------------------------------------------------------------------


def test_redaction_masks_drops_and_keeps_per_kind() -> None:
    text = "Ask John Smith at jane@example.org or +44 20 7946 0958; SSN 123-45-6789."
    redacted, counts = redact(
        text, find_pii(text), {"person": "keep", "national_id": "drop", "email": "mask"}
    )
    # Kinds the actions leave out (phone) are masked.
    assert redacted == "Ask John Smith at [EMAIL] or [PHONE]; SSN [REDACTED]."
    assert counts == Counter({"email": 1, "phone": 1, "national_id": 1})


def test_every_kind_has_its_own_placeholder() -> None:
    for kind, before, value, after in SAMPLES:
        redacted, counts = redact(before + value + after, find_pii(before + value + after), {})
        assert redacted == before + PLACEHOLDERS[kind] + after
        assert counts == Counter({kind: 1})
    assert sorted(PLACEHOLDERS) == sorted(KINDS)
    assert len(set(PLACEHOLDERS.values()) | {DROPPED}) == len(KINDS) + 1


def test_redaction_counts_only_what_it_replaced() -> None:
    text = "jane@example.org and joe@example.org"
    redacted, counts = redact(text, find_pii(text), {"email": "keep"})
    assert (redacted, counts) == (text, Counter())


@pytest.mark.parametrize(
    ("findings", "actions", "problem"),
    [
        ([Finding("email", 0, 5), Finding("phone", 3, 8)], {}, "overlaps"),
        ([Finding("email", 0, 50)], {}, "outside"),
        ([Finding("address", 0, 5)], {}, "unknown PII kind"),
        ([Finding("email", 0, 5)], {"email": "hide"}, "unknown PII action"),
        ([Finding("email", 0, 5)], {"email": "Keep"}, "unknown PII action"),
    ],
)
def test_redaction_refuses_ambiguous_instructions(
    findings: list[Finding], actions: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        redact("0123456789", findings, actions)


# -- the second scan ---------------------------------------------------------------------


# Names whose evidence only pii weighs (a label, an initial, accents, an apostrophe, a
# common word as first name): the cruder screen is not expected to see them.
PII_ONLY = {"Xavier Quillfeather", "Mary O'Brien", "Gabriel García Márquez", "John F. Kennedy"}
PII_ONLY |= {"Grant Thompson"}
# The screen catches "(at)" and "[at]" only; a spelled-out address is pii's alone.
PII_ONLY |= {"jane at example dot com"}


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s[2] not in PII_ONLY], ids=_sample_id)
def test_second_scan_catches_each_kind_in_raw_text(sample: tuple[str, str, str, str]) -> None:
    kind, before, value, after = sample
    found = second_scan(before + value + after, [kind])
    assert found, f"the second scan missed {kind} {value!r}"
    assert all(finding.kind == kind for finding in found)


def test_second_scan_covers_every_kind() -> None:
    screened = {kind for kind, _, value, _ in SAMPLES if value not in PII_ONLY}
    assert screened == set(KINDS)


def test_second_scan_only_reports_the_kinds_asked_for() -> None:
    text = "jane@example.org, +44 20 7946 0958"
    assert [f.kind for f in second_scan(text, ["phone"])] == ["phone"]
    assert second_scan(text, []) == []
    with pytest.raises(ValueError, match="address"):
        second_scan(text, ["address"])


def test_placeholders_are_never_flagged() -> None:
    placeholders = " ".join([*PLACEHOLDERS.values(), DROPPED])
    text = (
        f"{placeholders}\nSSN: [NATIONAL_ID]; token: [SECRET]; password=[REDACTED]; "
        "Dr. [PERSON] met Mr. [REDACTED]; card [PAYMENT_CARD] 12/27; mail [EMAIL].\n"
        "https://admin:[SECRET]@db.example.com/x; [PERSON]'s notes; Name: [PERSON]\n"
        'Call [PHONE] or [PHONE]; api_key = "[SECRET]"; Authorization: Bearer [SECRET];\n'
        "secret_token: [SECRET]. IBAN [IBAN], card [PAYMENT_CARD], mail [EMAIL] (at) work."
    )
    assert second_scan(text, KINDS) == []


CORPUS = "\n".join(
    [
        "Quarterly notes. The budget was approved on March 3, 2024 (version 2.4.1).",
        *(f"{before}{value}{after} Nothing else." for _, before, value, after in SAMPLES),
        "Decoys: card 4111 1111 1111 1112, old account DE89 3704 0044 0532 0130 01,",
        "form 000-12-3456, ticket 123456789, order ORD-2024-118273, due 2024-01-15 10:30:00.",
        "Victoria Station, San Francisco and Will Power are not people; Jack went home.",
    ]
)


def test_masking_everything_leaves_the_second_scan_nothing() -> None:
    masked, counts = redact(CORPUS, find_pii(CORPUS), ALL_MASKED)
    assert second_scan(masked, KINDS) == []
    assert counts == Counter(kind for kind, *_ in SAMPLES)


# -- agreement with the screen --------------------------------------------------------------

# The screen is the check that the recognizers did their job, so whatever it flags they
# must find too, as the same kind: each of these was once flagged by the screen and missed
# by the recognizers (every output of a document holding it was refused), or sits at the
# edge of both.
AGREEMENT = [
    "SSN 078-05-1120 on file",  # stdnum refuses numbers once used in advertising
    "ref A123-45-6789 attached",  # an SSN glued to a letter
    "card no.4111111111111111 on file",
    "card 5600000000000003 and 3100000000000003",  # issuers outside the old table
    "write to jane.@example.com, a..b@example.com or .jane@example.org",
    "write to josé.garcia@example.com or jane@mail.example.c0m",
    "db at https://admin:0QdOwqD1$!w.ppmc7@db.example.com/x",  # "$!" stop detect-secrets
    "token ghp_a1B2c3D4e5a1B2c3D4e5a1B2c3D4e5 revoked",  # a GitHub token of 30 characters
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG\n",
    "call +99 1234 5678 90 or (555) 555-0100",  # an unassigned code, a made-up area
    "Aadhaar 1234 5678 9012, NHS number 123 456 7890, social\nsecurity 987654321",
    "pay ZZ591234567890123456 or DE5137040044053201300",  # mod 97 holds, format does not
    "codice fiscale ABCDEF12G34H567I",  # the layout, with a wrong check letter
    "host fe80::1: down, from 10.0.0.1:fe80::2 and Cafe:fe80::3",
    "from 0/\u0660.\u0660.\u0660.\u0660",  # Arabic-Indic digits are digits to both
    "token: Bearer abc123def456",
    "xapi_key: a8Hq2LmZ9vR4tY7wK3pN6sB1x",  # no API key, but a key all the same
    "call (415) 555-2671 or 555-0199; jane(at)example(dot)com or jane[at]example.com",
    "Mrs. Phone: 084 5389",  # the phone word is read as a name, and still counts
]


@pytest.mark.parametrize("text", AGREEMENT)
def test_whatever_the_screen_flags_the_recognizers_found(text: str) -> None:
    findings = find_pii(text)
    for flagged in second_scan(text, KINDS):
        assert any(
            f.kind == flagged.kind and f.start < flagged.end and flagged.start < f.end
            for f in findings
        ), f"the screen flags {flagged.kind} {text[flagged.start : flagged.end]!r} alone"
    # And a purpose keeping every other kind still gets its output.
    for kind in KINDS:
        masked, _ = redact(text, [f for f in findings if f.kind == kind], ALL_MASKED)
        assert second_scan(masked, [kind]) == []


def _luhn_completed(body: str) -> str:
    """`body` and the digit that makes it pass Luhn (the test's own arithmetic)."""
    for check in string.digits:
        digits = [int(d) for d in reversed(body + check)]
        doubled = [d * 2 - 9 if d > 4 else d * 2 for d in digits[1::2]]
        if (sum(digits[::2]) + sum(doubled)) % 10 == 0:
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


def _iban(country: str, account: str) -> str:
    """`country`, mod 97-10 check digits and `account` (the test's own arithmetic)."""
    number = int("".join(str(int(c, 36)) for c in account + country + "00"))
    return f"{country}{98 - number % 97:02d}{account}"


def _grouped(text: str, separator: str) -> str:
    return separator.join(text[i : i + 4] for i in range(0, len(text), 4))


CARD_SHAPES = st.builds(
    lambda first, rest, separator: _grouped(_luhn_completed(first + rest), separator),
    st.sampled_from("23456"),
    st.text(string.digits, min_size=11, max_size=17),
    st.sampled_from(["", " ", "-", ".", "/"]),
)
IBAN_SHAPES = st.builds(
    lambda country, account, lower, separator: _grouped(
        _iban(country, account).lower() if lower else _iban(country, account), separator
    ),
    st.sampled_from(["DE", "GB", "NL", "FR", "ZZ", "RF", "ES"]),
    st.text(string.digits * 3 + string.ascii_uppercase, min_size=11, max_size=26),
    st.booleans(),
    st.sampled_from(["", " "]),
)
WORDS = st.sampled_from(
    [
        *("SSN", "social security", "Aadhaar", "NHS number", "CPF", "DNI", "SIN"),
        *("call", "Phone:", "tel.", "fax", "at", "mobile"),
        *("password:", "api_key =", "secret_token:", "Bearer", "token", "key:", "auth"),
        *("Dr.", "Name:", "IBAN", "card", "host", "mail", "the", "report", "was", "late"),
    ]
)
FRAGMENTS = st.one_of(
    st.sampled_from([value for _, _, value, _ in SAMPLES]),
    CARD_SHAPES,
    IBAN_SHAPES,
    WORDS,
    st.from_regex(r"\+?\(?\d{1,4}\)?(?:[ .\-/]\d{1,4}){0,5}", fullmatch=True),
    st.from_regex(r"\d{3}[- ]\d{2}[- ]\d{4}", fullmatch=True),
    st.from_regex(
        r"[a-z.]{1,6}(?:@| ?[(\[]at[)\]] ?| at )[a-z]{1,6}(?:\.| dot | ?\[dot\] ?)[a-z]{2,4}",
        fullmatch=True,
    ),
    st.text(string.ascii_letters + string.digits + "!_-./+=:", min_size=3, max_size=30),
)
# How text separates things: never gluing two of them into one word.
SEPARATORS = st.sampled_from([" ", " ", "\n", ", ", ": ", " = ", "; ", " (", ") ", "\t", ". "])


@given(st.lists(st.tuples(FRAGMENTS, SEPARATORS), min_size=1, max_size=8))
@settings(max_examples=300, deadline=None, database=None)
def test_outputs_masked_from_the_findings_satisfy_the_screen(
    pieces: list[tuple[str, str]],
) -> None:
    text = "".join(fragment + separator for fragment, separator in pieces)
    findings = find_pii(text)
    masked, _ = redact(text, findings, ALL_MASKED)
    assert second_scan(masked, KINDS) == []
    # Random neighbours make spans of two readings (a quad right after "SSN" is an address
    # and a labelled number): one finding covers them, of one kind, so any kind will do
    # here; `AGREEMENT` holds the kinds.
    for flagged in second_scan(text, KINDS):
        assert any(f.start < flagged.end and flagged.start < f.end for f in findings)


FILLER = st.lists(
    st.sampled_from(["the", "report", "was", "late", "and", "we", "agreed", "on", "it", "."]),
    max_size=6,
).map(" ".join)


@given(st.lists(st.tuples(FILLER, st.sampled_from(SAMPLES)), min_size=1, max_size=6), FILLER)
@PROPERTIES
def test_planted_data_is_found_and_masking_it_satisfies_the_screen(
    planted: list[tuple[str, tuple[str, str, str, str]]], tail: str
) -> None:
    pieces, spans = [], []
    size = 0
    for filler, (kind, before, value, after) in planted:
        head = f"{filler}\n{before}"
        spans.append(Finding(kind, size + len(head), size + len(head) + len(value)))
        piece = f"{head}{value}{after}\n"
        pieces.append(piece)
        size += len(piece)
    text = "".join(pieces) + tail
    findings = find_pii(text)
    assert findings == spans
    masked, _ = redact(text, findings, ALL_MASKED)
    assert second_scan(masked, KINDS) == []


# -- the gazetteer -----------------------------------------------------------------------


def test_the_gazetteer_file_is_small_and_reproducible() -> None:
    data = gazetteer.NAMES_FILE.read_bytes()
    assert len(data) < 400_000
    # gzip header: no file name (flags byte 3) and no time (bytes 4-8), so rebuilds are identical.
    assert data[3] == 0
    assert data[4:8] == b"\0\0\0\0"
    content = json.loads(gzip.decompress(data))
    for key in ("first", "last", "ambiguous"):
        assert content[key] == sorted(set(content[key]))
    assert content["countries"] == list(gazetteer.COUNTRIES)


def test_the_gazetteer_keeps_names_and_sets_common_words_apart() -> None:
    lexicon = gazetteer.names()
    assert {"john", "maria", "josé", "łukasz"} <= lexicon.first
    assert {"smith", "garcía", "müller", "brown"} <= lexicon.last
    assert {"may", "grant", "mark", "rose", "bill"} <= lexicon.ambiguous
    assert not lexicon.first & lexicon.ambiguous
    # pii never takes a function or place word for a surname; the screen must not either.
    never = gazetteer.FUNCTION_WORDS | gazetteer.PLACE_WORDS
    assert not never & (lexicon.first | lexicon.last | lexicon.ambiguous)


def test_the_gazetteer_extract_filters_and_sorts() -> None:
    top_first = {
        "US": {"M": ["John", "Grant", "Will", "Street", "J", "Jo Ann", "수정"], "F": ["Ánna"]}
    }
    top_last = {"US": ["Smith", "The", "O'Brien", "Brown"], "FR": ["Dupont"]}
    content = gazetteer.extract(top_first, top_last, ["US"], top=10)
    assert content["first"] == ["john", "ánna"]
    assert content["last"] == ["brown", "o'brien", "smith"]
    assert content["ambiguous"] == ["grant"]
