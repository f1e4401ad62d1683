"""Billing metrics (the seed's: variance, credit notes issued, drift, cap refusals, tax pending)."""

from prometheus_client import Counter, Gauge

VARIANCE = Gauge(
    "billing_variance_zscore",
    "Robust z-score (MAD-scaled deviations from the median; unitless) of the tenant's last "
    "reconciled daily total against its trailing 28 days.",
    ("tenant",),
    # The value of the last reconciliation, whichever worker ran it.
    multiprocess_mode="mostrecent",
)
CREDIT_NOTES = Counter("billing_credit_notes_issued_total", "Credit notes issued.")
DRIFT = Gauge(
    "billing_reconciliation_drift_minor_units",
    "Drift (ledger - metered - documents, signed) of the tenant's last reconciled day, in minor "
    "units of the tenant's currency (cents for USD).",
    ("tenant",),
    multiprocess_mode="mostrecent",
)
CAP_REFUSALS = Counter("billing_cap_refusals_total", "Usage events refused by a spend cap.")
TAX_PENDING = Gauge("billing_tax_pending_invoices", "Invoices waiting for the tax provider.")
ALERTS = Counter("billing_alerts_total", "Billing alerts raised.", ("kind",))
USAGE = Counter("billing_usage_events_total", "Usage events recorded (duplicates excluded).")
