"""Rag's PII recognizers, redaction, the independent second scan and the offline gazetteer."""

from __future__ import annotations

import gzip
import itertools
import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servers.rag import gazetteer
from servers.rag.pii import DROPPED, KINDS, PLACEHOLDERS, Finding, find_pii, redact
from servers.rag.screening import second_scan

PROPERTIES = settings(max_examples=60, deadline=None, database=None)
ALL_MASKED: dict[str, str] = {}

# (kind, text before, the personal data, text after): valid values in plain contexts.
SAMPLES = [
    ("email", "Write to ", "jane.doe+news@mail.example.co.uk", " today."),
    ("email", "mailto:", "ops@example.org", ""),
    ("phone", "Call ", "+44 20 7946 0958", " now."),
    ("phone", "Call ", "(415) 555-2671", " after five."),
    ("phone", "Fax: ", "+49 30 901820", "."),
    ("phone", "Tel. ", "+33 6 12 34 56 78", "."),
    ("payment_card", "Card ", "4111 1111 1111 1111", " 12/27."),
    ("payment_card", "Amex ", "378282246310005", " was charged."),
    ("payment_card", "MC ", "5555-5555-5555-4444", "."),
    ("iban", "Pay into ", "DE89 3704 0044 0532 0130 00", " EUR."),
    ("iban", "IBAN: ", "GB82WEST12345698765432", "."),
    ("national_id", "SSN ", "123-45-6789", " on file."),
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
        "SSN 000-12-3456",  # area 000 is never issued
        "SSN 666-12-3456",
        "SSN 912-12-3456",
        "SSN 123-00-4567",  # group 00
        "DNI 12345678A",  # wrong check letter
        "ticket 123456789 closed",  # a bare number without a word naming a scheme
        "Aadhaar 1234 5678 9012",  # Aadhaar numbers never start with 0 or 1
        "host 256.1.1.1 and 10.0.0.300",  # octets above 255
        "version 1.2.3, v2.14.1 and 1.2.3.4.5",  # versions, a dotted run longer than a quad
        "call 555-0100 or 12345",  # too short for a number anywhere
        "invoice INV-2024-000123 on 2024-01-15 at 10:30:00",
        "order ORD-20240115-7731 for $1,234,567.89",
        "the time is 12:30:45 and the MAC 00:1A:2B:3C:4D:5E",
        "Jack went home. Will Power. Grant Program. May Day.",
        "Victoria Station, San Francisco, Jordan River and the Paris Agreement",
        "The Quarterly Review and the Annual Report were late.",
        "password: correcthorsebatterystaple",  # a keyword without a random-looking value
    ],
)
def test_lookalikes_are_not_found(text: str) -> None:
    assert find_pii(text) == []


def test_national_phone_numbers_count_only_in_their_region() -> None:
    text = "ring 020 7946 0958 please"
    assert find_pii(text, region="US") == []
    assert find_pii(text, region="GB") == [Finding("phone", 5, 18)]


def test_a_bare_number_needs_the_word_nearby() -> None:
    far = "SSN " + "x" * 60 + " 123456789"
    assert find_pii(far) == []


# -- overlaps ----------------------------------------------------------------------------


def test_a_tie_goes_to_the_more_specific_kind() -> None:
    # phonenumbers reads this quad as a valid number too; it is reported once, as an address.
    text = "from host 113.174.220.228 at night"
    assert find_pii(text) == [Finding("ip_address", 10, 25)]


def test_the_longer_overlapping_span_wins() -> None:
    # The phone matcher finds "+14155552671" inside the address; the address is longer.
    text = "write to +14155552671@example.com please"
    assert find_pii(text) == [Finding("email", 9, 33)]


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
        "https://admin:[SECRET]@db.example.com/x; [PERSON]'s notes; Name: [PERSON]"
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
