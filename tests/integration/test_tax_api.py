"""The remote tax API: `HttpTaxProvider` against the sandbox API served for real, every way it
fails, `conductor billing tax-sandbox`, and a platform that taxes through the API.

The platform runs on SQLite only: what is under test is the provider between the platform
and the API; the storage of the invoices it taxes is test_billing.py's, on both backends. Its
tests come first and last: the outage test waits for the finalizer, which runs every 5 s from
the platform's start, and the tests between them take part of that wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from intelgraph.billing.v1 import billing_service_pb2 as pb
from intelgraph.common.v1.money_pb2 import Money

from servers.app import Platform
from servers.billing import tax_api
from servers.billing.service import BillingService
from servers.billing.tax import (
    HttpTaxProvider,
    LineToTax,
    Mode,
    SandboxTaxProvider,
    TaxCalculation,
    TaxUnavailable,
    UnknownJurisdiction,
)
from tests.support.billing import Biller, enrolled, new_biller
from tests.support.processes import CONDUCTOR, environment
from tests.support.serving import serving

pytestmark = pytest.mark.asyncio(loop_scope="module")


def bound(port: int = 0) -> socket.socket:
    """A TCP socket bound on loopback (port 0: a free one), its port taken again at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class SandboxApi:
    """The sandbox tax API served in this event loop, on one port across a stop and a start."""

    def __init__(self) -> None:
        self.provider = SandboxTaxProvider()
        self.port = 0
        self._serving: contextlib.AsyncExitStack | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        sock = bound(self.port)
        self.port = sock.getsockname()[1]
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(tax_api.serving(sock, tax_api.app(self.provider)))
        self._serving = stack

    async def stop(self) -> None:
        if self._serving is not None:
            stack, self._serving = self._serving, None
            await stack.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox_api() -> AsyncIterator[SandboxApi]:
    api = SandboxApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


@contextlib.asynccontextmanager
async def provider_of(url: str, timeout_s: float = 5.0) -> AsyncIterator[HttpTaxProvider]:
    provider = HttpTaxProvider(url, timeout_s=timeout_s)
    try:
        yield provider
    finally:
        await provider.aclose()


@pytest_asyncio.fixture(loop_scope="module")
async def remote(sandbox_api: SandboxApi) -> AsyncIterator[HttpTaxProvider]:
    async with provider_of(sandbox_api.url) as provider:
        yield provider


# -- a platform that taxes through the API ---------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    sandbox_api: SandboxApi, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with serving(
        tmp_path_factory.mktemp("var"),
        services="billing",
        tax_url=sandbox_api.url,
        tax_timeout=1.0,
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def biller(platform: Platform) -> AsyncIterator[Biller]:
    async with new_biller(platform) as caller:
        yield caller


async def draft_with(biller: Biller, calls: int) -> pb.Invoice:
    """The tenant's draft after `calls` API calls at 1 minor unit each."""
    await biller(
        "RecordUsage",
        pb.RecordUsageRequest(event_id=f"calls-{calls}", meter="api.call", quantity=calls),
    )
    drafts: pb.ListInvoicesResponse = await biller(
        "ListInvoices", pb.ListInvoicesRequest(status=pb.INVOICE_STATUS_DRAFT)
    )
    (draft,) = drafts.invoices
    return draft


async def test_a_platform_with_a_tax_url_taxes_through_the_api(
    platform: Platform, biller: Biller, sandbox_api: SandboxApi
) -> None:
    assert isinstance(platform.servicer(BillingService).tax, HttpTaxProvider)
    await enrolled(biller)
    calls = sandbox_api.provider.calls
    draft = await draft_with(biller, 700)
    invoice = (await biller("FinalizeInvoice", pb.FinalizeInvoiceRequest(id=draft.id))).invoice
    assert invoice.status == pb.INVOICE_STATUS_FINALIZED
    assert (invoice.subtotal.minor_units, invoice.tax.minor_units) == (700, 140)
    assert invoice.tax_details.provider_reference.startswith("sbx_")
    assert sandbox_api.provider.calls == calls + 1  # taxed by the API, not in process
    unknown = await biller.refused(
        "CalculateTax",
        pb.CalculateTaxRequest(
            lines=[pb.TaxableLine(amount=Money(minor_units=1, currency_code="GBP"))],
            jurisdiction="XX",
        ),
    )
    assert unknown.metadata["field"] == "jurisdiction"
    assert sandbox_api.provider.calls == calls + 2


