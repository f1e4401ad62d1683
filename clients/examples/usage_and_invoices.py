"""Records metered usage, then lists the tenant's invoices, page by page.

Scopes: `billing.usage.write` (record usage), `billing.read` (list invoices).
"""

import uuid

from intelgraph.sdk import Client
from intelgraph.sdk.billing import InvoiceStatus


def main() -> None:
    """Run the example; exits 0 when it worked."""
    with Client.from_env() as client:
        # The event id makes the usage idempotent: sending it twice records it once.
        event_id = f"usage-example-{uuid.uuid4()}"
        recorded = client.billing.record_usage(event_id=event_id, meter="api.call", quantity=3)
        again = client.billing.record_usage(event_id=event_id, meter="api.call", quantity=3)
        event = recorded.event
        print(f"recorded {event.quantity} x {event.meter}; sent again: duplicate={again.duplicate}")
        for invoice in client.billing.iter_invoices(page_size=50):
            status = InvoiceStatus.Name(invoice.status)
            total = invoice.total
            amount = f"{total.minor_units} minor units of {total.currency_code}"
            print(f"invoice {invoice.id} {status}: {amount}")


if __name__ == "__main__":
    main()
