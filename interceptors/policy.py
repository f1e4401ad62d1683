"""ABAC decisions from Rego policies, evaluated in-process on regopy (rego-cpp).

The policies in `interceptors/policies/*.rego` (Rego v1; `*_test.rego` are
their unit tests) are compiled once, at start, into a bundle with one
entrypoint per decision the platform asks for. A decision reads the input
document `{subject, tenant, scopes, jit, method: {service, name, permission},
resource, now}` and answers `{allow, deny}`, `deny` being the set of reasons.

Decisions are cached in a bounded LRU keyed on every field of that input;
`now` is whole seconds, so a cached decision never outlives the second it
was made in (and so never the token it was made for).

An evaluation costs from about 0.2 ms (the leak verdict) to several ms (an
access request over many scopes), so the server never runs one on its event
loop: `decision` and `query` evaluate on the engine's own thread (regopy
releases the GIL while rego-cpp works), and concurrent identical
authorization misses share one evaluation. `decide` and `evaluate` run in the
caller's thread, for tools and tests.

regopy is used with three precautions learned the hard way: it is loaded
through `interceptors.rego`, which keeps its allocations from leaking; an
`Output` must stay referenced while anything read from it is used, and a
failed output must not be rendered (both crash the process); results are
read from the Python values `Output` parses itself.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from cachetools import LRUCache

from interceptors.rego import Input, Interpreter, RegoError

#: The platform's policies, shipped with the code.
POLICY_DIR = Path(__file__).with_name("policies")
#: The entrypoint every call's authorization is decided by.
AUTHZ_DECISION = "intelgraph/authz/decision"

_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
#: OPA's annotation for a bundle entrypoint: a METADATA comment block with
#: `entrypoint: true`, directly above the rule.
_ENTRYPOINT = re.compile(
    r"^# METADATA\n(?:#[^\n]*\n)*?# entrypoint: true\n(?:#[^\n]*\n)*"
    r"(?:default\s+)?([a-z_][a-z0-9_]*)\b",
    re.MULTILINE,
)


class PolicyError(RuntimeError):
    """A policy failed to compile or to evaluate."""


def policy_data(directory: Path) -> list[dict[str, Any]]:
    """The data documents (`*.json`) the policies read, e.g. the access rules."""
    documents = []
    for path in sorted(directory.glob("*.json")):
        document = json.loads(path.read_text())
        if not isinstance(document, dict):
            raise PolicyError(f"{path} must hold a JSON object")
        documents.append(document)
    return documents


def entrypoints(sources: Mapping[str, str]) -> tuple[str, ...]:
    r"""The entrypoints the policy modules annotate, as "package/path/rule", sorted.

    A service that queries its own decision (the access workflow, the edge
    cache's leak detector) annotates the rule in its policy; the engine
    compiles every annotated rule, so no list of them lives in the interceptors.

    >>> source = "package x.y\n\n# METADATA\n# entrypoint: true\nallow := true\n"
    >>> entrypoints({"a.rego": source})
    ('x/y/allow',)
    """
    found: set[str] = set()
    for name, source in sources.items():
        package = _PACKAGE.search(source)
        if package is None:
            raise PolicyError(f"{name} declares no package")
        prefix = package[1].replace(".", "/")
        found.update(f"{prefix}/{rule}" for rule in _ENTRYPOINT.findall(source))
    return tuple(sorted(found))


def policy_sources(directory: Path, *, tests: bool = False) -> dict[str, str]:
    """The Rego modules in `directory` by file name; with `tests`, only the test modules."""
    return {
        path.name: path.read_text()
        for path in sorted(directory.glob("*.rego"))
        if path.name.endswith("_test.rego") == tests
    }


#: The resource of a call whose request names none.
NO_RESOURCE: Mapping[str, str] = MappingProxyType({})


class CallerFacts(NamedTuple):
    """What the policy reads about the caller (from the verified token)."""

    subject: str
    tenant: str
    scopes: tuple[str, ...]
    jit: bool
    #: The identity of the client's certificate on an mTLS connection ("" without one).
    peer_certificate: str = ""


class MethodFacts(NamedTuple):
    """What the policy reads about the method (from its contract)."""

    service: str
    name: str
    permission: str


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a call may proceed and, if not, every reason why not."""

    allow: bool
    reasons: tuple[str, ...]


#: An authorization decision's cache key: everything the policy reads.
DecisionKey = tuple[CallerFacts, MethodFacts, tuple[tuple[str, str], ...], int]


class PolicyEngine:
    """Compiled policies and the cache of their decisions.

    One regopy interpreter is not thread-safe: evaluations take a lock. The
    server's evaluations run on the engine's single thread (`decision`,
    `query`), so the lock is only contended by tools and tests.

    Args:
        directory: Where the policies are.
        cache_size: Decisions to remember.
    """

    def __init__(self, directory: Path = POLICY_DIR, *, cache_size: int = 65_536) -> None:
        modules = policy_sources(directory)
        if not modules:
            raise PolicyError(f"no policies in {directory}")
        compiler = Interpreter()
        try:
            for document in policy_data(directory):
                compiler.add_data(document)
            for name, source in modules.items():
                compiler.add_module(name, source)
            self.entrypoints = entrypoints(modules)
            if AUTHZ_DECISION not in self.entrypoints:
                raise PolicyError(f"no policy in {directory} annotates {AUTHZ_DECISION}")
            self._bundle = compiler.build(None, list(self.entrypoints))
        except RegoError as error:
            raise PolicyError(f"policies in {directory} do not compile: {error}") from None
        if not self._bundle.ok():
            raise PolicyError(f"policies in {directory} do not compile")
        self._interpreter = Interpreter()
        self._lock = threading.Lock()
        self._decisions: LRUCache[DecisionKey, Decision] = LRUCache(maxsize=cache_size)
        #: Authorization evaluations under way, by key (event-loop side only).
        self._pending: dict[DecisionKey, asyncio.Future[Decision]] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")

    def evaluate(self, entrypoint: str, document: Mapping[str, Any]) -> Any:
        """The value of `entrypoint` for input `document`; None when undefined.

        Runs in the calling thread; on the event loop, use `query`.

        Raises:
            PolicyError: The evaluation failed.
        """
        with self._lock:
            policy_input = Input(dict(document))
            self._interpreter.set_input(policy_input)
            output = self._interpreter.query_bundle_entrypoint(self._bundle, entrypoint)
            if not output.ok():
                raise PolicyError(f"evaluating {entrypoint} failed")
            if not len(output) or not output[0].expressions:
                return None
            return output[0].expressions[0]

    async def query(self, entrypoint: str, document: Mapping[str, Any]) -> Any:
        """`evaluate`, on the engine's thread: the event loop goes on meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.evaluate, entrypoint, document)

    def cached_decision(
        self, caller: CallerFacts, method: MethodFacts, resource: Mapping[str, str], now: int
    ) -> Decision | None:
        """The decision for one call if it is cached; None when it must be evaluated."""
        return self._decisions.get(_decision_key(caller, method, resource, now))

    def decide(
        self,
        caller: CallerFacts,
        method: MethodFacts,
        resource: Mapping[str, str],
        now: int,
    ) -> Decision:
        """The authorization decision for one call, evaluated in this thread on a miss."""
        key = _decision_key(caller, method, resource, now)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decisions[key] = self._evaluate_decision(key)
        return decision

    async def decision(
        self,
        caller: CallerFacts,
        method: MethodFacts,
        resource: Mapping[str, str],
        now: int,
    ) -> Decision:
        """The authorization decision for one call, evaluated off the event loop on a miss.

        Concurrent misses of the same key (a burst from one caller as the
        second turns) wait for one evaluation.
        """
        key = _decision_key(caller, method, resource, now)
        decision = self._decisions.get(key)
        if decision is not None:
            return decision
        pending = self._pending.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(self._thread, self._evaluate_decision, key)
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settle(key, done))
        return await asyncio.shield(pending)

    def _settle(self, key: DecisionKey, done: asyncio.Future[Decision]) -> None:
        self._pending.pop(key, None)
        if not done.cancelled() and done.exception() is None:
            self._decisions[key] = done.result()

    def _evaluate_decision(self, key: DecisionKey) -> Decision:
        caller, method, resource, now = key
        result = self.evaluate(
            AUTHZ_DECISION,
            {
                "subject": caller.subject,
                "tenant": caller.tenant,
                "scopes": list(caller.scopes),
                "jit": caller.jit,
                "peer_certificate": caller.peer_certificate,
                "method": {
                    "service": method.service,
                    "name": method.name,
                    "permission": method.permission,
                },
                "resource": dict(resource),
                "now": now,
            },
        )
        if not isinstance(result, dict):
            raise PolicyError(f"{AUTHZ_DECISION} is undefined for this input")
        return Decision(
            allow=result.get("allow") is True,
            reasons=tuple(sorted(str(reason) for reason in result.get("deny", ()))),
        )

    def close(self) -> None:
        """Stop the engine's thread (evaluations in the calling thread still work)."""
        self._thread.shutdown(wait=False, cancel_futures=True)


def _decision_key(
    caller: CallerFacts, method: MethodFacts, resource: Mapping[str, str], now: int
) -> DecisionKey:
    return (caller, method, tuple(resource.items()) if resource else (), now)
