"""Persisted operations (the safelist) and the limits on ad-hoc documents.

An operation is registered by id, the hex SHA-256 of its document text, from
the committed `graphql/operations/*.graphql` files (one document per file,
hashed exactly as stored). Registered documents are parsed and validated
once, at start. Ad-hoc documents are measured before they run: how deep their
selections nest and how many fields they select (fragments expanded), so a
document that would fan out into thousands of calls is refused up front.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    print_ast,
    validate,
)

logger = logging.getLogger(__name__)


def canonical_form(ast: DocumentNode) -> str:
    """A document as graphql-core prints it: equal for texts that differ only in layout."""
    return print_ast(ast)


def operation_id(document: str) -> str:
    """The id of a document: the hex SHA-256 of its UTF-8 text."""
    return hashlib.sha256(document.encode()).hexdigest()


@dataclass(frozen=True)
class PersistedOperation:
    """A registered, pre-validated document."""

    id: str
    name: str
    document: str
    ast: DocumentNode


class OperationRegistry:
    """The registered operations by id.

    Args:
        schema: What registered documents are validated against.
        directory: The committed operations; None or missing registers none.
    """

    def __init__(self, schema: GraphQLSchema, directory: Path | None) -> None:
        self._schema = schema
        self._operations: dict[str, PersistedOperation] = {}
        self._by_form: dict[str, PersistedOperation] = {}
        self.problems: list[str] = []
        if directory is not None and directory.is_dir():
            for path in sorted(directory.glob("*.graphql")):
                self._load(path)

    def _load(self, path: Path) -> None:
        text = path.read_text()
        try:
            ast = parse(text)
        except GraphQLError as error:
            self.problems.append(f"{path.name}: {error.message}")
            return
        errors = validate(self._schema, ast)
        if errors:
            self.problems.append(f"{path.name}: {errors[0].message}")
            return
        self._add(PersistedOperation(operation_id(text), path.stem, text, ast))

    def _add(self, operation: PersistedOperation) -> PersistedOperation:
        known = self._operations.setdefault(operation.id, operation)
        self._by_form.setdefault(canonical_form(known.ast), known)
        return known

    def register(self, document: str, ast: DocumentNode) -> PersistedOperation:
        """Register a validated ad-hoc document (automatic registration)."""
        return self._add(PersistedOperation(operation_id(document), "auto", document, ast))

    def matching(self, ast: DocumentNode) -> PersistedOperation | None:
        """The registered operation with the same canonical form (whitespace, comments aside)."""
        return self._by_form.get(canonical_form(ast))

    def get(self, identifier: str) -> PersistedOperation | None:
        """The operation registered under `identifier`, if any."""
        return self._operations.get(identifier)

    def __len__(self) -> int:
        return len(self._operations)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._operations.values())


@dataclass(frozen=True)
class DocumentSize:
    """How big a document's selections are."""

    depth: int
    fields: int


def measure(document: DocumentNode) -> DocumentSize:
    """Depth and field count of every operation in `document`, fragments expanded.

    Each fragment is measured once and reused, so a "fragment bomb" (fragments
    spreading each other many times over) is counted in linear time, at its
    full, exponential size, and refused.
    """
    fragments = {
        node.name.value: node
        for node in document.definitions
        if isinstance(node, FragmentDefinitionNode)
    }
    sizes: dict[str, tuple[int, int]] = {}
    depth, fields = 0, 0
    for node in document.definitions:
        if isinstance(node, OperationDefinitionNode):
            operation_depth, operation_fields = _size(node.selection_set, fragments, sizes, ())
            depth, fields = max(depth, operation_depth), fields + operation_fields
    return DocumentSize(depth, fields)


def _size(
    selections: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    sizes: dict[str, tuple[int, int]],
    expanding: tuple[str, ...],
) -> tuple[int, int]:
    """(depth, fields) of a selection set, relative to where it sits."""
    if selections is None:
        return 0, 0
    deepest, count = 0, 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            child_depth, child_count = _size(selection.selection_set, fragments, sizes, expanding)
            deepest, count = max(deepest, child_depth + 1), count + 1 + child_count
        elif isinstance(selection, InlineFragmentNode):
            child_depth, child_count = _size(selection.selection_set, fragments, sizes, expanding)
            deepest, count = max(deepest, child_depth), count + child_count
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name not in sizes:
                fragment = fragments.get(name)
                if fragment is None or name in expanding:
                    continue  # validation reports unknown and cyclic fragments
                sizes[name] = _size(fragment.selection_set, fragments, sizes, (*expanding, name))
            child_depth, child_count = sizes[name]
            deepest, count = max(deepest, child_depth), count + child_count
    return deepest, count
