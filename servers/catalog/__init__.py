"""Services, owners, dependencies, SLOs, what-if scenarios, CSV export and budget links."""
