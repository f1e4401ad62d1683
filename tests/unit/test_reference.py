"""The reference pages are generated from the code and current (as `make checkgenerate` checks)."""

from __future__ import annotations

import pytest

from servers import reference
from servers.config import Settings
from servers.scopes import scope_registry


def test_the_committed_pages_are_what_the_code_says() -> None:
    stale = [
        path.name
        for path, text in reference.pages().items()
        if not path.exists() or path.read_text() != text
    ]
    assert stale == [], "run python -m servers.reference"


def test_every_setting_scope_and_rpc_is_listed() -> None:
    configuration = reference.configuration_page()
    for name in Settings.model_fields:
        assert f"`CONDUCTOR_{name.upper()}`" in configuration
    permissions = reference.permissions_page()
    for scope in scope_registry():
        assert f"| `{scope}` |" in permissions
    table = reference.rpc_table()
    assert "| billing | `GetInvoice` | unary | `billing.read` | yes |" in table
    assert "| analytics | `ImportGraph` | client stream |" in table


def test_a_readme_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="markers"):
        reference.readme_with_rpc_table("# no table here\n")
