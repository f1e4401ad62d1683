"""Billing GA acceptance: drift, credit notes and refunds, tax fields, the GA rollout limit.

The seed's pack: "reconciliation drift ≤ $0.01/day; credit notes and refunds
correct; tax fields present; rollout ≤ 8 GA". The lane bills a tenant of its own
from scratch, as a client would: it enrols the tenant as a *pilot* (never GA,
whose eight places are the operators' to give), sets its billing profile (USD,
New York sales tax, exclusive), records usage on the default price book's
meters, finalizes the month's invoice, pays it, credits part of a line and
refunds the credit, tries to over-credit and over-refund, retries with the same
idempotency keys, reconciles every day it touched, and reads the rollout and
its whole history. Every figure is checked against the arithmetic the contract
and ADR 0009 state (whole-quantity rating, tax per line rounded half up, credit
tax prorated to the credited share, due = total - credited - (paid - refunded)),
never against the service's own code.

Signed documents (the finalized invoice, the credit note) are checked as an
auditor would: the signed payload must say what the API says, and the Ed25519
signature must verify against the billing keys the deployment publishes
(`GetJwks`, public).

Raw results: `reconciliation.json` (one entry per day, for the drift plot),
`invoice.json`, `credit_note.json`, `refund.json`, `payment.json` (as the API
returned them), `verification.json`, `tax.json` (the sandbox calculations) and
`rollout.json` (every tenant's stage and the full change history).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import AsyncClient, ConductorError, ErrorReason
from intelgraph.sdk import billing as pb
from intelgraph.sdk.money import Money

from servers.acceptance.checks import Context, Criterion, persisted_operations, refusal

LANE = "billing"

#: The acceptance tenant's billing facts: dollars, so "$0.01" is one minor unit.
CURRENCY = "USD"
JURISDICTION = "US-NY"
#: Drift allowed per day, in minor units of CURRENCY ($0.01).
DRIFT_LIMIT = 1
#: Minor units per major unit of CURRENCY.
MINOR_PER_MAJOR = 100
#: The seed's limit on GA tenants.
MAX_GA = 8


DRIFT = Criterion("reconciliation drift per day", "≤ $0.01/day")
DOCUMENTS = Criterion(
    "credit notes and refunds correct",
    "every amount as arithmetic says; over-credit, over-refund refused; retries idempotent",
)
TAX = Criterion(
    "tax fields present",
    "jurisdiction, rate, mode, per-line and total tax present; tax = rate * taxable, half up",
)
ROLLOUT = Criterion(
    "rollout at most 8 GA tenants",
    "GA ≤ 8 = max_ga_tenants; each tenant's latest change is its stage",
)

TENANT_SCOPES = ("billing.read", "billing.write", "billing.usage.write", "admin.write")
OPERATOR_SCOPES = ("platform.admin",)
TENANT_SUBJECT = "acceptance-billing"
OPERATOR_SUBJECT = "acceptance-operator"
ENROL_REASON = "acceptance pack: billing lane (pilot)"

#: Usage the lane records: (meter, quantities of its events). Several events per
#: meter prove a line is rated on its whole quantity (graphql.operation: 3 * 4,115
#: at 5 per 1,000 is 61.725 → 62, where rating each event would give 63).
USAGE: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("api.call", (1000, 234)),
    ("graphql.operation", (4115, 4115, 4115)),
    ("rag.bytes", (3_456_789,)),
    ("analytics.pack_run", (17,)),
)
#: What the credit note takes off the api.call line, before tax.
CREDITED_SUBTOTAL = 500

RECONCILIATION_QUERY = """
query Reconciliation($day: String!) {
  reconciliationReport(day: $day) {
    report { day drift { minorUnits currencyCode } alert }
  }
}
"""


# -- findings --------------------------------------------------------------------------------


@dataclass
class Findings:
    """What a check compared, and what did not hold (one sentence each)."""

    compared: int = 0
    problems: list[str] = field(default_factory=list)

    def expect(self, holds: bool, problem: str) -> bool:
        """Count one expectation; remember `problem` if it does not hold."""
        self.compared += 1
        if not holds:
            self.problems.append(problem)
        return holds

    def equal(self, what: str, actual: object, expected: object) -> bool:
        """Expect `actual == expected`."""
        return self.expect(actual == expected, f"{what} is {actual!r}, expected {expected!r}")

    def refused(
        self,
        what: str,
        error: ConductorError | None,
        code: grpc.StatusCode,
        reason: ErrorReason,
    ) -> bool:
        """Expect a call to have been refused with `code` and `reason`."""
        if error is None:
            return self.expect(False, f"{what} was accepted, expected {code.name} {reason.name}")
        return self.expect(
            (error.code, error.reason) == (code, reason),
            f"{what} was refused with {error.code.name} {error.reason.name}, "
            f"expected {code.name} {reason.name}",
        )

    def extend(self, problems: Iterable[str]) -> None:
        """Count a pure judgment's problems (each a failed expectation)."""
        for problem in problems:
            self.expect(False, problem)

    @property
    def passed(self) -> bool:
        """Whether everything held."""
        return not self.problems

    def measured(self) -> str:
        """The count of expectations that held, of all: "12/12 as expected"."""
        return f"{self.compared - len(self.problems)}/{self.compared} as expected"

    def detail(self, done: str) -> str:
        """What was done, then the first problems."""
        if self.passed:
            return done
        return f"{done} Problems: " + "; ".join(self.problems[:5])


# -- arithmetic as the contract states it ------------------------------------------------------


