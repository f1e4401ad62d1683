"""The Billing GA acceptance pack against an in-process platform: it passes on a fresh
deployment, writes its raw results, and fails when a criterion does not hold."""

from __future__ import annotations

import doctest
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import billing as pb

from servers.acceptance import Check
from servers.acceptance import billing as lane
from servers.acceptance.billing import (
    DOCUMENTS,
    DRIFT,
    ROLLOUT,
    TAX,
    calculation_problems,
    judge_drift,
    judge_rollout,
    tax_problems,
    usd,
    verify_signature,
)
from servers.app import Platform
from servers.billing.service import BillingService
from servers.cli import main
from tests.support.acceptance import failures, run_lane
from tests.support.serving import serving

#: The lane runs once per module, on the module's event loop; the judgments are plain tests.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

CRITERIA = [DRIFT.name, DOCUMENTS.name, TAX.name, ROLLOUT.name]
RAW = (
    "reconciliation",
    "invoice",
    "credit_note",
    "payment",
    "refund",
    "verification",
    "tax",
    "rollout",
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with serving(
        tmp_path_factory.mktemp("acceptance-billing"), database_url=module_database_url
    ) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ran(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[Check], Path]:
    """The lane, run once against the module's platform: its checks and its output directory."""
    out = tmp_path_factory.mktemp("acceptance-billing-out")
    return await run_lane(platform, "billing", out), out


def raw(out: Path, name: str) -> Any:
    return json.loads((out / "raw" / "billing" / f"{name}.json").read_text())


@in_module_loop
async def test_the_pack_passes_on_a_fresh_deployment(ran: tuple[list[Check], Path]) -> None:
    checks, out = ran
    assert failures(checks) == []
    assert [check.name for check in checks] == CRITERIA
    by_name = {check.name: check for check in checks}
    assert by_name[DRIFT.name].value == 0.0
    assert by_name[DRIFT.name].measured.startswith("$0.00")
    assert by_name[ROLLOUT.name].measured == "0 GA of 8"  # the lane never takes a GA place
    results = json.loads((out / "results.json").read_text())
    assert [check["name"] for check in results["checks"]] == CRITERIA
    # Quick mode takes about 5 s here; 15 s is the budget, doubled for busy shared cores.
    assert results["seconds"]["billing"] < 30


@in_module_loop
async def test_the_raw_results_are_written_and_hold_no_tokens(
    ran: tuple[list[Check], Path],
) -> None:
    _, out = ran
    for name in RAW:
        text = (out / "raw" / "billing" / f"{name}.json").read_text()
        json.loads(text)
        assert "Bearer" not in text
        assert "eyJ" not in text  # no JWT (a base64url JSON header) anywhere
    (day,) = raw(out, "reconciliation")
    assert set(day) >= {"day", "drift_minor_units", "currency", "ledger_total_minor_units"}
    assert (day["drift_minor_units"], day["currency"]) == (0, "USD")
    invoice = raw(out, "invoice")
    assert invoice["status"] == "INVOICE_STATUS_FINALIZED"
    assert invoice["amount_paid"]["minor_units"] == invoice["total"]["minor_units"]
    rollout = raw(out, "rollout")
    assert rollout["max_ga_tenants"] == 8
    (enrolled,) = rollout["tenants"]
    assert enrolled["stage"] == "ROLLOUT_STAGE_PILOT"
    (change,) = rollout["changes"]
    assert (change["changed_by"], change["to_stage"]) == (
        "acceptance-operator",
        "ROLLOUT_STAGE_PILOT",
    )
    tax = raw(out, "tax")
    assert len(tax["calculations"]) == 2
    verification = raw(out, "verification")
    assert [d["document"] for d in verification["documents"]] == ["invoice", "credit_note"]
    assert all(d["signed_payload_matches_api"] for d in verification["documents"])
    assert all(d["signature"] == "verified" for d in verification["documents"])
    assert verification["keys"]


@in_module_loop
async def test_the_raw_documents_verify_with_the_billing_keys_and_tampering_is_caught(
    platform: Platform, ran: tuple[list[Check], Path], tmp_path: Path
) -> None:
    """The lane's verifier and the CLI agree on the raw documents, and refuse tampering."""
    _, out = ran
    jwks = platform.servicer(BillingService).billing.signer.jwks()
    for name in ("invoice", "credit_note"):
        document = raw(out, name)
        parts = (document["signed_payload"], document["signature"], document["signing_key_id"])
        assert verify_signature(*parts, jwks) == (True, "verified")
        forged = parts[0].replace('"total":', '"total":1', 1)
        assert verify_signature(forged, *parts[1:], jwks)[0] is False
        assert verify_signature(parts[0], parts[1], "unknown-kid", jwks)[0] is False
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps({"keys": jwks}))
    exported = out / "raw" / "billing" / "invoice.json"
    assert main(["billing", "verify", str(exported), "--jwks", str(keys)]) == 0


@in_module_loop
async def test_a_tax_provider_outage_fails_the_tax_and_document_criteria(tmp_path: Path) -> None:
    """Nothing answers at the tax API: the invoice waits tax_pending, so there are no tax
    fields and no credit notes; drift and the rollout still hold."""
    async with serving(
        tmp_path / "var", services="billing", tax_url="http://127.0.0.1:9", tax_timeout=0.5
    ) as down:
        checks = await run_lane(down, "billing", tmp_path / "out")
    assert [check.name for check in checks] == CRITERIA
    failed = {check.name: check for check in checks if not check.passed}
    assert set(failed) == {DOCUMENTS.name, TAX.name}
    assert "INVOICE_STATUS_TAX_PENDING" in failed[DOCUMENTS.name].detail
    assert "no tax provider reference" in failed[TAX.name].detail


