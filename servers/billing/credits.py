"""Credit note arithmetic: what a credit takes off each invoice line, exactly.

Pure functions over the invoice lines' balances (what each line billed and what
issued, non-void credit notes already took). Invariants, with no slack:

- a line is never credited more than its subtotal, nor more than its tax;
- the tax a credit carries follows the credited share of the line: the line's
  tax prorated to the cumulative credited subtotal, half up, minus the tax
  already credited; crediting what is left of a line returns exactly what is
  left of its tax, so crediting every line returns exactly the invoice's tax;
- a credit by amount (tax included) is spread over the lines in proportion to
  what is left of them (largest remainder), then split into subtotal and tax
  the same way;
- every part's subtotal + tax = total.

>>> line = LineBalance("a", subtotal=6833, tax=1367)
>>> [(p.subtotal, p.tax) for p in credit_lines({"a": line}, [("a", 3000)])]
[(3000, 600)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from servers.billing.money import allocate, prorate


class CreditRefused(ValueError):
    """The credit would break an invariant; `reason` says which ("exceeds" or "invalid")."""

    def __init__(self, message: str, *, reason: str, line: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.line = line


@dataclass(frozen=True)
class LineBalance:
    """An invoice line's billed amounts and what issued credit notes already took."""

    line_id: str
    subtotal: int
    tax: int
    credited_subtotal: int = 0
    credited_tax: int = 0

    @property
    def remaining_subtotal(self) -> int:
        """Subtotal not yet credited."""
        return self.subtotal - self.credited_subtotal

    @property
    def remaining_tax(self) -> int:
        """Tax not yet credited."""
        return self.tax - self.credited_tax

    @property
    def remaining(self) -> int:
        """Total not yet credited."""
        return self.remaining_subtotal + self.remaining_tax


@dataclass(frozen=True)
class CreditPart:
    """What a credit note takes off one line."""

    line_id: str
    subtotal: int
    tax: int

    @property
    def total(self) -> int:
        """Subtotal plus tax."""
        return self.subtotal + self.tax


def _tax_for(balance: LineBalance, subtotal: int) -> int:
    """The tax that goes with crediting `subtotal` more of the line."""
    if subtotal == balance.remaining_subtotal:
        return balance.remaining_tax
    owed = prorate(balance.tax, balance.credited_subtotal + subtotal, balance.subtotal)
    return min(max(owed - balance.credited_tax, 0), balance.remaining_tax)


def credit_lines(
    balances: Mapping[str, LineBalance], requested: Sequence[tuple[str, int]]
) -> list[CreditPart]:
    """Credit `subtotal` (tax excluded) off each named line; tax follows.

    Raises:
        CreditRefused: An unknown or repeated line, an amount not positive, or
            more than what is left of a line.
    """
    if not requested:
        raise CreditRefused("name at least one line, or an amount", reason="invalid")
    seen: set[str] = set()
    parts = []
    for line_id, subtotal in requested:
        balance = balances.get(line_id)
        if balance is None:
            raise CreditRefused(
                f"the invoice has no line {line_id}", reason="invalid", line=line_id
            )
        if line_id in seen:
            raise CreditRefused(f"line {line_id} is named twice", reason="invalid", line=line_id)
        seen.add(line_id)
        if subtotal <= 0:
            raise CreditRefused("credit amounts must be positive", reason="invalid", line=line_id)
        if subtotal > balance.remaining_subtotal:
            raise CreditRefused(
                f"line {line_id} has {balance.remaining_subtotal} left to credit, not {subtotal}",
                reason="exceeds",
                line=line_id,
            )
        parts.append(CreditPart(line_id, subtotal, _tax_for(balance, subtotal)))
    return parts


def credit_amount(balances: Sequence[LineBalance], gross: int) -> list[CreditPart]:
    """Credit `gross` (tax included) across the lines, in proportion to what is left of them.

    Raises:
        CreditRefused: `gross` not positive, or more than what is left of the invoice.
    """
    if gross <= 0:
        raise CreditRefused("the credit amount must be positive", reason="invalid")
    left = sum(balance.remaining for balance in balances)
    if gross > left:
        raise CreditRefused(f"the invoice has {left} left to credit, not {gross}", reason="exceeds")
    parts = []
    for balance, share in zip(
        balances, allocate(gross, [balance.remaining for balance in balances]), strict=True
    ):
        if share == 0:
            continue
        if share == balance.remaining:
            subtotal, tax = balance.remaining_subtotal, balance.remaining_tax
        else:
            subtotal = prorate(share, balance.remaining_subtotal, balance.remaining)
            tax = share - subtotal
            if tax > balance.remaining_tax:
                tax = balance.remaining_tax
                subtotal = share - tax
        parts.append(CreditPart(balance.line_id, subtotal, tax))
    return parts