def round_half_up(value: Fraction) -> int:
    """`value` to an integer, halves away from zero (ADR 0009's one rounding rule).

    >>> round_half_up(Fraction(61725, 1000)), round_half_up(Fraction(-5, 2))
    (62, -3)
    """
    whole, remainder = divmod(abs(value.numerator), value.denominator)
    if 2 * remainder >= value.denominator:
        whole += 1
    return whole if value >= 0 else -whole


def rated(quantity: int, unit_price: int, per_quantity: int) -> int:
    """A line's subtotal: its whole quantity at `unit_price` per `per_quantity`, rounded once.

    >>> rated(12345, 5, 1000)
    62
    """
    return round_half_up(Fraction(quantity * unit_price, per_quantity or 1))


def parse_rate(text: str) -> Fraction | None:
    """A decimal-string rate as an exact fraction; None when it is not one."""
    try:
        rate = Decimal(text)
    except InvalidOperation:
        return None
    return Fraction(rate) if rate.is_finite() and 0 <= rate < 1 else None


def tax_on(taxable: int, rate: Fraction) -> int:
    """Tax on an exclusive amount: taxable * rate, rounded half up.

    >>> tax_on(1234, Fraction(8875, 100000))
    110
    """
    return round_half_up(taxable * rate)


# -- judgments (pure: the tests feed them bad data) ------------------------------------------


@dataclass(frozen=True)
class DriftJudgment:
    """The worst day's drift against the limit."""

    passed: bool
    worst_minor_units: int
    worst_day: str
    days: int

    @property
    def measured(self) -> str:
        """The worst drift in dollars: "$0.00 (worst of 1 day)"."""
        dollars = Fraction(self.worst_minor_units, MINOR_PER_MAJOR)
        return f"${float(dollars):.2f} (worst of {self.days} day{'s' * (self.days != 1)})"


def judge_drift(days: Sequence[Mapping[str, Any]], limit: int = DRIFT_LIMIT) -> DriftJudgment:
    """Judge reconciliation entries (`day`, `drift_minor_units`) against `limit` per day.

    No day reconciled is a failure: there is nothing to show.

    >>> judge_drift([{"day": "2026-01-01", "drift_minor_units": -2}]).passed
    False
    """
    if not days:
        return DriftJudgment(False, 0, "", 0)
    worst = max(days, key=lambda entry: abs(int(entry["drift_minor_units"])))
    magnitude = abs(int(worst["drift_minor_units"]))
    return DriftJudgment(magnitude <= limit, magnitude, str(worst["day"]), len(days))


def tax_problems(invoice: pb.Invoice, jurisdiction: str) -> list[str]:
    """What is missing or inconsistent in a finalized invoice's tax fields.

    The contract's fields (TaxDetails: jurisdiction, rate, mode, amount, one
    TaxLine per invoice line, provider reference) must be present, and the
    figures must agree: each line's tax is its taxable amount * its rate rounded
    half up (zero when exempt), the lines' tax sums to the invoice's, and
    subtotal + tax = total on every line and on the invoice.
    """
    problems = _tax_details_problems(invoice, jurisdiction)
    breakdown = {line.line_id: line for line in invoice.tax_details.breakdown}
    if set(breakdown) != {line.id for line in invoice.lines} or len(breakdown) != len(
        invoice.tax_details.breakdown
    ):
        problems.append("the tax breakdown does not name every invoice line exactly once")
    for line in invoice.lines:
        taxed = breakdown.get(line.id)
        if taxed is not None:
            problems += _tax_line_problems(line, taxed, jurisdiction)
    return problems + _tax_sum_problems(invoice)


def _tax_details_problems(invoice: pb.Invoice, jurisdiction: str) -> list[str]:
    details = invoice.tax_details
    problems = []
    if details.jurisdiction != jurisdiction:
        problems.append(f"tax jurisdiction is {details.jurisdiction!r}, expected {jurisdiction!r}")
    if parse_rate(details.rate) is None:
        problems.append(f"headline tax rate {details.rate!r} is not a decimal rate")
    if details.mode == pb.TAX_MODE_UNSPECIFIED:
        problems.append("tax mode is unspecified")
    if not details.provider_reference:
        problems.append("no tax provider reference")
    if not details.HasField("amount") or details.amount.minor_units != invoice.tax.minor_units:
        problems.append(
            f"tax_details.amount {details.amount.minor_units} is not the invoice tax "
            f"{invoice.tax.minor_units}"
        )
    return problems


def _tax_line_problems(line: pb.InvoiceLine, taxed: pb.TaxLine, jurisdiction: str) -> list[str]:
    problems = []
    if taxed.jurisdiction != jurisdiction:
        problems.append(f"line {line.meter}: jurisdiction {taxed.jurisdiction!r}")
    rate = parse_rate(taxed.rate)
    if rate is None:
        return [*problems, f"line {line.meter}: rate {taxed.rate!r} is not a decimal rate"]
    expected = 0 if taxed.exemption else tax_on(line.subtotal.minor_units, rate)
    figures = (taxed.taxable_amount.minor_units, taxed.tax_amount.minor_units, line.tax.minor_units)
    if figures != (line.subtotal.minor_units, expected, expected):
        problems.append(
            f"line {line.meter}: {line.subtotal.minor_units} at {taxed.rate} should carry tax "
            f"{expected}; the breakdown says {figures[1]} on {figures[0]}, the line {figures[2]}"
        )
    if line.subtotal.minor_units + line.tax.minor_units != line.total.minor_units:
        problems.append(f"line {line.meter}: subtotal + tax != total")
    return problems


