"""Metered usage, signed invoices, credit notes, refunds, tax, reconciliation, guards."""

from servers.billing.service import SERVICE, BillingService

__all__ = ["SERVICE", "BillingService"]
