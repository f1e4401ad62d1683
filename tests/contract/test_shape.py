"""Every service package has the same shape (ADR 0012): its SQL in its store, thin servicers,
pure domain modules, a public surface in `__init__`.

`make lint` checks the arrows between packages; this checks inside each package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.interfaces import CacheInvalidation, CostBudgets, Notifications, ReadCache, UsageMeter
from servers.budget_links import BudgetsThroughBilling
from servers.registry import all_services
from servers.runtime import ServiceDefinition

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("access", "analytics", "billing", "catalog", "edge", "rag")
#: What running a statement looks like, on a session or a connection.
QUERY_CALLS = {"execute", "scalar", "scalars", "stream", "stream_scalars", "get"}
#: The one SQLAlchemy name a use case may hold: the session type its store functions take.
#: (`event` is the session's commit hook, which documents.py uses to remember a recorded key.)
USE_CASE_SQLALCHEMY = {"sqlalchemy.ext.asyncio": {"AsyncSession"}, "sqlalchemy": {"event"}}
#: Modules of pure rules besides every service's `domain.py`: neither gRPC nor SQL.
PURE_MODULES = [
    "billing/money.py",
    "billing/credits.py",
    "billing/tax.py",
    "edge/cache.py",
    "edge/graph.py",
    "analytics/compute.py",
    "analytics/packs.py",
]


def _modules(service: str) -> list[Path]:
    return sorted((ROOT / "servers" / service).rglob("*.py"))


def _in_store(path: Path, service: str) -> bool:
    relative = path.relative_to(ROOT / "servers" / service)
    return relative.parts[0] in {"store.py", "store"}


def _imports(tree: ast.Module) -> list[tuple[str, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_query_lives_in_the_store(service: str) -> None:
    outside = []
    for path in _modules(service):
        if _in_store(path, service):
            continue
        tree = ast.parse(path.read_text())
        for module, name in _imports(tree):
            top = module.split(".")[0]
            if top == "sqlalchemy" and name not in USE_CASE_SQLALCHEMY.get(module, set()):
                outside.append(f"{path.name} imports {module}.{name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in QUERY_CALLS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"session", "connection"}
            ):
                outside.append(f"{path.name}:{node.lineno} runs session.{node.func.attr}")
    assert outside == [], f"SQL outside servers/{service}/store: {outside}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_servicer_only_translates(service: str) -> None:
    tree = ast.parse((ROOT / "servers" / service / "service.py").read_text())
    modules = {module.split(".")[0] for module, _ in _imports(tree)}
    assert "sqlalchemy" not in modules
    sessions = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in {"tenant_session", "platform_session"}
    ]
    assert sessions == [], f"service.py opens sessions at lines {sessions}"


DOMAIN_MODULES = sorted(
    {str(path.relative_to(ROOT / "servers")) for path in (ROOT / "servers").glob("*/domain.py")}
    | set(PURE_MODULES)
)


@pytest.mark.parametrize("module", DOMAIN_MODULES)
def test_domain_modules_are_pure(module: str) -> None:
    """Rules import neither gRPC nor SQL, nor the runtime, the storage, a store or a servicer."""
    tree = ast.parse((ROOT / "servers" / module).read_text())
    package = module.split("/", maxsplit=1)[0]
    refused = (
        "grpc",
        "sqlalchemy",
        "interceptors",
        "servers.runtime",
        "servers.db",
        "servers.jobs",
        f"servers.{package}.store",
        f"servers.{package}.service",
    )
    imported = {name for name, _ in _imports(tree)}
    named = {f"{name}.{member}" for name, member in _imports(tree) if member}
    wrong = sorted(
        found
        for found in imported | named
        if any(found == prefix or found.startswith(f"{prefix}.") for prefix in refused)
    )
    assert wrong == [], f"{module} imports {wrong}"


#: What a use of each interface looks like in a service's code.
INTERFACE_USES = {
    "metering": UsageMeter,
    "read_cache": ReadCache,
    "changed": CacheInvalidation,
    "cost_budgets": CostBudgets,
    "notifications": Notifications,
}
#: What the composition root provides itself, and with what.
ROOT_PROVIDES = {CostBudgets: BudgetsThroughBilling}


@pytest.mark.parametrize("definition", all_services(), ids=lambda d: d.name)
def test_a_service_declares_the_interfaces_it_uses(definition: ServiceDefinition) -> None:
    used = set()
    for path in _modules(definition.name):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in INTERFACE_USES:
                owner = node.value
                via_runtime = isinstance(owner, ast.Attribute) and owner.attr in {
                    "runtime",
                    "_runtime",
                }
                if via_runtime or (isinstance(owner, ast.Name) and owner.id == "runtime"):
                    used.add(INTERFACE_USES[node.attr])
    undeclared = {interface.__name__ for interface in used - set(definition.needs)}
    assert undeclared == set(), f"{definition.name} uses {undeclared} without declaring it"


@pytest.mark.parametrize("service", SERVICES)
def test_each_package_names_its_public_surface(service: str) -> None:
    tree = ast.parse((ROOT / "servers" / service / "__init__.py").read_text())
    exported = next(
        (
            node.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        ),
        None,
    )
    assert isinstance(exported, ast.List)
    names = {element.value for element in exported.elts if isinstance(element, ast.Constant)}
    assert "SERVICE" in names


def _component_class(definition: ServiceDefinition) -> type | None:
    factory = definition.component
    owner = getattr(factory, "__self__", None)  # a classmethod such as `Metering.of`
    return owner if isinstance(owner, type) else None


@pytest.mark.parametrize("definition", all_services(), ids=lambda d: d.name)
def test_a_service_implements_the_interfaces_it_provides(definition: ServiceDefinition) -> None:
    if not definition.provides:
        return
    component = _component_class(definition)
    assert component is not None, f"{definition.name} provides interfaces but builds no component"
    for interface in definition.provides:
        assert issubclass(component, interface), f"{component.__name__} is no {interface.__name__}"


def test_every_needed_interface_has_a_provider() -> None:
    for interface, provider in ROOT_PROVIDES.items():
        assert issubclass(provider, interface)
    provided = {interface for definition in all_services() for interface in definition.provides}
    provided |= set(ROOT_PROVIDES)
    needed = {
        (definition.name, interface)
        for definition in all_services()
        for interface in definition.needs
    }
    assert {(name, i.__name__) for name, i in needed if i not in provided} == set()
    assert provided <= {i for _, i in needed} | {ReadCache}  # the facade reads through it