def _tax_sum_problems(invoice: pb.Invoice) -> list[str]:
    problems = []
    if sum(line.tax.minor_units for line in invoice.lines) != invoice.tax.minor_units:
        problems.append("the lines' tax does not sum to the invoice's tax")
    if sum(line.subtotal.minor_units for line in invoice.lines) != invoice.subtotal.minor_units:
        problems.append("the lines' subtotals do not sum to the invoice's subtotal")
    if invoice.subtotal.minor_units + invoice.tax.minor_units != invoice.total.minor_units:
        problems.append("invoice subtotal + tax != total")
    currencies = {money.currency_code for money in (invoice.subtotal, invoice.tax, invoice.total)}
    if len(currencies) != 1:
        problems.append(f"the invoice's amounts are in several currencies: {sorted(currencies)}")
    return problems


def calculation_problems(
    request: pb.CalculateTaxRequest, calculation: pb.TaxCalculation
) -> list[str]:
    """Where a CalculateTax answer is not the arithmetic of its request.

    Exclusive: tax = amount * rate, rounded half up. Inclusive: net = amount /
    (1 + rate), rounded half up, tax the rest. Exempt lines carry no tax.
    """
    problems: list[str] = []
    inclusive = request.mode == pb.TAX_MODE_INCLUSIVE
    answered = {line.line_id: line for line in calculation.lines}
    for asked in request.lines:
        line = answered.get(asked.reference)
        if line is None:
            problems.append(f"{asked.reference}: not in the answer")
            continue
        rate = parse_rate(line.rate)
        if rate is None:
            problems.append(f"{asked.reference}: rate {line.rate!r} is not a decimal rate")
            continue
        amount = asked.amount.minor_units
        if line.exemption:
            expected = (amount, 0)
        elif inclusive:
            net = round_half_up(Fraction(amount) / (1 + rate))
            expected = (net, amount - net)
        else:
            expected = (amount, tax_on(amount, rate))
        actual = (line.taxable_amount.minor_units, line.tax_amount.minor_units)
        if actual != expected:
            problems.append(
                f"{asked.reference}: {amount} at {line.rate} gave (taxable, tax) {actual}, "
                f"expected {expected}"
            )
        if line.jurisdiction != request.jurisdiction:
            problems.append(f"{asked.reference}: jurisdiction {line.jurisdiction!r}")
    tax = sum(line.tax_amount.minor_units for line in calculation.lines)
    subtotal = sum(line.taxable_amount.minor_units for line in calculation.lines)
    if (calculation.subtotal.minor_units, calculation.tax.minor_units) != (subtotal, tax):
        problems.append("the calculation's sums are not the sums of its lines")
    if calculation.total.minor_units != subtotal + tax:
        problems.append("the calculation's subtotal + tax != total")
    if not calculation.provider_reference:
        problems.append("no provider reference")
    return problems


@dataclass(frozen=True)
class RolloutJudgment:
    """GA tenants against the limit, and each enrolled tenant's history against its stage."""

    ga: int
    max_ga: int
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """At most eight GA, the limit is eight, every history consistent."""
        return not self.problems

    @property
    def measured(self) -> str:
        """GA tenants of the limit: "3 GA of 8"."""
        return f"{self.ga} GA of {self.max_ga}"


def judge_rollout(
    tenants: Sequence[pb.TenantRollout],
    max_ga: int,
    changes: Sequence[pb.RolloutChange],
) -> RolloutJudgment:
    """Judge GetRollout and the full ListRolloutChanges history (newest first).

    Holds when: max_ga is the seed's 8; at most max_ga tenants are GA; every
    enrolled tenant has a history whose changes say who and when, chain
    (each change starts where the previous one ended, the first enrols) and end
    at the tenant's current stage; no change names a tenant not enrolled.
    """
    problems: list[str] = []
    ga = sum(1 for tenant in tenants if tenant.stage == pb.ROLLOUT_STAGE_GA)
    if max_ga != MAX_GA:
        problems.append(f"max_ga_tenants is {max_ga}, the seed says {MAX_GA}")
    if ga > max_ga:
        problems.append(f"{ga} tenants are GA, more than {max_ga}")
    history: dict[str, list[pb.RolloutChange]] = {}
    for change in changes:
        history.setdefault(change.tenant_id, []).append(change)
        if not change.changed_by or not change.HasField("changed_at"):
            problems.append(f"change {change.id} does not say who made it and when")
    stages = {tenant.tenant_id: tenant.stage for tenant in tenants}
    for tenant_id, stage in stages.items():
        newest_first = history.get(tenant_id, [])
        if not newest_first:
            problems.append(f"tenant {tenant_id} has no rollout history")
            continue
        if newest_first[0].to_stage != stage:
            problems.append(
                f"tenant {tenant_id} is {pb.RolloutStage.Name(stage)} but its latest change "
                f"went to {pb.RolloutStage.Name(newest_first[0].to_stage)}"
            )
        oldest_first = newest_first[::-1]
        if oldest_first[0].from_stage != pb.ROLLOUT_STAGE_UNSPECIFIED:
            problems.append(f"tenant {tenant_id}'s first change is not its enrolment")
        for earlier, later in itertools.pairwise(oldest_first):
            if later.from_stage != earlier.to_stage:
                problems.append(
                    f"tenant {tenant_id}'s history jumps from "
                    f"{pb.RolloutStage.Name(earlier.to_stage)} to a change from "
                    f"{pb.RolloutStage.Name(later.from_stage)}"
                )
    problems.extend(
        f"tenant {tenant_id} has changes but is not enrolled"
        for tenant_id in sorted(set(history) - set(stages))
    )
    return RolloutJudgment(ga, max_ga, tuple(problems))


# -- signed documents ------------------------------------------------------------------------


