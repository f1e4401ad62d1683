"""Metered usage, signed invoices, credit notes, refunds, tax, reconciliation, guards."""
