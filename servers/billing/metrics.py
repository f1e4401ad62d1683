"""Billing metrics (the seed's: variance, credit notes issued, drift, cap refusals, tax pending)."""

from prometheus_client import Counter, Gauge

from servers.tenant_metrics import TenantGauge

#: A robust z-score past this is an outlier: reconciliation raises a variance alert on it
#: (given the $1 floor), and the gauge holds such a tenant's series over quiet ones.
ROBUST_Z_LIMIT = 3.5

VARIANCE = TenantGauge(
    Gauge(
        "billing_variance_zscore",
        "Robust z-score (MAD-scaled deviations from the median; unitless) of the tenant's last "
        "reconciled daily total against its trailing 28 days.",
        ("tenant",),
        # The value of the last reconciliation, whichever worker ran it.
        multiprocess_mode="mostrecent",
    ),
    # An outlier the variance alert would report: held over quiet tenants at the cap.
    remarkable=lambda z: abs(z) > ROBUST_Z_LIMIT,
)
CREDIT_NOTES = Counter("billing_credit_notes_issued_total", "Credit notes issued.")
DRIFT = TenantGauge(
    Gauge(
        "billing_reconciliation_drift_minor_units",
        "Drift (ledger - metered - documents, signed) of the tenant's last reconciled day, "
        "in minor units of the tenant's currency (cents for USD).",
        ("tenant",),
        multiprocess_mode="mostrecent",
    ),
    remarkable=lambda drift: drift != 0,
)
CAP_REFUSALS = Counter("billing_cap_refusals_total", "Usage events refused by a spend cap.")
TAX_PENDING = Gauge("billing_tax_pending_invoices", "Invoices waiting for the tax provider.")
ALERTS = Counter("billing_alerts_total", "Billing alerts raised.", ("kind",))
USAGE = Counter("billing_usage_events_total", "Usage events recorded (duplicates excluded).")
