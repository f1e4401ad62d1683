"""Services, owners, dependencies, SLOs, what-if scenarios, CSV export and budget links."""

from servers.catalog.service import SERVICE

__all__ = ["SERVICE"]