# -- the judgments fail on bad data ----------------------------------------------------------


def test_drift_above_a_cent_on_any_day_fails() -> None:
    days = [
        {"day": "2026-11-30", "drift_minor_units": 0},
        {"day": "2026-12-01", "drift_minor_units": -2},
    ]
    judged = judge_drift(days)
    assert not judged.passed
    assert (judged.worst_minor_units, judged.worst_day) == (2, "2026-12-01")
    assert judged.measured == "$0.02 (worst of 2 days)"
    assert judge_drift([{"day": "2026-12-01", "drift_minor_units": 1}]).passed
    assert not judge_drift([]).passed  # nothing reconciled proves nothing


def stamp() -> Timestamp:
    moment = Timestamp()
    moment.GetCurrentTime()
    return moment


def change(
    tenant: str, before: pb.RolloutStage.ValueType, after: pb.RolloutStage.ValueType
) -> pb.RolloutChange:
    return pb.RolloutChange(
        id=str(uuid.uuid4()),
        tenant_id=tenant,
        from_stage=before,
        to_stage=after,
        changed_at=stamp(),
        changed_by="operator",
    )


def test_nine_ga_tenants_or_a_history_that_ends_elsewhere_fail() -> None:
    tenants = [str(uuid.uuid4()) for _ in range(9)]
    ga = [pb.TenantRollout(tenant_id=t, stage=pb.ROLLOUT_STAGE_GA) for t in tenants]
    enrolled = [change(t, pb.ROLLOUT_STAGE_UNSPECIFIED, pb.ROLLOUT_STAGE_GA) for t in tenants]
    assert judge_rollout(ga[:8], 8, enrolled[:8]).passed
    nine = judge_rollout(ga, 8, enrolled)
    assert (nine.passed, nine.measured) == (False, "9 GA of 8")
    assert not judge_rollout(ga[:8], 9, enrolled[:8]).passed  # the seed says eight
    # Newest first: the tenant was frozen, yet GetRollout says GA.
    frozen = [change(tenants[0], pb.ROLLOUT_STAGE_GA, pb.ROLLOUT_STAGE_FROZEN), *enrolled[:8]]
    assert any("latest change" in p for p in judge_rollout(ga[:8], 8, frozen).problems)
    assert any("no rollout history" in p for p in judge_rollout(ga[:8], 8, enrolled[1:8]).problems)
    jump = [change(tenants[0], pb.ROLLOUT_STAGE_PILOT, pb.ROLLOUT_STAGE_GA), *enrolled[:8]]
    assert any("jumps" in p for p in judge_rollout(ga[:8], 8, jump).problems)
    anonymous = pb.RolloutChange()
    anonymous.CopyFrom(enrolled[0])
    anonymous.changed_by = ""  # who made it is not said
    assert not judge_rollout(ga[:8], 8, [anonymous, *enrolled[1:8]]).passed


@in_module_loop
async def test_wrong_or_missing_tax_fields_fail(ran: tuple[list[Check], Path]) -> None:
    _, out = ran
    invoice = json_format.ParseDict(raw(out, "invoice"), pb.Invoice())
    assert tax_problems(invoice, "US-NY") == []
    assert tax_problems(invoice, "GB")  # taxed somewhere else than the profile says
    off_by_a_cent = pb.Invoice()
    off_by_a_cent.CopyFrom(invoice)
    off_by_a_cent.lines[0].tax.minor_units += 1
    off_by_a_cent.lines[0].total.minor_units += 1
    assert any("should carry tax" in p for p in tax_problems(off_by_a_cent, "US-NY"))
    no_details = pb.Invoice()
    no_details.CopyFrom(invoice)
    no_details.ClearField("tax_details")
    assert len(tax_problems(no_details, "US-NY")) >= 4
    tax = raw(out, "tax")
    asked = json_format.ParseDict(tax["calculations"][1]["request"], pb.CalculateTaxRequest())
    answer = json_format.ParseDict(tax["calculations"][1]["response"], pb.TaxCalculation())
    assert calculation_problems(asked, answer) == []
    answer.lines[0].tax_amount.minor_units += 1
    assert calculation_problems(asked, answer)


def test_ten_lines_each_at_the_rounding_edge_are_judged_exactly() -> None:
    """US-NY 8.875 %: 4 cents carry 0.355 (0), 8 cents 0.71 (1); half a cent rounds up."""
    lines = [(f"l{amount}", amount) for amount in (4, 8, 40, 400, 1234, 1, 2, 3, 5, 6)]
    request = pb.CalculateTaxRequest(
        lines=[pb.TaxableLine(reference=name, amount=usd(amount)) for name, amount in lines],
        jurisdiction="US-NY",
        mode=pb.TAX_MODE_EXCLUSIVE,
    )
    taxes = {4: 0, 8: 1, 40: 4, 400: 36, 1234: 110, 1: 0, 2: 0, 3: 0, 5: 0, 6: 1}
    answer = pb.TaxCalculation(
        lines=[
            pb.TaxLine(
                line_id=name,
                jurisdiction="US-NY",
                rate="0.08875",
                taxable_amount=usd(amount),
                tax_amount=usd(taxes[amount]),
            )
            for name, amount in lines
        ],
        provider_reference="sbx_test",
    )
    answer.subtotal.minor_units = sum(amount for _, amount in lines)
    answer.tax.minor_units = sum(taxes.values())
    answer.total.minor_units = answer.subtotal.minor_units + answer.tax.minor_units
    assert calculation_problems(request, answer) == []
    answer.lines[1].tax_amount.minor_units = 0  # 0.71 rounded down
    assert calculation_problems(request, answer)


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(lane).failed == 0
