"""Metered usage, signed invoices, credit notes, refunds, tax, reconciliation, guards.

Public surface: the service definition, and what verifies signed billing
documents offline (`conductor billing verify|jwks`).
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

__all__ = [
    "SERVICE",
    "DocumentSigner",
    "VerificationError",
    "public_keys",
    "published_keys",
    "signed_parts",
    "verify",
]