async def test_a_jurisdiction_the_api_does_not_know_leaves_the_invoice_pending(
    biller: Biller, sandbox_api: SandboxApi
) -> None:
    await enrolled(biller, jurisdiction="DE")  # known to the platform's own table
    draft = await draft_with(biller, 100)
    table = sandbox_api.provider.table
    known = {code: rates for code, rates in table["jurisdictions"].items() if code != "DE"}
    sandbox_api.provider.table = {**table, "jurisdictions": known}
    try:
        pending = (await biller("FinalizeInvoice", pb.FinalizeInvoiceRequest(id=draft.id))).invoice
        assert pending.status == pb.INVOICE_STATUS_TAX_PENDING
        (alert,) = (
            await biller(
                "ListBillingAlerts",
                pb.ListBillingAlertsRequest(kind=pb.BILLING_ALERT_KIND_TAX_PENDING),
            )
        ).alerts
        assert "no tax rates for jurisdiction 'DE'" in alert.message
    finally:
        sandbox_api.provider.table = table
    issued = (await biller("FinalizeInvoice", pb.FinalizeInvoiceRequest(id=draft.id))).invoice
    assert issued.status == pb.INVOICE_STATUS_FINALIZED
    assert issued.tax.minor_units == 19


# -- the API answers as the sandbox does in process ------------------------------------------

#: (lines, jurisdiction, customer tax id, mode, currency) and the tax the calculation comes to.
CASES: dict[str, tuple[list[LineToTax], str, str, Mode, str, int]] = {
    # 6833 at 0.2 = 1366.6 → 1367; 999 at 0.05 = 49.95 → 50; zero-rated and exempt lines: 0.
    "exclusive": (
        [
            LineToTax("a", 6833),
            LineToTax("b", 999, "reduced"),
            LineToTax("c", 500, "zero"),
            LineToTax("d", 700, "exempt"),
        ],
        "GB",
        "",
        "exclusive",
        "GBP",
        1417,
    ),
    # 12000 / 1.2 = 10000 net; 999 / 1.2 = 832.5 → 833 net, 166 tax.
    "inclusive": ([LineToTax("a", 12000), LineToTax("b", 999)], "GB", "", "inclusive", "GBP", 2166),
    "reverse charge": ([LineToTax("a", 12000)], "DE", "FR12345678901", "exclusive", "EUR", 0),
    "exempt customer": ([LineToTax("a", 12000)], "GB", "GB-CHARITY-1", "exclusive", "GBP", 0),
    # 1005 at 0.1 = 100.5 → 101 (yen have no minor unit); 10000 at 0.08875 = 887.5 → 888.
    "yen": ([LineToTax("a", 1005)], "JP", "", "exclusive", "JPY", 101),
    "new york": ([LineToTax("a", 10000)], "US-NY", "", "exclusive", "USD", 888),
    "no lines": ([], "GB", "", "exclusive", "GBP", 0),
}


def rates_of(calculation: TaxCalculation) -> list[str]:
    """The rates as written (equal Decimals may differ in their digits: "0.2", "0.20")."""
    return [str(calculation.rate), *(str(line.rate) for line in calculation.lines)]


@pytest.mark.parametrize("case", CASES)
async def test_the_api_taxes_exactly_as_the_sandbox_does_in_process(
    remote: HttpTaxProvider, sandbox_api: SandboxApi, case: str
) -> None:
    lines, jurisdiction, tax_id, mode, currency, tax = CASES[case]
    facts: dict[str, Any] = {
        "jurisdiction": jurisdiction,
        "customer_tax_id": tax_id,
        "mode": mode,
        "currency": currency,
    }
    calls = sandbox_api.provider.calls
    over_http = await remote.calculate(lines, **facts)
    in_process = await SandboxTaxProvider().calculate(lines, **facts)
    assert sandbox_api.provider.calls == calls + 1
    assert over_http == in_process
    assert rates_of(over_http) == rates_of(in_process)
    assert over_http.tax == tax
    assert over_http.provider_reference.startswith("sbx_")


