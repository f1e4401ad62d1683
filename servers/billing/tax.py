"""Tax: the provider interface, the sandbox provider, and a remote tax API's client.

The sandbox taxes from a jurisdiction rate table (`tax_rates.json`): a rate per
jurisdiction and tax code ("" is the standard rate; "reduced", "zero"; "exempt"
is never taxed), prices exclusive or inclusive of tax, and exemptions by the
customer's tax id — an EU VAT number from another EU country than the seller's
is reverse-charged, listed ids are exempt. Each line is taxed and rounded on its
own (half up), so a document's tax is the sum of its lines'.

An outage is simulated with `SandboxTaxProvider.outage` (chaos tests, and the
operators' drill): the provider then raises `TaxUnavailable`, as a remote one
would on a timeout.

`HttpTaxProvider` taxes through a remote tax API instead (`CONDUCTOR_TAX_URL`):
`POST {url}/v1/tax/calculate` with a `CalculationRequest`, answered with a
`CalculationAnswer`. Both ends read and write that JSON through the models here;
`servers.billing.tax_api` serves the sandbox over it, so the chaos suite can make
the tax provider fail or time out from outside the servers. Amounts are integers
of minor units and rates decimal strings, never floats.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from servers.billing.money import MAX_MINOR_UNITS, apply_rate, parse_rate, split_inclusive
from servers.billing.money import currency as iso_currency
from servers.logs import url_origin

logger = logging.getLogger(__name__)

Mode = Literal["exclusive", "inclusive"]
RATES_FILE = Path(__file__).with_name("tax_rates.json")
_EU_VAT = re.compile(r"^(?P<country>[A-Z]{2})[0-9A-Z]{8,12}$")

#: Where the remote tax API calculates, under its base URL.
CALCULATE_PATH = "/v1/tax/calculate"
#: The reasons of the API's refusals (`Refusal.error`).
INVALID_REQUEST = "invalid_request"
UNKNOWN_JURISDICTION = "unknown_jurisdiction"
UNAVAILABLE = "unavailable"
#: Longest message of the API's that is passed on (it reaches the tenant's alerts).
_MAX_MESSAGE = 200


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
    """What billing taxes through: the platform's rate table, and calculations."""

    def rate(self, jurisdiction: str, tax_code: str = "") -> Decimal:
        """The rate of `tax_code` in `jurisdiction` (checks a profile's jurisdiction).

        Raises:
            UnknownJurisdiction: The rate table has no such jurisdiction or tax code.
        """
        ...

    async def calculate(
        self,
        lines: Sequence[LineToTax],
        *,
        jurisdiction: str,
        customer_tax_id: str,
        mode: Mode,
        currency: str,
    ) -> TaxCalculation:
        """Tax `lines` for a customer in `jurisdiction`.

        Raises:
            TaxUnavailable: The provider did not answer; nothing was taxed.
            UnknownJurisdiction: The provider has no rates for the jurisdiction or a tax code.
        """
        ...

    async def aclose(self) -> None:
        """Release what the provider holds (its connections); it is not used afterwards."""
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

    async def aclose(self) -> None:
        """Nothing to release: the sandbox holds no connections."""


# -- the remote tax API: its JSON, and its client ----------------------------------------------


class _TooLarge(Exception):
    """An answer past MAX_BODY_BYTES."""