def verify_signature(
    payload: str, signature: str, key_id: str, jwks: Sequence[Mapping[str, str]]
) -> tuple[bool, str]:
    """Check an Ed25519 signature over `payload`'s bytes with the JWKS key `key_id`.

    Returns:
        Whether it verified, and why not (or "verified").
    """
    jwk = next((key for key in jwks if key.get("kid") == key_id), None)
    if jwk is None:
        return False, f"no published key {key_id!r}"
    if (jwk.get("kty"), jwk.get("crv")) != ("OKP", "Ed25519"):
        return False, f"key {key_id!r} is not an Ed25519 key"
    try:
        raw = base64.urlsafe_b64decode(jwk.get("x", "") + "=" * (-len(jwk.get("x", "")) % 4))
        key = Ed25519PublicKey.from_public_bytes(raw)
        key.verify(base64.b64decode(signature, validate=True), payload.encode())
    except (ValueError, binascii.Error):
        return False, "the key or the signature is malformed"
    except InvalidSignature:
        return False, "the signature does not match the signed payload"
    return True, "verified"


def signed_problems(kind: str, payload: str, signature: str, key_id: str) -> list[str]:
    """What is wrong with a document's signature fields before any key is involved."""
    problems = []
    if not key_id:
        problems.append(f"the {kind} names no signing key")
    try:
        if len(base64.b64decode(signature, validate=True)) != 64:
            problems.append(f"the {kind}'s signature is not 64 bytes (Ed25519)")
    except (ValueError, binascii.Error):
        problems.append(f"the {kind}'s signature is not base64")
    try:
        json.loads(payload)
    except ValueError:
        problems.append(f"the {kind}'s signed payload is not JSON")
    return problems


def invoice_payload_problems(invoice: pb.Invoice) -> list[str]:
    """Where the invoice's signed payload says something else than the API."""
    try:
        signed = json.loads(invoice.signed_payload)
    except ValueError:
        return ["the invoice's signed payload is not JSON"]
    said = {
        "type": "invoice",
        "id": invoice.id,
        "number": invoice.number,
        "currency": invoice.total.currency_code,
        "subtotal": invoice.subtotal.minor_units,
        "tax": invoice.tax.minor_units,
        "total": invoice.total.minor_units,
        "lines": sorted(
            (line.id, line.subtotal.minor_units, line.tax.minor_units, line.total.minor_units)
            for line in invoice.lines
        ),
        "jurisdiction": invoice.tax_details.jurisdiction,
        "rate": invoice.tax_details.rate,
    }
    payload_lines = signed.get("lines") or []
    in_payload = {
        **{key: signed.get(key) for key in ("type", "id", "number", "currency")},
        **{key: signed.get(key) for key in ("subtotal", "tax", "total")},
        "lines": sorted(
            (line.get("id"), line.get("subtotal"), line.get("tax"), line.get("total"))
            for line in payload_lines
        ),
        "jurisdiction": (signed.get("tax_details") or {}).get("jurisdiction"),
        "rate": (signed.get("tax_details") or {}).get("rate"),
    }
    return [
        f"the invoice's signed {key} is {in_payload[key]!r}, the API says {value!r}"
        for key, value in said.items()
        if in_payload[key] != value
    ]


def credit_note_payload_problems(note: pb.CreditNote, invoice: pb.Invoice) -> list[str]:
    """Where the credit note's signed payload says something else than the API."""
    try:
        signed = json.loads(note.signed_payload)
    except ValueError:
        return ["the credit note's signed payload is not JSON"]
    said = {
        "type": "credit_note",
        "id": note.id,
        "number": note.number,
        "invoice_id": invoice.id,
        "invoice_number": invoice.number,
        "subtotal": note.subtotal.minor_units,
        "tax": note.tax.minor_units,
        "total": note.total.minor_units,
        "lines": sorted(
            (line.invoice_line_id, line.subtotal.minor_units, line.tax.minor_units)
            for line in note.lines
        ),
    }
    in_payload = {key: signed.get(key) for key in said if key != "lines"}
    in_payload["lines"] = sorted(
        (line.get("invoice_line_id"), line.get("subtotal"), line.get("tax"))
        for line in signed.get("lines") or []
    )
    return [
        f"the credit note's signed {key} is {in_payload[key]!r}, the API says {value!r}"
        for key, value in said.items()
        if in_payload[key] != value
    ]


async def published_billing_keys(client: AsyncClient) -> list[dict[str, str]]:
    """The billing document keys the deployment publishes (every key that ever signed one)."""
    answer = await client.billing.get_jwks()
    keys: list[dict[str, str]] = json_format.MessageToDict(answer).get("keys", [])
    return keys


# -- the billing flow ------------------------------------------------------------------------


def usd(minor_units: int) -> Money:
    """An amount in the acceptance tenant's currency."""
    return Money(minor_units=minor_units, currency_code=CURRENCY)


def as_json(message: Message) -> dict[str, Any]:
    """A message as JSON data, its field names as in the contract (`billing verify` reads it)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def day_of(stamp: Timestamp) -> date:
    """The UTC day of a timestamp."""
    return stamp.ToDatetime(tzinfo=UTC).date()


@dataclass
class Billed:
    """What the lane's tenant was billed, and what it saw on the way.

    `refused` is the API error the flow stopped at, if it did not run to the end;
    the criteria that depend on it then fail naming it.
    """

    days: set[date] = field(default_factory=set)
    documents: Findings = field(default_factory=Findings)
    finalized: pb.Invoice | None = None
    credit_note: pb.CreditNote | None = None
    payment: pb.Payment | None = None
    refund: pb.Refund | None = None
    final: pb.Invoice | None = None
    refused: ConductorError | None = None

    @property
    def invoice(self) -> pb.Invoice:
        """The invoice as finalized (once `invoice_usage` has run)."""
        if self.finalized is None:
            raise LookupError("no invoice was finalized")
        return self.finalized

    def line(self, meter: str) -> pb.InvoiceLine:
        """The invoice's line of `meter`."""
        for line in self.invoice.lines:
            if line.meter == meter:
                return line
        raise LookupError(f"the invoice has no {meter} line")

    def issued_note(self) -> pb.CreditNote:
        """The credit note issued (once `credit` has run)."""
        if self.credit_note is None:
            raise LookupError("no credit note was issued")
        return self.credit_note


