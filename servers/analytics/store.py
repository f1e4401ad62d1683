"""Tenant graphs: typed, weighted entities and relationships, and each tenant's graph revision."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Float, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from servers.db import Base, TenantScoped


class EntityRow(TenantScoped, Base):
    """A node; `id` is the caller's persisted id, unique within the tenant."""

    __tablename__ = "graph_entities"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(Text, default="")


class RelationshipRow(TenantScoped, Base):
    """A directed, weighted edge between two entities of the tenant."""

    __tablename__ = "graph_relationships"
    __table_args__ = (CheckConstraint("weight > 0", name="weight_positive"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source_id: Mapped[str] = mapped_column(String(128))
    target_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    weight: Mapped[float] = mapped_column(Float)


class GraphRevisionRow(TenantScoped, Base):
    """The tenant's graph revision: bumped by every import, keys the in-memory projections."""

    __tablename__ = "graph_revisions"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    #: Sizes at this revision, so a run can be priced without touching the graph.
    entities: Mapped[int] = mapped_column(BigInteger)
    relationships: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class StagedEntityRow(TenantScoped, Base):
    """An entity of an import in progress; merged into `graph_entities` when the import commits."""

    __tablename__ = "graph_staged_entities"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    import_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(Text, default="")
    staged_at: Mapped[datetime]


class StagedRelationshipRow(TenantScoped, Base):
    """A relationship of an import in progress (its endpoints are checked when it commits)."""

    __tablename__ = "graph_staged_relationships"
    __table_args__ = (CheckConstraint("weight > 0", name="weight_positive"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    import_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source_id: Mapped[str] = mapped_column(String(128))
    target_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    weight: Mapped[float] = mapped_column(Float)
    staged_at: Mapped[datetime]