class _Strict(BaseModel):
    """What the API accepts: exactly these fields, each of exactly its JSON type."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


#: Bounds of the API's JSON, both ways: a body's bytes, its lines, a name's characters.
MAX_BODY_BYTES = 1 << 20
MAX_LINES = 1000
MAX_NAME = 200


class RequestLine(_Strict):
    """One line to tax in a `CalculationRequest` (see `LineToTax`)."""

    reference: str = Field(max_length=MAX_NAME)
    amount: int = Field(ge=-MAX_MINOR_UNITS, le=MAX_MINOR_UNITS)
    tax_code: str = Field(max_length=MAX_NAME)


class CalculationRequest(_Strict):
    """The body of `POST /v1/tax/calculate`: the arguments of `TaxProvider.calculate`."""

    lines: list[RequestLine] = Field(max_length=MAX_LINES)
    jurisdiction: str = Field(max_length=MAX_NAME)
    customer_tax_id: str = Field(max_length=MAX_NAME)
    mode: Mode
    currency: str = Field(max_length=MAX_NAME)

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        return iso_currency(value)

    @classmethod
    def of(
        cls,
        lines: Sequence[LineToTax],
        *,
        jurisdiction: str,
        customer_tax_id: str,
        mode: Mode,
        currency: str,
    ) -> CalculationRequest:
        """The request a client sends; not checked here (the API checks what it receives)."""
        return cls.model_construct(
            lines=[
                RequestLine.model_construct(
                    reference=line.reference, amount=line.amount, tax_code=line.tax_code
                )
                for line in lines
            ],
            jurisdiction=jurisdiction,
            customer_tax_id=customer_tax_id,
            mode=mode,
            currency=currency,
        )

    def lines_to_tax(self) -> list[LineToTax]:
        """The lines, as a provider takes them."""
        return [LineToTax(line.reference, line.amount, line.tax_code) for line in self.lines]


class _Answer(BaseModel):
    """What a client reads of an answer: these fields, each of its JSON type; others ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class AnswerLine(_Answer):
    """One taxed line of a `CalculationAnswer` (see `TaxedLine`); the rate a decimal string."""

    reference: str
    jurisdiction: str
    rate: str
    taxable: int = Field(ge=-MAX_MINOR_UNITS, le=MAX_MINOR_UNITS)
    tax: int = Field(ge=-MAX_MINOR_UNITS, le=MAX_MINOR_UNITS)
    exemption: str


class CalculationAnswer(_Answer):
    """The body of a 200 answer to `POST /v1/tax/calculate` (see `TaxCalculation`)."""

    lines: list[AnswerLine]
    jurisdiction: str
    rate: str
    mode: Mode
    provider_reference: str

    @classmethod
    def of(cls, calculation: TaxCalculation) -> CalculationAnswer:
        """The answer that carries `calculation`."""
        return cls(
            lines=[
                AnswerLine(
                    reference=line.reference,
                    jurisdiction=line.jurisdiction,
                    rate=str(line.rate),
                    taxable=line.taxable,
                    tax=line.tax,
                    exemption=line.exemption,
                )
                for line in calculation.lines
            ],
            jurisdiction=calculation.jurisdiction,
            rate=str(calculation.rate),
            mode=calculation.mode,
            provider_reference=calculation.provider_reference,
        )

    def calculation(self) -> TaxCalculation:
        """The calculation the answer carries.

        Raises:
            ValueError: A rate is not a decimal string in [0, 1).
        """
        return TaxCalculation(
            tuple(
                TaxedLine(
                    line.reference,
                    line.jurisdiction,
                    parse_rate(line.rate),
                    line.taxable,
                    line.tax,
                    line.exemption,
                )
                for line in self.lines
            ),
            self.jurisdiction,
            parse_rate(self.rate),
            self.mode,
            self.provider_reference,
        )


class Refusal(_Answer):
    """The body of an answer other than 200: the reason (`INVALID_REQUEST`, ...) and why."""

    error: str
    message: str