async def enrol(operator: AsyncClient, client: AsyncClient, tenant: uuid.UUID) -> None:
    """Enrol the tenant as a pilot (never GA) and bill it in dollars under New York tax."""
    await operator.billing.set_rollout(
        tenant_id=str(tenant), stage=pb.ROLLOUT_STAGE_PILOT, reason=ENROL_REASON
    )
    await client.billing.set_billing_profile(
        profile=pb.BillingProfile(
            currency_code=CURRENCY, jurisdiction=JURISDICTION, tax_mode=pb.TAX_MODE_EXCLUSIVE
        )
    )


async def invoice_usage(client: AsyncClient, billed: Billed) -> None:
    """Record the usage, finalize the month's invoice, check its rating."""
    prices = {price.meter: price for price in (await client.billing.get_price_book()).prices}
    draft_id = ""
    for meter, quantities in USAGE:
        for quantity in quantities:
            recorded = await client.billing.record_usage(
                event_id=f"acceptance-{uuid.uuid4()}", meter=meter, quantity=quantity
            )
            draft_id = recorded.event.invoice_id
            billed.days.add(day_of(recorded.event.recorded_at))
    finalized = (
        await client.billing.finalize_invoice(
            id=draft_id, idempotency_key=f"acceptance-finalize-{draft_id}"
        )
    ).invoice
    billed.finalized = finalized
    findings = billed.documents
    findings.equal(
        "invoice status",
        pb.InvoiceStatus.Name(finalized.status),
        pb.InvoiceStatus.Name(pb.INVOICE_STATUS_FINALIZED),
    )
    findings.expect(bool(finalized.number), "the finalized invoice has no number")
    if finalized.HasField("finalized_at"):
        billed.days.add(day_of(finalized.finalized_at))
    lines = {line.meter: line for line in finalized.lines}
    for meter, quantities in USAGE:
        line, price = lines.get(meter), prices.get(meter)
        if line is None or price is None:
            findings.expect(False, f"no invoice line or price for {meter}")
            continue
        findings.equal(f"{meter} quantity", line.quantity, sum(quantities))
        findings.equal(
            f"{meter} subtotal",
            line.subtotal.minor_units,
            rated(sum(quantities), price.unit_price.minor_units, price.per_quantity),
        )


async def bill(client: AsyncClient, billed: Billed) -> None:
    """Run the whole flow; an API refusal on the way stops it and is kept in `refused`."""
    run_id = uuid.uuid4().hex[:12]
    try:
        await invoice_usage(client, billed)
        await pay(client, billed, run_id)
        await credit(client, billed, run_id)
        await over_credit(client, billed)
        await refund(client, billed, run_id)
        await settle(client, billed)
    except ConductorError as error:
        billed.refused = error


async def pay(client: AsyncClient, billed: Billed, run: str) -> None:
    """Pay the invoice in full; a retry with the payment's key records nothing more."""
    invoice, findings = billed.invoice, billed.documents
    request = pb.RecordPaymentRequest(
        invoice_id=invoice.id,
        amount=invoice.total,
        reference="acceptance",
        idempotency_key=f"acceptance-pay-{run}",
    )
    payment = (await client.billing.record_payment(request)).payment
    again = (await client.billing.record_payment(request)).payment
    findings.equal("payment amount", payment.amount.minor_units, invoice.total.minor_units)
    findings.equal("payment retried with its key: id", again.id, payment.id)
    billed.payment = payment
    billed.days.add(day_of(payment.created_at))


async def credit(client: AsyncClient, billed: Billed, run: str) -> None:
    """Credit part of the api.call line (previewed first); a keyed retry gives the same note."""
    invoice, findings = billed.invoice, billed.documents
    line = billed.line("api.call")
    request = pb.CreateCreditNoteRequest(
        invoice_id=invoice.id,
        lines=[pb.CreditNoteLineInput(invoice_line_id=line.id, amount=usd(CREDITED_SUBTOTAL))],
        reason=pb.CREDIT_NOTE_REASON_PRODUCT_UNSATISFACTORY,
        memo="acceptance: part of the API calls",
        idempotency_key=f"acceptance-credit-{run}",
    )
    preview = (
        await client.billing.preview_credit_note(
            invoice_id=request.invoice_id,
            lines=request.lines,
            reason=request.reason,
            memo=request.memo,
        )
    ).credit_note
    note = (await client.billing.create_credit_note(request)).credit_note
    billed.credit_note = note
    billed.days.add(day_of(note.created_at))
    # The first credit of a line takes the line's tax * the credited share, half up.
    tax = round_half_up(
        Fraction(line.tax.minor_units * CREDITED_SUBTOTAL, line.subtotal.minor_units)
    )
    findings.equal("credit note subtotal", note.subtotal.minor_units, CREDITED_SUBTOTAL)
    findings.equal("credit note tax (line tax * credited share)", note.tax.minor_units, tax)
    findings.equal("credit note total", note.total.minor_units, CREDITED_SUBTOTAL + tax)
    findings.equal(
        "credit note status",
        pb.CreditNoteStatus.Name(note.status),
        pb.CreditNoteStatus.Name(pb.CREDIT_NOTE_STATUS_ISSUED),
    )
    findings.equal(
        "preview against the issued note's lines",
        [(p.invoice_line_id, p.subtotal.minor_units, p.tax.minor_units) for p in preview.lines],
        [(n.invoice_line_id, n.subtotal.minor_units, n.tax.minor_units) for n in note.lines],
    )
    replayed = (await client.billing.create_credit_note(request)).credit_note
    findings.equal(
        "credit note retried with its key: (id, number)",
        (replayed.id, replayed.number),
        (note.id, note.number),
    )
    reused = pb.CreateCreditNoteRequest()
    reused.CopyFrom(request)
    reused.lines[0].amount.minor_units += 1
    findings.refused(
        "the credit note's key reused for another amount",
        await refusal(client.billing.create_credit_note(reused)),
        grpc.StatusCode.INVALID_ARGUMENT,
        ErrorReason.ERROR_REASON_IDEMPOTENCY_KEY_REUSED,
    )
    notes = [n async for n in client.billing.iter_credit_notes(invoice_id=invoice.id)]
    findings.equal("credit notes on the invoice", [n.id for n in notes], [note.id])


