"""The examples in the docstrings of the core, the policy engine, the SDK and Rag hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "core.errors",
    "core.pagination",
    "core.times",
    "core.descriptors",
    "interceptors.policy",
    "interceptors.auth",
    "interceptors.tokens",
    "intelgraph.sdk.client",
    "intelgraph.sdk.requests",
    "intelgraph.sdk.streams",
    "intelgraph.sdk.transport",
    "intelgraph.sdk.uploads",
    "servers.rag.pii",
    "servers.rag.screening",
    "servers.rag.outputs",
    "servers.rag.manifests",
    "servers.console.tus",
    "servers.console.graphs",
    "servers.console.formats",
    "servers.console.catalog",
    "tests.support.scrapes",
    "servers.tenant_metrics",
    "servers.logs",
    "servers.config",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
