"""Which database failures are UNAVAILABLE (repeat the call) and which stay INTERNAL."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy import exc

from interceptors.errors import unreachable


def operational(orig: BaseException) -> exc.OperationalError:
    return exc.OperationalError("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    "error",
    [
        operational(psycopg.OperationalError("connection failed: Connection refused")),
        operational(psycopg.errors.AdminShutdown()),  # 57P01: the server restarts
        operational(psycopg.errors.CannotConnectNow()),  # 57P03: it is starting
        operational(psycopg.errors.ConnectionFailure()),  # 08006
        operational(psycopg.errors.TooManyConnections()),  # 53300
        operational(sqlite3.OperationalError("database is locked")),
        exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")),
        exc.TimeoutError("QueuePool limit reached"),
        ConnectionResetError(),
    ],
    ids=repr,
)
def test_a_dependency_out_of_reach_is_unavailable(error: BaseException) -> None:
    assert unreachable(error)


@pytest.mark.parametrize(
    "error",
    [
        operational(sqlite3.OperationalError("no such table: billing_budgets")),
        operational(psycopg.errors.DeadlockDetected()),
        operational(psycopg.errors.DiskFull()),
        operational(psycopg.errors.QueryCanceled()),  # a statement timeout
        exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
        exc.ProgrammingError("SELECT", {}, Exception("syntax error")),
        ValueError("a bug"),
    ],
    ids=repr,
)
def test_errors_of_the_database_or_the_code_stay_internal(error: BaseException) -> None:
    assert not unreachable(error)
