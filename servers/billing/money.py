"""Exact money: integer minor units, currency exponents, explicit rounding and allocation.

Amounts are `int` counts of a currency's minor unit (cents for USD, yen for JPY,
fils for BHD), never floats. Rates are `Decimal`s parsed from strings. Every
rounding is explicit: half away from zero, on exact fractions.

>>> exponent("USD"), exponent("JPY"), exponent("BHD")
(2, 0, 3)
>>> apply_rate(6833, parse_rate("0.2"))  # 68.33 at 20 %: 13.666 → 13.67
1367
>>> allocate(100, [1, 1, 1])
[34, 33, 33]
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from babel.numbers import get_currency_precision, list_currencies

from core.errors import quoted

_CURRENCIES = frozenset(list_currencies())

#: The largest amount, in minor units, that any price, line, document or cap may hold
#: (ten trillion dollars in cents); the contract bounds every Money it accepts to it, so
#: sums of a document's amounts stay far from the 64-bit limit of the store.
MAX_MINOR_UNITS = 10**15
#: The largest subtotal usage may rate into a document: with tax (a rate below 1) its
#: total stays within MAX_MINOR_UNITS, so it can be paid, credited or refunded in one amount.
MAX_SUBTOTAL = MAX_MINOR_UNITS // 2
#: The largest quantity one invoice line may accumulate over its period.
MAX_LINE_QUANTITY = 10**15


def within_money_bound(amount: int) -> bool:
    """Whether `amount` is an amount the platform may store (|amount| <= MAX_MINOR_UNITS)."""
    return -MAX_MINOR_UNITS <= amount <= MAX_MINOR_UNITS


def currency(code: str) -> str:
    """The ISO-4217 code `code`, checked.

    Raises:
        ValueError: Not an active ISO-4217 currency code.
    """
    if code not in _CURRENCIES or len(code) != 3 or not code.isupper():
        raise ValueError(f"{quoted(code)} is not an ISO-4217 currency code")
    return code


def exponent(code: str) -> int:
    """Decimal places of the currency's minor unit (2 for USD, 0 for JPY, 3 for BHD)."""
    return int(get_currency_precision(currency(code)))


def format_amount(minor_units: int, code: str) -> str:
    """`minor_units` as a plain decimal string in the currency ("68.33 USD").

    >>> format_amount(-6833, "USD"), format_amount(500, "JPY"), format_amount(1, "BHD")
    ('-68.33 USD', '500 JPY', '0.001 BHD')
    """
    places = exponent(code)
    value = Decimal(minor_units).scaleb(-places)
    return f"{value:.{places}f} {code}"


def parse_rate(text: str) -> Decimal:
    """A tax rate from its decimal string ("0.2", "0.08875"), between 0 and 1.

    Raises:
        ValueError: Not a decimal in [0, 1).
    """
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal rate") from None
    if not value.is_finite() or not 0 <= value < 1:
        raise ValueError(f"rate {text!r} must be at least 0 and below 1")
    return value


def round_half_up(value: Fraction) -> int:
    """`value` rounded to an integer, halves away from zero.

    >>> round_half_up(Fraction(5, 2)), round_half_up(Fraction(-5, 2)), round_half_up(Fraction(7, 3))
    (3, -3, 2)
    """
    magnitude = abs(value)
    whole, remainder = divmod(magnitude.numerator, magnitude.denominator)
    if 2 * remainder >= magnitude.denominator:
        whole += 1
    return whole if value >= 0 else -whole


def apply_rate(amount: int, rate: Decimal) -> int:
    """Tax on `amount` (exclusive of tax) at `rate`, rounded half up."""
    return round_half_up(Fraction(amount) * Fraction(rate))


def split_inclusive(gross: int, rate: Decimal) -> tuple[int, int]:
    """(net, tax) of a tax-inclusive `gross` at `rate`: net rounded half up, tax the rest.

    >>> split_inclusive(12000, Decimal("0.2"))
    (10000, 2000)
    """
    net = round_half_up(Fraction(gross) / (1 + Fraction(rate)))
    return net, gross - net


def prorate(amount: int, part: int, whole: int) -> int:
    """`amount * part / whole`, rounded half up (0 when `whole` is 0)."""
    if whole == 0:
        return 0
    return round_half_up(Fraction(amount * part, whole))


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` in proportion to `weights` so the parts sum to `total` exactly.

    Largest remainder: each part is the floor of its exact share; the units
    left over go to the largest remainders (ties: earlier weights first).
    Weights must not be negative; all-zero weights split nothing but zeros
    (then `total` must be 0).

    >>> allocate(10, [1, 2, 3])
    [2, 3, 5]
    >>> allocate(-10, [1, 2, 3])
    [-2, -3, -5]
    """
    if any(weight < 0 for weight in weights):
        raise ValueError("weights must not be negative")
    whole = sum(weights)
    if whole == 0:
        if total:
            raise ValueError("cannot allocate a non-zero total over zero weights")
        return [0 for _ in weights]
    sign, magnitude = (1, total) if total >= 0 else (-1, -total)
    shares = [divmod(magnitude * weight, whole) for weight in weights]
    parts = [share for share, _ in shares]
    left = magnitude - sum(parts)
    order = sorted(range(len(weights)), key=lambda index: (-shares[index][1], index))
    for index in order[:left]:
        parts[index] += 1
    return [sign * part for part in parts]
