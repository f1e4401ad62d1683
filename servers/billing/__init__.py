"""Metered usage, signed invoices, credit notes, refunds, tax, reconciliation, guards.

Public surface: the service definition, what verifies signed billing
documents offline (`conductor billing verify|jwks`), and the sandbox tax API
(`conductor billing tax-sandbox`).
"""

from servers.billing.documents import (
    DocumentSigner,
    VerificationError,
    public_keys,
    published_keys,
    signed_parts,
    verify,
)
from servers.billing.service import SERVICE
from servers.billing.tax_api import serving as serving_sandbox_tax_api

__all__ = [
    "SERVICE",
    "DocumentSigner",
    "VerificationError",
    "public_keys",
    "published_keys",
    "serving_sandbox_tax_api",
    "signed_parts",
    "verify",
]
