"""Services, owners, dependencies, SLOs, what-if scenarios, CSV export and budget links."""

from servers.catalog.service import SERVICE, CatalogService

__all__ = ["SERVICE", "CatalogService"]