async def over_credit(client: AsyncClient, billed: Billed) -> None:
    """Credit one unit more than is left of a line, then of the invoice: both refused."""
    invoice, findings, note = billed.invoice, billed.documents, billed.issued_note()
    line = billed.line("api.call")
    left_on_line = line.subtotal.minor_units - CREDITED_SUBTOTAL
    findings.refused(
        f"crediting {left_on_line + 1} of a line with {left_on_line} left",
        await refusal(
            client.billing.create_credit_note(
                invoice_id=invoice.id,
                lines=[
                    pb.CreditNoteLineInput(invoice_line_id=line.id, amount=usd(left_on_line + 1))
                ],
                reason=pb.CREDIT_NOTE_REASON_OTHER,
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorReason.ERROR_REASON_CREDIT_EXCEEDS_INVOICE,
    )
    left = invoice.total.minor_units - note.total.minor_units
    findings.refused(
        f"crediting {left + 1} of an invoice with {left} left",
        await refusal(
            client.billing.create_credit_note(
                invoice_id=invoice.id, amount=usd(left + 1), reason=pb.CREDIT_NOTE_REASON_OTHER
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorReason.ERROR_REASON_CREDIT_EXCEEDS_INVOICE,
    )


async def refund(client: AsyncClient, billed: Billed, run: str) -> None:
    """Refund the credit note in full (keyed retry: the same refund); over-refunds refused."""
    invoice, findings, note = billed.invoice, billed.documents, billed.issued_note()
    request = pb.CreateRefundRequest(
        invoice_id=invoice.id,
        amount=note.total,
        credit_note_id=note.id,
        memo="acceptance: the credit paid back",
        idempotency_key=f"acceptance-refund-{run}",
    )
    refunded = (await client.billing.create_refund(request)).refund
    billed.refund = refunded
    billed.days.add(day_of(refunded.created_at))
    findings.equal("refund amount", refunded.amount.minor_units, note.total.minor_units)
    findings.equal("refund's credit note", refunded.credit_note_id, note.id)
    again = (await client.billing.create_refund(request)).refund
    findings.equal("refund retried with its key: id", again.id, refunded.id)
    findings.refused(
        "refunding 1 more on a fully refunded credit note",
        await refusal(
            client.billing.create_refund(
                invoice_id=invoice.id, amount=usd(1), credit_note_id=note.id
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorReason.ERROR_REASON_REFUND_EXCEEDS_PAID,
    )
    refundable = invoice.total.minor_units - refunded.amount.minor_units
    findings.refused(
        f"refunding {refundable + 1} of {refundable} paid and not refunded",
        await refusal(
            client.billing.create_refund(invoice_id=invoice.id, amount=usd(refundable + 1))
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorReason.ERROR_REASON_REFUND_EXCEEDS_PAID,
    )
    findings.refused(
        "paying 1 more than is due",
        await refusal(client.billing.record_payment(invoice_id=invoice.id, amount=usd(1))),
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorReason.ERROR_REASON_PAYMENT_EXCEEDS_DUE,
    )


async def settle(client: AsyncClient, billed: Billed) -> None:
    """Read the invoice back: its balance is what the arithmetic says, its document unchanged."""
    invoice, findings, note = billed.invoice, billed.documents, billed.issued_note()
    final = (await client.billing.get_invoice(id=invoice.id)).invoice
    billed.final = final
    total = invoice.total.minor_units
    paid, credited = final.amount_paid.minor_units, final.amount_credited.minor_units
    refunded = final.amount_refunded.minor_units
    findings.equal("amount paid", paid, total)
    findings.equal("amount credited", credited, note.total.minor_units)
    findings.equal("amount refunded", refunded, note.total.minor_units)
    findings.equal(
        "due (total - credited - (paid - refunded))", total - credited - paid + refunded, 0
    )
    findings.equal(
        "the signed invoice after payments, credit and refund",
        (final.number, final.total, final.signed_payload, final.signature),
        (invoice.number, invoice.total, invoice.signed_payload, invoice.signature),
    )
    notes = [n async for n in client.billing.iter_credit_notes(invoice_id=invoice.id)]
    findings.equal(
        "the credit note's refunded amount",
        [n.amount_refunded.minor_units for n in notes],
        [note.total.minor_units],
    )


async def verify_documents(client: AsyncClient, billed: Billed) -> dict[str, Any]:
    """Check the signed invoice and credit note; what was verified, with which key, and how."""
    invoice, note, findings = billed.invoice, billed.credit_note, billed.documents
    jwks = await published_billing_keys(client)
    documents: list[tuple[str, str, str, str, list[str]]] = [
        (
            "invoice",
            invoice.signed_payload,
            invoice.signature,
            invoice.signing_key_id,
            invoice_payload_problems(invoice),
        )
    ]
    if note is not None:
        documents.append(
            (
                "credit_note",
                note.signed_payload,
                note.signature,
                note.signing_key_id,
                credit_note_payload_problems(note, invoice),
            )
        )
    verified = []
    for kind, payload, signature, key_id, payload_problems in documents:
        problems = signed_problems(kind, payload, signature, key_id) + payload_problems
        findings.extend(problems)
        valid, outcome = verify_signature(payload, signature, key_id, jwks)
        findings.expect(valid, f"the {kind}'s signature: {outcome}")
        verified.append(
            {
                "document": kind,
                "signed_payload_sha256": hashlib.sha256(payload.encode()).hexdigest(),
                "key_id": key_id,
                "algorithm": "Ed25519",
                "signed_payload_matches_api": not payload_problems,
                "problems": problems,
                "signature": outcome,
            }
        )
    return {
        "keys": jwks,
        "how": "Ed25519 over the exact bytes of signed_payload (canonical JSON), key by "
        "signing_key_id from the published JWKS; the payload's fields compared with the API's",
        "documents": verified,
    }


async def graphql_invoice_problems(
    context: Context, token: str, final: pb.Invoice
) -> tuple[list[str], dict[str, Any]]:
    """The finalized invoice as GraphQL lists it, against what the SDK read.

    The registered `Invoices` operation is what a client app sends (it runs in
    production, where ad-hoc documents do not).
    """
    status, body, headers = await context.graphql(
        token, persisted_operations()["Invoices"].document, {"status": "FINALIZED", "pageSize": 10}
    )
    raw = {"status": status, "x_cache": headers.get("x-cache", ""), "body": body}
    if status != 200 or body.get("errors"):
        return [f"GraphQL Invoices answered {status}: {body.get('errors')}"], raw
    listed = {item["id"]: item for item in body["data"]["invoices"]["invoices"]}
    seen = listed.get(final.id)
    if seen is None:
        return ["GraphQL Invoices does not list the finalized invoice"], raw
    through_graphql = (
        seen["number"],
        int(seen["total"]["minorUnits"]),
        int(seen["amountPaid"]["minorUnits"]),
        int(seen["amountCredited"]["minorUnits"]),
        sorted((line["meter"], int(line["quantity"])) for line in seen["lines"]),
    )
    through_sdk = (
        final.number,
        final.total.minor_units,
        final.amount_paid.minor_units,
        final.amount_credited.minor_units,
        sorted((line.meter, line.quantity) for line in final.lines),
    )
    if through_graphql != through_sdk:
        return [f"GraphQL shows {through_graphql}, the SDK {through_sdk}"], raw
    return [], raw


async def reconcile(context: Context, client: AsyncClient, token: str, days: set[date]) -> None:
    """Reconcile every day the flow touched; check drift per day (read back through GraphQL)."""
    entries: list[dict[str, Any]] = []
    mismatches: list[str] = []
    for day in sorted(days):
        report = (await client.billing.run_reconciliation(day=day.isoformat())).report
        status, body, _ = await context.graphql(token, RECONCILIATION_QUERY, {"day": report.day})
        read = ((body.get("data") or {}).get("reconciliationReport") or {}).get("report") or {}
        read_drift = (read.get("drift") or {}).get("minorUnits")
        if status != 200 or read_drift is None or int(read_drift) != report.drift.minor_units:
            mismatches.append(f"{report.day}: GraphQL read {status} {read_drift!r}")
        entries.append(
            {
                "day": report.day,
                "drift_minor_units": report.drift.minor_units,
                "currency": report.drift.currency_code or CURRENCY,
                "metered_total_minor_units": report.metered_total.minor_units,
                "ledger_total_minor_units": report.ledger_total.minor_units,
                "documents_total_minor_units": report.documents_total.minor_units,
                "alert": report.alert,
                "report_id": report.id,
            }
        )
    context.raw("reconciliation", entries)
    judged = judge_drift(entries)
    passed = judged.passed and not mismatches
    context.check(
        DRIFT.name,
        threshold=DRIFT.threshold,
        measured=judged.measured,
        passed=passed,
        value=float(Fraction(judged.worst_minor_units, MINOR_PER_MAJOR)),
        detail=(
            f"Reconciled the {judged.days} day(s) the lane's billing of a new pilot tenant "
            "touched (usage, invoice, credit note, payment, refund): ledger - metered - "
            "documents"
            + (f"; worst {judged.worst_day}" if judged.days else "; nothing reconciled")
            + (f". GraphQL disagrees: {'; '.join(mismatches)}" if mismatches else ".")
        ),
    )


async def check_documents(
    context: Context, client: AsyncClient, token: str, billed: Billed
) -> None:
    """Record the credit note and refund criterion and its raw documents."""
    findings = billed.documents
    if billed.refused is not None:
        error = billed.refused
        findings.expect(
            False,
            f"the flow was refused: {error.code.name} {error.reason.name}: {error.details}",
        )
    if billed.finalized is None:
        context.unchecked(DOCUMENTS, findings.problems[-1] if findings.problems else "no invoice")
        return
    verification = await verify_documents(client, billed)
    final = billed.final or billed.invoice
    problems, graphql_raw = await graphql_invoice_problems(context, token, final)
    billed.documents.extend(problems)
    context.raw("invoice", as_json(final))
    context.raw("credit_note", as_json(billed.credit_note) if billed.credit_note else None)
    context.raw("payment", as_json(billed.payment) if billed.payment else None)
    context.raw("refund", as_json(billed.refund) if billed.refund else None)
    context.raw("verification", verification)
    context.raw("invoices_graphql", graphql_raw)
    signatures = "signatures checked against the published keys (GetJwks)"
    done = (
        f"Invoice {billed.invoice.number}: rated lines, a credit note on one line, full "
        "payment, refund of the credit, refusals and keyed retries"
        if billed.refused is None
        else "The billing flow stopped at a refusal"
    )
    context.check(
        DOCUMENTS.name,
        threshold=DOCUMENTS.threshold,
        measured=findings.measured(),
        passed=findings.passed,
        value=float(len(findings.problems)),
        detail=findings.detail(f"{done}; {signatures}."),
    )


async def check_tax(context: Context, client: AsyncClient, billed: Billed) -> None:
    """Record the tax criterion: the invoice's tax fields, and the sandbox's calculations."""
    if billed.finalized is None:
        context.unchecked(TAX, "no invoice was finalized, so no tax fields to check")
        return
    invoice = billed.invoice
    findings = Findings()
    findings.extend(tax_problems(invoice, JURISDICTION))
    requests = [
        pb.CalculateTaxRequest(
            lines=[
                pb.TaxableLine(reference=line.id, amount=line.subtotal) for line in invoice.lines
            ],
            jurisdiction=invoice.tax_details.jurisdiction,
            mode=pb.TAX_MODE_EXCLUSIVE,
        ),
        pb.CalculateTaxRequest(
            lines=[
                pb.TaxableLine(reference="standard", amount=usd(10_001)),
                pb.TaxableLine(reference="reduced", amount=usd(333), tax_code="reduced"),
                pb.TaxableLine(reference="exempt", amount=usd(999), tax_code="exempt"),
            ],
            jurisdiction="GB",
            mode=pb.TAX_MODE_INCLUSIVE,
        ),
    ]
    calculations: list[pb.TaxCalculation] = []
    for request in requests:
        try:
            calculation = (await client.billing.calculate_tax(request)).calculation
        except ConductorError as error:
            findings.expect(False, f"CalculateTax was refused: {error.code.name}: {error.details}")
            calculation = pb.TaxCalculation()
        findings.extend(calculation_problems(request, calculation))
        calculations.append(calculation)
    # The invoice was taxed by the same provider: the same lines give the same tax.
    findings.equal(
        "the sandbox's tax on the invoice's lines against the invoice's",
        {line.line_id: line.tax_amount.minor_units for line in calculations[0].lines},
        {line.id: line.tax.minor_units for line in invoice.lines},
    )
    taxed_lines = len(invoice.lines) + sum(len(request.lines) for request in requests)
    context.raw(
        "tax",
        {
            "invoice_number": invoice.number,
            "tax_details": as_json(invoice.tax_details),
            "lines": [as_json(line) for line in invoice.lines],
            "calculations": [
                {"request": as_json(request), "response": as_json(calculation)}
                for request, calculation in zip(requests, calculations, strict=True)
            ],
            "problems": findings.problems,
        },
    )
    context.check(
        TAX.name,
        threshold=TAX.threshold,
        measured=f"{taxed_lines} taxed lines, {len(findings.problems)} discrepancies",
        passed=findings.passed,
        value=float(len(findings.problems)),
        detail=findings.detail(
            f"{len(invoice.lines)} invoice lines in {invoice.tax_details.jurisdiction} at "
            f"{invoice.tax_details.rate}, and {len(requests)} sandbox calculations "
            "(exclusive; inclusive with reduced and exempt codes)."
        ),
    )


async def check_rollout(context: Context, operator: AsyncClient, tenant: uuid.UUID) -> None:
    """Record the rollout criterion: GA tenants within 8, every history ending at its stage."""
    rollout = await operator.billing.get_rollout()
    changes = [change async for change in operator.billing.iter_rollout_changes(page_size=100)]
    judged = judge_rollout(list(rollout.tenants), rollout.max_ga_tenants, changes)
    problems = list(judged.problems)
    mine = [change for change in changes if change.tenant_id == str(tenant)]
    if not mine or (mine[0].changed_by, mine[0].reason) != (OPERATOR_SUBJECT, ENROL_REASON):
        problems.append("the lane's own enrolment is not in the history with who and why")
    context.raw(
        "rollout",
        {
            "max_ga_tenants": rollout.max_ga_tenants,
            "tenants": [as_json(entry) for entry in rollout.tenants],
            "changes": [as_json(change) for change in changes],
        },
    )
    context.check(
        ROLLOUT.name,
        threshold=ROLLOUT.threshold,
        measured=judged.measured,
        passed=not problems,
        value=float(judged.ga),
        detail=(
            f"{len(rollout.tenants)} tenants enrolled, {len(changes)} changes in the history "
            "(read in pages)." + (" Problems: " + "; ".join(problems[:5]) if problems else "")
        ),
    )


async def run(context: Context) -> None:
    """Bill a new pilot tenant end to end and check the Billing GA criteria."""
    tenant = context.tenant()
    token = context.token(tenant, TENANT_SCOPES, subject=TENANT_SUBJECT)
    async with (
        context.client(tenant, OPERATOR_SCOPES, subject=OPERATOR_SUBJECT) as operator,
        context.client(tenant, TENANT_SCOPES, subject=TENANT_SUBJECT) as client,
    ):
        await enrol(operator, client, tenant)
        billed = Billed()
        await bill(client, billed)
        await context.guarded(DRIFT, reconcile(context, client, token, billed.days))
        await context.guarded(DOCUMENTS, check_documents(context, client, token, billed))
        await context.guarded(TAX, check_tax(context, client, billed))
        await context.guarded(ROLLOUT, check_rollout(context, operator, tenant))