async def test_an_unknown_jurisdiction_or_tax_code_is_refused_as_unknown(
    remote: HttpTaxProvider, sandbox_api: SandboxApi
) -> None:
    facts: dict[str, Any] = {"customer_tax_id": "", "mode": "exclusive", "currency": "GBP"}
    with pytest.raises(UnknownJurisdiction, match="no tax rates for jurisdiction 'XX'"):
        await remote.calculate([LineToTax("a", 1)], jurisdiction="XX", **facts)
    with pytest.raises(UnknownJurisdiction, match="JP has no 'zero' rate"):
        await remote.calculate([LineToTax("a", 1, "zero")], jurisdiction="JP", **facts)
    # A profile's jurisdiction is checked against the local table: no call.
    calls = sandbox_api.provider.calls
    assert remote.rate("GB", "reduced") == Decimal("0.05")
    with pytest.raises(UnknownJurisdiction):
        remote.rate("XX")
    assert sandbox_api.provider.calls == calls


async def test_the_sandboxs_simulated_outage_is_a_503_and_unavailable(
    remote: HttpTaxProvider, sandbox_api: SandboxApi
) -> None:
    sandbox_api.provider.outage = True
    try:
        with pytest.raises(TaxUnavailable, match=r"HTTP 503: .*simulated outage"):
            await remote.calculate(
                [LineToTax("a", 1)],
                jurisdiction="GB",
                customer_tax_id="",
                mode="exclusive",
                currency="GBP",
            )
    finally:
        sandbox_api.provider.outage = False


# -- whatever keeps an answer away is TaxUnavailable -----------------------------------------


async def calculated(provider: HttpTaxProvider) -> TaxCalculation:
    return await provider.calculate(
        [LineToTax("a", 100)],
        jurisdiction="GB",
        customer_tax_id="",
        mode="exclusive",
        currency="GBP",
    )


async def calculated_in_process() -> TaxCalculation:
    return await SandboxTaxProvider().calculate(
        [LineToTax("a", 100)],
        jurisdiction="GB",
        customer_tax_id="",
        mode="exclusive",
        currency="GBP",
    )


async def test_an_api_that_is_not_there_is_unavailable() -> None:
    with bound() as sock:  # bound, never listening: connections to it are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with provider_of(url) as provider:
            with pytest.raises(TaxUnavailable, match=r"cannot be reached \(ConnectError\)"):
                await calculated(provider)


def http_answer(status: str, body: bytes = b"", content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"connection: close\r\n\r\n" + body


@contextlib.asynccontextmanager
async def raw_http(answer: bytes | None) -> AsyncIterator[str]:
    """A server that reads each request whole, then writes `answer` (None: never answers)."""
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            await reader.readexactly(int(length[1]) if length else 0)
            if answer is None:
                await reader.read()  # until the client gives up and closes
            else:
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(asyncio.gather(*handlers), 5)


async def test_an_api_that_never_answers_is_unavailable_after_the_timeout() -> None:
    async with raw_http(None) as url, provider_of(url, timeout_s=0.3) as provider:
        started = time.perf_counter()
        with pytest.raises(TaxUnavailable, match=r"did not answer within 0\.3 s"):
            await calculated(provider)
        assert 0.25 < time.perf_counter() - started < 1.5


ONE_LINE: dict[str, Any] = {
    "lines": [
        {
            "reference": "a",
            "jurisdiction": "GB",
            "rate": "0.2",
            "taxable": 100,
            "tax": 20,
            "exemption": "",
        }
    ],
    "jurisdiction": "GB",
    "rate": "0.2",
    "mode": "exclusive",
    "provider_reference": "ext_1",
}


def answer_with(**changes: Any) -> bytes:
    line = {**ONE_LINE["lines"][0], **changes.pop("line", {})}
    return http_answer("200 OK", json.dumps({**ONE_LINE, "lines": [line], **changes}).encode())


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (http_answer("500 Internal Server Error"), "HTTP 500$"),
        (http_answer("502 Bad Gateway", b"<html>bad</html>", "text/html"), "HTTP 502$"),
        (
            http_answer("503 Service Unavailable", b'{"error": "x", "message": "maintenance"}'),
            "HTTP 503: maintenance",
        ),
        (http_answer("404 Not Found"), "HTTP 404$"),
        (http_answer("422 Unprocessable Entity", b'{"error": "other", "message": "m"}'), "422"),
        (http_answer("200 OK", b"<html>ok</html>", "text/html"), "not a tax calculation$"),
        (http_answer("200 OK", b'{"lines": []'), "not a tax calculation$"),
        (answer_with(line={"tax": 20.0}), "not a tax calculation$"),
        (answer_with(line={"rate": 0.2}), "not a tax calculation$"),
        (answer_with(line={"rate": "1.5"}), "not a tax calculation$"),
        (answer_with(line={"tax": 10**16}), "not a tax calculation$"),
        (answer_with(mode="gross"), "not a tax calculation$"),
        (answer_with(line={"reference": "b"}), "not a calculation of the lines sent"),
        (answer_with(mode="inclusive"), "not a calculation of the lines sent"),
    ],
    ids=[
        "500",
        "502 html",
        "503 said why",
        "404",
        "422 another reason",
        "200 html",
        "200 truncated json",
        "float tax",
        "float rate",
        "rate past 1",
        "tax past the money bound",
        "unknown mode",
        "another line",
        "another mode",
    ],
)
async def test_an_answer_that_is_not_a_calculation_is_unavailable(answer: bytes, said: str) -> None:
    async with raw_http(answer) as url, provider_of(url) as provider:
        with pytest.raises(TaxUnavailable, match=said):
            await calculated(provider)