class HttpTaxProvider:
    """Taxes through a remote tax API (`CALCULATE_PATH` under `url`; see `servers.billing.tax_api`).

    Jurisdictions and tax codes are checked against the local rate table
    (`rate`), so setting a profile calls nothing; calculations are the API's.
    Whatever keeps a usable answer from arriving within `timeout_s` — a timeout,
    a refused connection, an HTTP error, a body that is not a calculation of the
    lines sent — is `TaxUnavailable`: the invoice waits tax_pending and is retried,
    nothing is guessed. One connection pool serves every calculation until `aclose`.

    Args:
        url: The API's base URL, http:// or https://.
        timeout_s: Longest a calculation may take, connecting included.
        table: The rate table `rate` reads; defaults to `tax_rates.json`.
    """

    def __init__(self, url: str, *, timeout_s: float, table: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._rates = SandboxTaxProvider(table)
        self._client = httpx.AsyncClient(timeout=timeout_s)

    def rate(self, jurisdiction: str, tax_code: str = "") -> Decimal:
        """The rate of `tax_code` in `jurisdiction`, from the local rate table.

        Raises:
            UnknownJurisdiction: Not in the table.
        """
        return self._rates.rate(jurisdiction, tax_code)

    async def calculate(
        self,
        lines: Sequence[LineToTax],
        *,
        jurisdiction: str,
        customer_tax_id: str,
        mode: Mode,
        currency: str,
    ) -> TaxCalculation:
        """Ask the API to tax `lines` for a customer in `jurisdiction`.

        Raises:
            TaxUnavailable: No usable answer within `timeout_s`.
            UnknownJurisdiction: The API has no rates for the jurisdiction or a tax code.
        """
        request = CalculationRequest.of(
            lines,
            jurisdiction=jurisdiction,
            customer_tax_id=customer_tax_id,
            mode=mode,
            currency=currency,
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                status, body = await self._post(request.model_dump_json())
        except (TimeoutError, httpx.TimeoutException):
            raise self._unavailable(
                f"the tax API did not answer within {self.timeout_s:g} s"
            ) from None
        except httpx.HTTPError as error:
            raise self._unavailable(
                f"the tax API cannot be reached ({type(error).__name__})", error
            ) from None
        except _TooLarge:
            raise self._unavailable(
                f"the tax API's answer is larger than {MAX_BODY_BYTES} bytes"
            ) from None
        return self._calculation(status, body, [line.reference for line in lines], mode)

    async def _post(self, payload: str) -> tuple[int, bytes]:
        """POST the request; (status, body), the body read up to MAX_BODY_BYTES."""
        async with self._client.stream(
            "POST",
            self.url + CALCULATE_PATH,
            content=payload,
            headers={"content-type": "application/json"},
        ) as response:
            body = bytearray()
            async for piece in response.aiter_bytes():
                body += piece
                if len(body) > MAX_BODY_BYTES:
                    raise _TooLarge
            return response.status_code, bytes(body)

    def _calculation(
        self, status: int, body: bytes, references: list[str], mode: Mode
    ) -> TaxCalculation:
        if status != httpx.codes.OK:
            try:
                refusal = Refusal.model_validate_json(body)
            except ValueError:
                refusal = None
            if (
                status == httpx.codes.UNPROCESSABLE_ENTITY
                and refusal is not None
                and refusal.error == UNKNOWN_JURISDICTION
            ):
                raise UnknownJurisdiction(refusal.message[:_MAX_MESSAGE])
            said = f": {refusal.message[:_MAX_MESSAGE]}" if refusal is not None else ""
            raise self._unavailable(f"the tax API answered HTTP {status}{said}")
        try:
            calculation = CalculationAnswer.model_validate_json(body).calculation()
        except ValueError as error:  # pydantic's ValidationError is one
            raise self._unavailable(
                "the tax API's answer is not a tax calculation", error
            ) from None
        if [line.reference for line in calculation.lines] != references or calculation.mode != mode:
            raise self._unavailable("the tax API's answer is not a calculation of the lines sent")
        return calculation

    def _unavailable(self, why: str, error: Exception | None = None) -> TaxUnavailable:
        # The reason goes to the tenant's alert; where the API is, and the details, to the log.
        details = f" ({str(error)[:300]})" if error is not None else ""
        logger.warning("tax API %s: %s%s", url_origin(self.url), why, details)
        return TaxUnavailable(why)

    async def aclose(self) -> None:
        """Close the connections to the API."""
        await self._client.aclose()
