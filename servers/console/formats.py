"""How the console writes figures for people: durations, windows, money, instants.

Registered as the templates' filters (`Console`), so every page writes a
figure the same way.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from babel.numbers import UnknownCurrencyError, get_currency_precision
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk.money import Money

#: What a page shows for a figure there is none of.
BLANK = "\N{EN DASH}"
_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def duration(seconds: float, parts: int = 2) -> str:
    """A length of time in its largest units, e.g. 3725 → "1 h 2 min".

    >>> duration(3725), duration(59), duration(0), duration(86400 * 3 + 7200)
    ('1 h 2 min', '59 s', '0 s', '3 d 2 h')
    """
    if not math.isfinite(seconds):
        return BLANK
    sign = "\N{MINUS SIGN}" if seconds < 0 else ""
    left = round(abs(seconds))
    words: list[str] = []
    for unit, size in _UNITS:
        if left >= size or (unit == "s" and not words):
            count, left = divmod(left, size)
            words.append(f"{count} {unit}")
        elif words:
            words.append("")  # a skipped unit still counts as a part
        if len([w for w in words if w]) == parts or len(words) == parts:
            break
    return sign + " ".join(word for word in words if word)


def minutes(seconds: float) -> str:
    """Seconds as minutes with one decimal, e.g. 2592 → "43.2 min".

    >>> minutes(2592)
    '43.2 min'
    """
    return BLANK if not math.isfinite(seconds) else f"{seconds / 60:,.1f} min"


def window(seconds: int) -> str:
    """An alerting or SLO window the way SREs write it: 300 → "5m", 3600 → "1h", 259200 → "3d".

    >>> [window(s) for s in (300, 1800, 3600, 21600, 259200, 2592000)]
    ['5m', '30m', '1h', '6h', '3d', '30d']
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def money(amount: Money) -> str:
    """Minor units in the currency's major ones, e.g. 123456 USD → "1,234.56 USD".

    >>> money(Money(minor_units=123456, currency_code="USD"))
    '1,234.56 USD'
    >>> money(Money(minor_units=500, currency_code="JPY"))
    '500 JPY'
    """
    code = amount.currency_code or "XXX"
    try:
        digits = get_currency_precision(code)
    except UnknownCurrencyError:
        digits = 2
    return f"{amount.minor_units / 10**digits:,.{digits}f} {code}"


def instant(stamp: Timestamp) -> str:
    """A timestamp in UTC to the minute, e.g. "2026-03-01 14:05 UTC"; a dash when unset."""
    if not stamp.seconds and not stamp.nanos:
        return BLANK
    return datetime.fromtimestamp(stamp.seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(stamp: Timestamp) -> str:
    """A timestamp as an ISO 8601 instant with a "Z", for scripts to read (`data-ends-at`)."""
    return datetime.fromtimestamp(stamp.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def number(value: float, digits: int = 1) -> str:
    """A figure with thousands separators, e.g. 25920.0 → "25,920.0"; a dash when not finite."""
    return BLANK if not math.isfinite(value) else f"{value:,.{digits}f}"