async def test_a_good_answer_from_another_api_is_read_whole() -> None:
    async with raw_http(answer_with(extra="ignored")) as url, provider_of(url) as provider:
        calculation = await calculated(provider)
    assert (calculation.tax, calculation.rate, calculation.provider_reference) == (
        20,
        Decimal("0.2"),
        "ext_1",
    )


# -- the API refuses what is not a request ---------------------------------------------------

REQUEST: dict[str, Any] = {
    "lines": [{"reference": "a", "amount": 100, "tax_code": ""}],
    "jurisdiction": "GB",
    "customer_tax_id": "",
    "mode": "exclusive",
    "currency": "GBP",
}


def request_with(**changes: Any) -> bytes:
    line = {**REQUEST["lines"][0], **changes.pop("line", {})}
    return json.dumps({**REQUEST, "lines": [line], **changes}).encode()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"not json", "body: Invalid JSON"),
        (b"[]", "body: Input should be an object"),
        (json.dumps({k: v for k, v in REQUEST.items() if k != "currency"}).encode(), "currency"),
        (request_with(lines={"reference": "a"}), "lines: Input should be a valid array"),
        (request_with(line={"amount": 1.0}), "lines.0.amount: Input should be a valid integer"),
        (request_with(line={"amount": "100"}), "lines.0.amount: Input should be a valid integer"),
        (request_with(line={"amount": True}), "lines.0.amount: Input should be a valid integer"),
        (request_with(line={"amount": 10**16}), "lines.0.amount: Input should be less than"),
        (request_with(line={"reference": 1}), "lines.0.reference: Input should be a valid string"),
        (request_with(line={"tax_code": None}), "lines.0.tax_code: Input should be a valid string"),
        (request_with(mode="gross"), "mode: Input should be 'exclusive' or 'inclusive'"),
        (request_with(currency="ZZZ"), "currency: Value error, 'ZZZ' is not an ISO-4217"),
        (request_with(discount="0.1"), "discount: Extra inputs are not permitted"),
    ],
    ids=[
        "not json",
        "an array",
        "no currency",
        "lines an object",
        "float amount",
        "string amount",
        "boolean amount",
        "amount past the money bound",
        "numeric reference",
        "null tax code",
        "unknown mode",
        "unknown currency",
        "unknown field",
    ],
)
async def test_a_bad_body_is_a_400_that_names_what_is_wrong(
    sandbox_api: SandboxApi, body: bytes, named: str
) -> None:
    calls = sandbox_api.provider.calls
    async with httpx.AsyncClient(base_url=sandbox_api.url) as client:
        answer = await client.post("/v1/tax/calculate", content=body, headers=JSON)
    assert answer.status_code == 400
    refusal = answer.json()
    assert refusal["error"] == "invalid_request"
    assert named in refusal["message"]
    assert sandbox_api.provider.calls == calls


