"""Tax: the provider interface and the sandbox provider (no production remittance).

The sandbox taxes from a jurisdiction rate table (`tax_rates.json`): a rate per
jurisdiction and tax code ("" is the standard rate; "reduced", "zero"; "exempt"
is never taxed), prices exclusive or inclusive of tax, and exemptions by the
customer's tax id — an EU VAT number from another EU country than the seller's
is reverse-charged, listed ids are exempt. Each line is taxed and rounded on its
own (half up), so a document's tax is the sum of its lines'.

An outage is simulated with `SandboxTaxProvider.outage` (chaos tests, and the
operators' drill): the provider then raises `TaxUnavailable`, as a remote one
would on a timeout.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

from servers.billing.money import apply_rate, parse_rate, split_inclusive

Mode = Literal["exclusive", "inclusive"]
RATES_FILE = Path(__file__).with_name("tax_rates.json")
_EU_VAT = re.compile(r"^(?P<country>[A-Z]{2})[0-9A-Z]{8,12}$")


class TaxUnavailable(Exception):
    """The tax provider did not answer; nothing was taxed."""


class UnknownJurisdiction(ValueError):
    """The rate table has no such jurisdiction or tax code."""


@dataclass(frozen=True)
class LineToTax:
    """One amount to tax: exclusive or inclusive of tax, as the request's mode says."""

    reference: str
    amount: int
    tax_code: str = ""


@dataclass(frozen=True)
class TaxedLine:
    """A line taxed: net (taxable) amount, tax, and why it is zero when exempt."""

    reference: str
    jurisdiction: str
    rate: Decimal
    taxable: int
    tax: int
    exemption: str = ""

    @property
    def total(self) -> int:
        """Net plus tax."""
        return self.taxable + self.tax


@dataclass(frozen=True)
class TaxCalculation:
    """Every line taxed, the document sums, and the provider's reference."""

    lines: tuple[TaxedLine, ...]
    jurisdiction: str
    rate: Decimal
    mode: Mode
    provider_reference: str

    @property
    def subtotal(self) -> int:
        """Sum of the lines' net amounts."""
        return sum(line.taxable for line in self.lines)

    @property
    def tax(self) -> int:
        """Sum of the lines' tax."""
        return sum(line.tax for line in self.lines)

    @property
    def total(self) -> int:
        """Subtotal plus tax."""
        return self.subtotal + self.tax


class TaxProvider(Protocol):
    """Calculates tax; raises `TaxUnavailable` when it cannot answer."""

    async def calculate(
        self,
        lines: Sequence[LineToTax],
        *,
        jurisdiction: str,
        customer_tax_id: str,
        mode: Mode,
        currency: str,
    ) -> TaxCalculation:
        """Tax `lines` for a customer in `jurisdiction`."""
        ...


class SandboxTaxProvider:
    """The rate-table provider; deterministic (same request, same reference).

    Args:
        table: The parsed rate table; defaults to `tax_rates.json`.
    """

    def __init__(self, table: dict[str, Any] | None = None) -> None:
        self.table = table or json.loads(RATES_FILE.read_text())
        self.outage = False
        self.calls = 0

    def rate(self, jurisdiction: str, tax_code: str = "") -> Decimal:
        """The rate of `tax_code` in `jurisdiction`.

        Raises:
            UnknownJurisdiction: Not in the table.
        """
        codes = self.table["jurisdictions"].get(jurisdiction)
        if codes is None:
            raise UnknownJurisdiction(f"no tax rates for jurisdiction {jurisdiction!r}")
        if tax_code == "exempt":
            return Decimal(0)
        key = tax_code or "standard"
        if key not in codes:
            raise UnknownJurisdiction(f"{jurisdiction} has no {key!r} rate")
        return parse_rate(codes[key])

    def exemption(self, jurisdiction: str, customer_tax_id: str) -> str:
        """Why the customer pays no tax here ("" when they do)."""
        if customer_tax_id in self.table["exempt_tax_ids"]:
            return "exempt_customer"
        match = _EU_VAT.match(customer_tax_id)
        eu = set(self.table["eu_countries"])
        if (
            match
            and match["country"] in eu
            and jurisdiction in eu
            and match["country"] != self.table["seller_country"]
        ):
            return "reverse_charge"
        return ""

    async def calculate(
        self,
        lines: Sequence[LineToTax],
        *,
        jurisdiction: str,
        customer_tax_id: str,
        mode: Mode,
        currency: str,
    ) -> TaxCalculation:
        """Tax each line on its own, rounding half up."""
        self.calls += 1
        if self.outage:
            raise TaxUnavailable("the sandbox tax provider is unavailable (simulated outage)")
        headline = self.rate(jurisdiction)
        customer_exemption = self.exemption(jurisdiction, customer_tax_id)
        taxed = []
        for line in lines:
            exemption = customer_exemption or ("exempt" if line.tax_code == "exempt" else "")
            rate = Decimal(0) if exemption else self.rate(jurisdiction, line.tax_code)
            if mode == "inclusive":
                taxable, tax = split_inclusive(line.amount, rate)
            else:
                taxable, tax = line.amount, apply_rate(line.amount, rate)
            taxed.append(TaxedLine(line.reference, jurisdiction, rate, taxable, tax, exemption))
        request = json.dumps(
            [[line.reference, line.amount, line.tax_code] for line in lines]
            + [jurisdiction, customer_tax_id, mode, currency],
            separators=(",", ":"),
        )
        reference = "sbx_" + hashlib.sha256(request.encode()).hexdigest()[:20]
        return TaxCalculation(
            tuple(taxed),
            jurisdiction,
            Decimal(0) if customer_exemption else headline,
            mode,
            reference,
        )