JSON = {"content-type": "application/json"}


async def test_too_large_a_body_too_many_lines_or_not_json_is_refused(
    sandbox_api: SandboxApi,
) -> None:
    line = {"reference": "r", "amount": 1, "tax_code": ""}
    request = {"jurisdiction": "GB", "customer_tax_id": "", "mode": "exclusive",
               "currency": "GBP"}  # fmt: skip
    async with httpx.AsyncClient(base_url=sandbox_api.url) as client:
        huge = await client.post(
            "/v1/tax/calculate", content=b"[" + b" " * (2 << 20) + b"]", headers=JSON
        )
        many = await client.post(
            "/v1/tax/calculate", json={**request, "lines": [line] * 1001}, headers=JSON
        )
        long_name = await client.post(
            "/v1/tax/calculate",
            json={**request, "lines": [{**line, "reference": "r" * 201}]},
            headers=JSON,
        )
        text = await client.post(
            "/v1/tax/calculate",
            content=json.dumps({**request, "lines": [line]}),
            headers={"content-type": "text/plain"},
        )
    assert (huge.status_code, huge.json()["error"]) == (413, "invalid_request")
    assert (many.status_code, long_name.status_code, text.status_code) == (400, 400, 415)


async def test_an_answer_past_the_size_bound_is_unavailability() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"x" * (2 << 20)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = HttpTaxProvider(f"http://127.0.0.1:{port}", timeout_s=5)
    try:
        with pytest.raises(TaxUnavailable, match="larger than"):
            await provider.calculate(
                [LineToTax("r", 100)],
                jurisdiction="GB",
                customer_tax_id="",
                mode="exclusive",
                currency="GBP",
            )
    finally:
        await provider.aclose()
        server.close()
        await server.wait_closed()


async def test_health_answers_200(sandbox_api: SandboxApi) -> None:
    async with httpx.AsyncClient(base_url=sandbox_api.url) as client:
        assert (await client.get("/healthz")).status_code == 200


# -- conductor billing tax-sandbox -----------------------------------------------------------


async def test_the_command_serves_the_api_on_a_free_port_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    process = await asyncio.create_subprocess_exec(
        CONDUCTOR,
        "billing",
        "tax-sandbox",
        "--port",
        "0",
        env=environment(tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        serving_line = re.fullmatch(r"tax sandbox serving (http://127\.0\.0\.1:([0-9]+))\n", line)
        assert serving_line is not None, line
        assert serving_line[2] != "0"
        async with provider_of(serving_line[1]) as provider:
            assert await calculated(provider) == await calculated_in_process()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# -- the platform when the API is down (last: see the module's docstring) ------------------


@pytest.mark.slow
async def test_while_the_api_is_down_invoices_wait_and_are_issued_once_it_is_back(
    biller: Biller, sandbox_api: SandboxApi
) -> None:
    await enrolled(biller)
    draft = await draft_with(biller, 300)
    await sandbox_api.stop()
    try:
        pending = (await biller("FinalizeInvoice", pb.FinalizeInvoiceRequest(id=draft.id))).invoice
        assert pending.status == pb.INVOICE_STATUS_TAX_PENDING
        assert (pending.number, pending.tax.minor_units, pending.signature) == ("", 0, "")
        (alert,) = (
            await biller(
                "ListBillingAlerts",
                pb.ListBillingAlertsRequest(kind=pb.BILLING_ALERT_KIND_TAX_PENDING),
            )
        ).alerts
        assert alert.details["invoice_id"] == draft.id
        assert "the tax API cannot be reached (ConnectError)" in alert.message
    finally:
        await sandbox_api.start()  # on the same port
    for _ in range(100):  # the background finalizer runs every 5 s and retries what is due
        again = (await biller("GetInvoice", pb.GetInvoiceRequest(id=draft.id))).invoice
        if again.status == pb.INVOICE_STATUS_FINALIZED:
            break
        await asyncio.sleep(0.1)
    assert again.status == pb.INVOICE_STATUS_FINALIZED
    assert (again.subtotal.minor_units, again.tax.minor_units) == (300, 60)
