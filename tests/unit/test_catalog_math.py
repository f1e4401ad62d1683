"""The catalog's SLO math as units: error budgets, burn-rate alerts, rule files, composites."""

from __future__ import annotations

import doctest
import itertools
import math
import re
import sys
from collections.abc import Mapping, Sequence
from fractions import Fraction
from types import ModuleType
from typing import Any

import pytest
import yaml
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from servers.catalog import alerting, budgets, composite
from servers.catalog.alerting import prometheus_duration, prometheus_rules, render_rules
from servers.catalog.budgets import (
    ALERT_WINDOWS_SECONDS,
    WORKBOOK_POLICIES,
    BurnRatePolicy,
    budget_report,
    error_budget,
    evaluate_burn_alerts,
)
from servers.catalog.composite import (
    DependencyCycle,
    Node,
    Requirement,
    UnknownTargets,
    affected_by,
    at_least,
    compose,
    composite_availability,
)

pytestmark = pytest.mark.unit

# Properties run at a fixed, small budget: the whole file stays within a few seconds.
PROPERTIES = settings(max_examples=60, deadline=None, database=None)

HOUR = 3600
DAY = 24 * HOUR
MONTH = 30 * DAY
FOUR_WEEKS = 28 * DAY


def assert_close(actual: float | None, expected: Fraction | float, *, floor: float = 1e-9) -> None:
    """Within 1e-9 of the exact value, relatively, or absolutely below `floor`."""
    assert actual is not None
    assert math.isclose(actual, float(expected), rel_tol=1e-9, abs_tol=floor), (actual, expected)


# For probabilities, which may be tiny: relative only, down to where doubles underflow.
TINY = 1e-300


@pytest.mark.parametrize("module", [budgets, alerting, composite], ids=lambda m: m.__name__)
def test_the_docstring_examples_hold(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# -- Error budgets -----------------------------------------------------------------------------


def test_three_nines_over_thirty_days_allow_43_point_2_minutes() -> None:
    report = budget_report(0.999, MONTH, total_events=1_000_000, bad_events=0)
    assert abs(report.time_budget_seconds / 60 - 43.2) < 1e-9
    # The budget is taken from the objective as written, so the figure is exact.
    assert error_budget(0.999) == 0.001
    assert report.time_budget_seconds == 2592.0
    assert report.remaining_seconds == 2592.0
    assert report.exhaustion_seconds is None  # nothing burns it


OBJECTIVES = st.one_of(
    st.sampled_from([0.9, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999]),
    st.floats(min_value=0.5, max_value=0.99999),
)


@PROPERTIES
@given(
    objective=OBJECTIVES,
    window=st.integers(min_value=DAY, max_value=90 * DAY),
    total=st.integers(min_value=1, max_value=10**9),
    data=st.data(),
)
@example(objective=0.999, window=MONTH, total=10**6, data=None)
def test_a_report_matches_the_closed_forms(
    objective: float, window: int, total: int, data: st.DataObject | None
) -> None:
    current: float | None
    if data is None:  # the explicit example: 1,500 bad events in 10 days, burning at 6 now
        bad, elapsed, current = 1500, 10 * DAY, 6.0
    else:
        bad = data.draw(st.integers(min_value=0, max_value=total), label="bad")
        elapsed = data.draw(st.integers(min_value=1, max_value=window), label="elapsed")
        current = data.draw(st.none() | st.floats(min_value=0, max_value=1000), label="current")
    report = budget_report(
        objective, window, total, bad, elapsed_seconds=elapsed, current_burn_rate=current
    )

    budget = 1 - Fraction(objective)
    allowed = budget * total * window / elapsed
    consumed = bad / allowed
    remaining = 1 - consumed
    burn = Fraction(bad, total) / budget
    assert_close(report.error_budget, budget)
    assert_close(report.attainment, Fraction(total - bad, total))
    assert_close(report.error_ratio, Fraction(bad, total))
    assert_close(report.allowed_bad_events, allowed)
    assert_close(report.consumed, consumed)
    assert_close(report.remaining, remaining)
    assert_close(report.time_budget_seconds, budget * window)
    assert_close(report.consumed_seconds, consumed * budget * window)
    assert_close(report.remaining_seconds, remaining * budget * window)
    assert_close(report.burn_rate, burn)
    assert report.elapsed_seconds == elapsed

    rate = burn if current is None else Fraction(current)
    if remaining <= 0:
        assert report.exhaustion_seconds == 0.0
    elif rate == 0 or remaining * window / rate > sys.float_info.max:
        assert report.exhaustion_seconds is None
    elif remaining > Fraction(1, 10**6):
        # Within a millionth of the edge, remaining's last bits decide; the edges are tested below.
        assert_close(report.exhaustion_seconds, remaining * window / rate)


def test_without_traffic_nothing_is_spent() -> None:
    report = budget_report(0.99, DAY, total_events=0, bad_events=0, elapsed_seconds=HOUR)
    assert (report.attainment, report.error_ratio, report.consumed) == (1.0, 0.0, 0.0)
    assert (report.allowed_bad_events, report.remaining, report.burn_rate) == (0.0, 1.0, 0.0)
    assert report.exhaustion_seconds is None
    burning = budget_report(0.99, DAY, 0, 0, current_burn_rate=4.0)
    assert burning.exhaustion_seconds == DAY / 4


def test_a_burn_too_slow_for_any_float_time_never_exhausts() -> None:
    assert budget_report(0.9, DAY, 1, 0, current_burn_rate=5e-324).exhaustion_seconds is None


def test_an_overspent_budget_is_exhausted_now() -> None:
    report = budget_report(0.99, DAY, total_events=100, bad_events=3)
    assert report.consumed == pytest.approx(3.0)
    assert report.remaining == pytest.approx(-2.0)
    assert report.remaining_seconds == pytest.approx(-2 * 0.01 * DAY)
    assert report.exhaustion_seconds == 0.0
    # Exhausted stays exhausted even when nothing burns any more.
    assert budget_report(0.99, DAY, 100, 3, current_burn_rate=0.0).exhaustion_seconds == 0.0


def test_traffic_is_projected_to_the_whole_window() -> None:
    # A quarter of the window seen: the window is expected to hold four times the events.
    report = budget_report(0.99, 4 * DAY, 1000, 5, elapsed_seconds=DAY)
    assert report.allowed_bad_events == pytest.approx(40.0)
    assert report.consumed == pytest.approx(0.125)
    assert report.burn_rate == pytest.approx(0.5)
    assert report.exhaustion_seconds == pytest.approx(0.875 * 4 * DAY / 0.5)


@pytest.mark.parametrize(
    ("arguments", "keywords"),
    [
        ((0.0, DAY, 10, 1), {}),
        ((1.0, DAY, 10, 1), {}),
        ((1.5, DAY, 10, 1), {}),
        ((math.nan, DAY, 10, 1), {}),
        ((0.99, 0, 10, 1), {}),
        ((0.99, math.inf, 10, 1), {}),
        ((0.99, DAY, 10, 11), {}),
        ((0.99, DAY, -1, 0), {}),
        ((0.99, DAY, 10, -1), {}),
        ((0.99, DAY, math.nan, 0), {}),
        ((0.99, DAY, 10, 1), {"elapsed_seconds": 0}),
        ((0.99, DAY, 10, 1), {"elapsed_seconds": DAY + 1}),
        ((0.99, DAY, 10, 1), {"current_burn_rate": -1.0}),
        ((0.99, DAY, 10, 1), {"current_burn_rate": math.inf}),
    ],
)
def test_a_report_refuses_impossible_inputs(
    arguments: tuple[float, float, float, float], keywords: dict[str, float]
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case breaks a different rule
        budget_report(*arguments, **keywords)


# -- Burn-rate policies ------------------------------------------------------------------------


def test_the_workbook_thresholds_over_thirty_days_are_exact() -> None:
    assert [policy.threshold(MONTH) for policy in WORKBOOK_POLICIES] == [14.4, 6.0, 1.0]
    assert [policy.severity for policy in WORKBOOK_POLICIES] == ["page", "page", "ticket"]
    assert ALERT_WINDOWS_SECONDS == (300, 1800, 3600, 21600, 259200)


def test_other_windows_scale_the_thresholds_as_sloth_does() -> None:
    thresholds = [policy.threshold(FOUR_WEEKS) for policy in WORKBOOK_POLICIES]
    assert thresholds == [13.44, 5.6, 0.9333333333333333]


@PROPERTIES
@given(st.integers(min_value=3 * DAY, max_value=400 * DAY))
def test_a_threshold_always_spends_its_budget_share_in_the_long_window(window: int) -> None:
    for policy in WORKBOOK_POLICIES:
        threshold = policy.threshold(window)
        # Burning at the threshold for the long window spends exactly the policy's share.
        spent = Fraction(threshold) * policy.long_window_seconds / window
        assert_close(float(spent), Fraction(policy.budget_fraction))


def test_a_policy_refuses_impossible_windows() -> None:
    with pytest.raises(ValueError, match="short < long"):
        BurnRatePolicy("page", long_window_seconds=300, short_window_seconds=300, budget_fraction=1)
    with pytest.raises(ValueError, match="budget fraction"):
        BurnRatePolicy("page", long_window_seconds=600, short_window_seconds=300, budget_fraction=0)
    with pytest.raises(ValueError, match="severity"):
        BurnRatePolicy("", long_window_seconds=600, short_window_seconds=300, budget_fraction=0.1)
    with pytest.raises(ValueError, match="shorter than the policy's long window"):
        WORKBOOK_POLICIES[2].threshold(DAY)


def _ratios(**by_window: float) -> dict[int, float]:
    """Error ratios over the workbook's windows, zero unless given (keys like `h1`, `m5`)."""
    named = {"m5": 300, "m30": 1800, "h1": HOUR, "h6": 6 * HOUR, "d3": 3 * DAY}
    ratios = dict.fromkeys(ALERT_WINDOWS_SECONDS, 0.0)
    for name, ratio in by_window.items():
        ratios[named[name]] = ratio
    return ratios


@pytest.mark.parametrize(
    ("ratios", "firing"),
    [
        (_ratios(), [False, False, False]),
        # A spike over the last five minutes alone is no page: the hour must agree.
        (_ratios(m5=0.5), [False, False, False]),
        # An hour that burned but has recovered over the last five minutes: no page either.
        (_ratios(h1=0.5), [False, False, False]),
        (_ratios(h1=0.02, m5=0.02), [True, False, False]),
        (_ratios(h6=0.007, m30=0.007), [False, True, False]),
        (_ratios(d3=0.0011, h6=0.0011), [False, False, True]),
        # Everything burning at 20x: every policy fires.
        (dict.fromkeys(ALERT_WINDOWS_SECONDS, 0.02), [True, True, True]),
        # Exactly at the threshold is not above it (PromQL's `>`).
        (_ratios(h1=14.4 * 0.001, m5=14.4 * 0.001), [False, False, False]),
    ],
)
def test_a_policy_fires_only_when_both_its_windows_burn(
    ratios: dict[int, float], firing: list[bool]
) -> None:
    alerts = evaluate_burn_alerts(0.999, MONTH, ratios)
    assert [alert.firing for alert in alerts] == firing
    assert [alert.policy for alert in alerts] == list(WORKBOOK_POLICIES)
    assert [alert.threshold for alert in alerts] == [14.4, 6.0, 1.0]
    for alert in alerts:
        assert_close(alert.long_burn_rate, ratios[alert.policy.long_window_seconds] / 0.001)
        assert_close(alert.short_burn_rate, ratios[alert.policy.short_window_seconds] / 0.001)


def test_burn_alerts_need_every_window_and_sane_ratios() -> None:
    partial = _ratios()
    del partial[300]
    with pytest.raises(ValueError, match=r"\[300\]"):
        evaluate_burn_alerts(0.999, MONTH, partial)
    with pytest.raises(ValueError, match="lies in"):
        evaluate_burn_alerts(0.999, MONTH, _ratios(h1=1.5))


# -- Prometheus rules --------------------------------------------------------------------------

QUERY = (
    'sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{window}}]))'
    ' / sum(rate(http_requests_total{job="checkout"}[{{window}}]))'
)


def _rules(**overrides: Any) -> Any:
    """The checkout SLO's rule file, as plain data (its two groups hold different rule shapes)."""
    arguments: dict[str, Any] = {
        "service": "checkout",
        "slo": "availability",
        "objective": 0.999,
        "window_seconds": MONTH,
        "error_ratio_query": QUERY,
    }
    return prometheus_rules(**{**arguments, **overrides})


def test_the_rule_file_records_every_window_and_alerts_once_per_policy() -> None:
    recordings, alerts = _rules(runbook_url="https://runbooks.example/slo")["groups"]
    assert [rule["record"] for rule in recordings["rules"]] == [
        f"slo:sli_error:ratio_rate{window}" for window in ("5m", "30m", "1h", "6h", "3d")
    ]
    for rule, window in zip(recordings["rules"], ("5m", "30m", "1h", "6h", "3d"), strict=True):
        assert rule["expr"] == QUERY.replace("{{window}}", window)
        assert "{{window}}" not in rule["expr"]
        assert rule["labels"] == {"slo_service": "checkout", "slo_name": "availability"}

    rules = alerts["rules"]
    assert [rule["alert"] for rule in rules] == ["SloErrorBudgetBurn"] * 3
    assert [
        (rule["labels"]["severity"], rule["labels"]["long_window"], rule["labels"]["short_window"])
        for rule in rules
    ] == [("page", "1h", "5m"), ("page", "6h", "30m"), ("ticket", "3d", "6h")]
    selector = '{slo_service="checkout",slo_name="availability"}'
    assert rules[0]["expr"] == (
        f"slo:sli_error:ratio_rate1h{selector} > (14.4 * 0.001)"
        f" and slo:sli_error:ratio_rate5m{selector} > (14.4 * 0.001)"
    )
    assert "> (6.0 * 0.001)" in rules[1]["expr"]
    assert "> (1.0 * 0.001)" in rules[2]["expr"]
    for rule in rules:
        assert "for" not in rule
        assert rule["annotations"]["runbook_url"] == "https://runbooks.example/slo"
        assert {"summary", "description"} <= rule["annotations"].keys()
    assert "2% of the 30d error budget" in rules[0]["annotations"]["description"]
    assert "runbook_url" not in _rules()["groups"][1]["rules"][0]["annotations"]


def test_the_rendered_yaml_reads_back_as_the_same_document() -> None:
    document = _rules(service='shop "eu"\\west', runbook_url="https://runbooks.example/slo")
    text = render_rules(document)
    assert yaml.safe_load(text) == document
    # One expression a line, keys in Prometheus' usual order.
    assert text.index("record:") < text.index("expr:") < text.index("labels:")
    assert all(len(line) < 1000 for line in text.splitlines())


def test_label_values_are_escaped_as_promql_strings() -> None:
    expr = _rules(service='shop "eu"\\west', slo="a\nb")["groups"][1]["rules"][0]["expr"]
    assert 'slo_service="shop \\"eu\\"\\\\west"' in expr
    assert 'slo_name="a\\nb"' in expr


@PROPERTIES
@given(
    objective=OBJECTIVES,
    window=st.sampled_from([7 * DAY, FOUR_WEEKS, MONTH, 90 * DAY]),
    ratios=st.lists(st.floats(min_value=0, max_value=0.05), min_size=5, max_size=5),
)
def test_the_rules_fire_exactly_when_the_python_evaluation_does(
    objective: float, window: int, ratios: list[float]
) -> None:
    observed = dict(zip(ALERT_WINDOWS_SECONDS, ratios, strict=True))
    alerts = _rules(objective=objective, window_seconds=window)["groups"][1]["rules"]
    limit = re.compile(r"ratio_rate(\w+)\{[^}]*\} > \(([^ ]+) \* ([^ ]+)\)")
    windows = {prometheus_duration(seconds): seconds for seconds in ALERT_WINDOWS_SECONDS}
    for rule, verdict in zip(
        alerts, evaluate_burn_alerts(objective, window, observed), strict=True
    ):
        comparisons = limit.findall(rule["expr"])
        assert len(comparisons) == 2
        # What Prometheus computes from the text: each side's ratio > (threshold * budget).
        fires = all(
            observed[windows[name]] > float(threshold) * float(budget)
            for name, threshold, budget in comparisons
        )
        assert fires == verdict.firing
        assert float(comparisons[0][1]) == verdict.threshold


@pytest.mark.parametrize(
    "overrides",
    [
        {"error_ratio_query": "sum(rate(errors[5m]))"},
        {"service": ""},
        {"service": "  "},
        {"slo": ""},
        {"objective": 1.0},
        {"objective": 0.0},
        {"window_seconds": 0},
        {"window_seconds": 86400.5},
        {"window_seconds": DAY},  # shorter than the ticket policy's three days
        {"policies": ()},
    ],
)
def test_the_rules_refuse_bad_inputs(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case breaks a different rule
        _rules(**overrides)


def test_durations_are_written_in_their_largest_whole_unit() -> None:
    assert [prometheus_duration(s) for s in (1, 60, 90, 5400, 86400, FOUR_WEEKS)] == [
        "1s",
        "1m",
        "90s",
        "90m",
        "1d",
        "28d",
    ]
    for bad in (0, -60, True):
        with pytest.raises(ValueError, match="positive whole number"):
            prometheus_duration(bad)


# -- k of n --------------------------------------------------------------------------------------

PROBABILITIES = st.floats(min_value=0, max_value=1)
HIGH = st.floats(min_value=0.5, max_value=1)  # availabilities, mostly


def exact_at_least(k: int, probabilities: Sequence[float]) -> Fraction:
    """P(at least k occur), summed over every outcome of the independent events."""
    exact = [Fraction(p) for p in probabilities]
    total = Fraction(0)
    for outcome in itertools.product((True, False), repeat=len(exact)):
        if sum(outcome) >= k:
            total += math.prod(
                (p if up else 1 - p for p, up in zip(exact, outcome, strict=True)),
                start=Fraction(1),
            )
    return total


@PROPERTIES
@given(st.lists(PROBABILITIES, min_size=1, max_size=12))
@example([1e-200, 1e-200])
@example([0.999999] * 12)
def test_all_of_n_is_the_product(probabilities: list[float]) -> None:
    expected = math.prod((Fraction(p) for p in probabilities), start=Fraction(1))
    assert_close(at_least(len(probabilities), probabilities), expected, floor=TINY)


@PROPERTIES
@given(st.lists(PROBABILITIES, min_size=1, max_size=12) | st.lists(HIGH, min_size=2, max_size=12))
@example([1e-12, 1e-12, 1e-12])  # rare events: the tiny answer keeps its digits
@example([0.99999, 0.99999])
@example([0.7, 0.8, 0.9, 0.95, 0.99, 0.999])
def test_one_of_n_is_one_minus_the_product_of_failures(probabilities: list[float]) -> None:
    failures = math.prod((1 - Fraction(p) for p in probabilities), start=Fraction(1))
    availability = at_least(1, probabilities)
    assert_close(availability, 1 - failures, floor=TINY)
    if availability >= 0.5:
        # The unavailability, the figure people read, is off by at most one unit in the last
        # place of a double just below 1 (2**-53), from the final subtraction, plus the
        # product's own rounding, relative to the failures: summing the up side instead
        # would be off by several units however small the failures are.
        slack = 1 + 2 * len(probabilities) * failures
        assert abs((1 - availability) - failures) <= Fraction(2) ** -53 * slack


@PROPERTIES
@given(st.integers(min_value=1, max_value=30), PROBABILITIES, st.data())
@example(n=5, p=1e-5, data=None)
@example(n=30, p=0.9999, data=None)
def test_k_of_n_identical_is_the_binomial_sum(n: int, p: float, data: st.DataObject | None) -> None:
    ks = range(-1, n + 2) if data is None else [data.draw(st.integers(-1, n + 1), label="k")]
    exact = Fraction(p)
    for k in ks:
        expected = sum(
            (math.comb(n, i) * exact**i * (1 - exact) ** (n - i) for i in range(max(k, 0), n + 1)),
            start=Fraction(0),
        )
        assert_close(at_least(k, [p] * n), expected, floor=TINY)


@PROPERTIES
@given(st.lists(PROBABILITIES, min_size=1, max_size=8), st.data())
def test_k_of_n_matches_every_outcome_summed(
    probabilities: list[float], data: st.DataObject
) -> None:
    k = data.draw(st.integers(min_value=0, max_value=len(probabilities) + 1), label="k")
    assert_close(at_least(k, probabilities), exact_at_least(k, probabilities), floor=TINY)


def test_probabilities_outside_zero_to_one_are_refused() -> None:
    for bad in (-0.1, 1.1, math.nan):
        with pytest.raises(ValueError, match="lies in"):
            at_least(1, [0.5, bad])


# -- Composite availability --------------------------------------------------------------------


def plain(*targets: str) -> tuple[Requirement, ...]:
    """One plain dependency on each target."""
    return tuple(Requirement((target,), 1) for target in targets)


def exact_reliability(name: str, nodes: Mapping[str, Node]) -> Fraction:
    """P(name is up), summed over every up/down state of every entity (small graphs only).

    An entity is up when it is up itself and each requirement has k targets up:
    the structure function, with no independence shortcut.
    """
    names = sorted(nodes)
    own = {n: Fraction(nodes[n].own) for n in names}
    total = Fraction(0)
    for states in itertools.product((True, False), repeat=len(names)):
        alive = dict(zip(names, states, strict=True))
        memo: dict[str, bool] = {}

        def up(entity: str, alive: dict[str, bool] = alive, memo: dict[str, bool] = memo) -> bool:
            if entity not in memo:
                memo[entity] = alive[entity] and all(
                    sum(up(t) for t in r.targets) >= r.required for r in nodes[entity].requirements
                )
            return memo[entity]

        if up(name):
            total += math.prod(
                (own[n] if alive[n] else 1 - own[n] for n in names), start=Fraction(1)
            )
    return total


def test_a_chain_multiplies_and_a_diamond_counts_the_shared_entity_once() -> None:
    chain = {"web": Node(0.99, plain("api")), "api": Node(0.98, plain("db")), "db": Node(0.97)}
    assert_close(composite_availability(chain)["web"], 0.99 * 0.98 * 0.97)

    diamond = {
        "top": Node(0.99, plain("left", "right")),
        "left": Node(0.98, plain("bottom")),
        "right": Node(0.97, plain("bottom")),
        "bottom": Node(0.96),
    }
    # The bottom is needed on both paths, and counted once: the exact answer.
    assert_close(composite_availability(diamond)["top"], 0.99 * 0.98 * 0.97 * 0.96)
    assert_close(composite_availability(diamond)["top"], exact_reliability("top", diamond))
    assert compose(diamond).required("top") == ["bottom", "left", "right", "top"]


def test_groups_combine_their_members_and_count_what_they_share_once() -> None:
    nodes = {
        "api": Node(
            0.999,
            (
                Requirement(("replica-1", "replica-2", "replica-3"), 2),
                Requirement(("cache-a", "cache-b"), 1),
            ),
        ),
        "replica-1": Node(0.99, plain("disk")),
        "replica-2": Node(0.99, plain("disk")),
        "replica-3": Node(0.99, plain("disk")),
        "disk": Node(0.9),
        "cache-a": Node(0.95),
        "cache-b": Node(0.95),
    }
    replica = Fraction(0.99)
    quorum = 3 * replica**2 * (1 - replica) + replica**3
    caches = 1 - (1 - Fraction(0.95)) ** 2
    # Every two replicas need the disk, so the quorum needs it: once, outside the group.
    expected = Fraction(0.999) * Fraction(0.9) * quorum * caches
    assert_close(composite_availability(nodes)["api"], expected)
    assert_close(composite_availability(nodes)["api"], exact_reliability("api", nodes))
    assert "disk" in compose(nodes).required("api")


def test_a_quorum_needs_what_enough_of_its_members_need() -> None:
    # 2 of 3: what two members need, every pair has a member that needs it.
    nodes = {
        "svc": Node(1.0, (Requirement(("a", "b", "c"), 2),)),
        "a": Node(0.9, plain("x")),
        "b": Node(0.9, plain("x")),
        "c": Node(0.9),
        "x": Node(0.8),
    }
    assert "x" in compose(nodes).required("svc")
    assert_close(composite_availability(nodes)["svc"], exact_reliability("svc", nodes))
    # 1 of 3: only what all three need is required. x, shared by two members only, is
    # counted inside each: the independence estimate 1 - (1 - 0.72)² (1 - 0.9), above the
    # exact 0.9792 (the documented limit of the model).
    nodes["svc"] = Node(1.0, (Requirement(("a", "b", "c"), 1),))
    assert "x" not in compose(nodes).required("svc")
    estimate = 1 - (1 - Fraction(0.9) * Fraction(0.8)) ** 2 * (1 - Fraction(0.9))
    assert_close(composite_availability(nodes)["svc"], estimate)
    assert_close(float(exact_reliability("svc", nodes)), 0.9792)


@st.composite
def plain_dags(draw: st.DrawFn, max_nodes: int = 8) -> dict[str, Node]:
    """Random DAGs of plain and all-of-n dependencies, diamonds everywhere."""
    count = draw(st.integers(min_value=1, max_value=max_nodes))
    nodes: dict[str, Node] = {}
    for index in range(count):
        targets = draw(
            st.lists(st.integers(min_value=0, max_value=max(index - 1, 0)), max_size=3, unique=True)
            if index
            else st.just([])
        )
        own = draw(st.floats(min_value=0.5, max_value=1.0))
        nodes[f"n{index}"] = Node(own, plain(*(f"n{t}" for t in targets)))
    return nodes


@PROPERTIES
@given(plain_dags())
def test_without_redundancy_every_composite_is_exact(nodes: dict[str, Node]) -> None:
    composites = composite_availability(nodes)
    for name in nodes:
        assert_close(composites[name], exact_reliability(name, nodes))


def test_a_long_chain_needs_no_recursion() -> None:
    depth = 2000  # twice Python's default recursion limit
    nodes = {f"s{i}": Node(0.9999, plain(f"s{i + 1}")) for i in range(depth - 1)}
    nodes[f"s{depth - 1}"] = Node(0.99)  # the culprit, at the very bottom
    composition = compose(nodes)
    assert_close(composition.composites["s0"], Fraction(0.9999) ** (depth - 1) * Fraction(0.99))
    assert composition.weakest_links("s0", 1)[0].target == f"s{depth - 1}"
    assert affected_by([f"s{depth - 1}"], nodes) == set(nodes)


@pytest.mark.parametrize(
    ("nodes", "cycle"),
    [
        ({"a": Node(1.0, plain("a"))}, ("a", "a")),
        (
            {"a": Node(1.0, plain("b")), "b": Node(1.0, plain("c")), "c": Node(1.0, plain("a"))},
            ("a", "b", "c", "a"),
        ),
        # Reached only from a later entry, past a finished one; the lead-in is no part of it.
        (
            {
                "leaf": Node(1.0),
                "entry": Node(1.0, plain("leaf", "b")),
                "b": Node(1.0, plain("c")),
                "c": Node(1.0, (Requirement(("leaf", "b"), 1),)),
            },
            ("b", "c", "b"),
        ),
    ],
    ids=["self", "triangle", "later"],
)
def test_a_cycle_is_named(nodes: dict[str, Node], cycle: tuple[str, ...]) -> None:
    with pytest.raises(DependencyCycle) as raised:
        composite_availability(nodes)
    assert raised.value.cycle == cycle
    assert " → ".join(cycle) in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_unknown_targets_are_named() -> None:
    nodes = {"web": Node(1.0, plain("ghost", "api")), "api": Node(1.0, plain("phantom"))}
    with pytest.raises(KeyError, match="ghost, phantom") as raised:
        composite_availability(nodes)
    assert isinstance(raised.value, UnknownTargets)
    assert raised.value.targets == ("ghost", "phantom")


def test_impossible_requirements_and_nodes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one target"):
        Requirement((), 1)
    with pytest.raises(ValueError, match="each target once"):
        Requirement(("a", "a"), 1)
    for required in (0, 3, True):
        with pytest.raises(ValueError, match="between 1 and 2"):
            Requirement(("a", "b"), required)
    for own in (-0.1, 1.1, math.nan):
        with pytest.raises(ValueError, match=r"lies in \[0, 1\]"):
            Node(own)


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 10) -> dict[str, Node]:
    """Random DAGs mixing plain, redundant, quorum and all-of-n groups, listed in any order.

    Node i only needs nodes before it; a target may sit in several of a node's groups.
    """
    count = draw(st.integers(min_value=1, max_value=max_nodes))
    nodes: dict[str, Node] = {}
    for index in range(count):
        requirements = []
        for _ in range(draw(st.integers(min_value=0, max_value=3)) if index else 0):
            size = draw(st.integers(min_value=1, max_value=min(4, index)))
            members = draw(
                st.lists(
                    st.integers(min_value=0, max_value=index - 1),
                    min_size=size,
                    max_size=size,
                    unique=True,
                )
            )
            required = draw(st.integers(min_value=1, max_value=size))
            requirements.append(Requirement(tuple(f"n{m}" for m in members), required))
        own = draw(st.just(1.0) | st.floats(min_value=0.5, max_value=1.0))
        nodes[f"n{index}"] = Node(own, tuple(requirements))
    order = draw(st.permutations(list(nodes)))
    return {name: nodes[name] for name in order}


@PROPERTIES
@given(plain_dags())
def test_each_weak_link_gains_what_the_exact_answer_gains(nodes: dict[str, Node]) -> None:
    composition = compose(nodes)
    for name in nodes:
        links = composition.weakest_links(name, limit=100)
        gains = [link.gain for link in links]
        assert gains == sorted(gains, reverse=True)
        assert {link.target for link in links} <= set(composition.required(name))
        for link in links:
            target = nodes[link.target]
            improved = {**nodes, link.target: Node(1.0, target.requirements)}
            exact_gain = exact_reliability(name, improved) - exact_reliability(name, nodes)
            assert_close(link.gain, exact_gain)


@PROPERTIES
@given(dags())
def test_weak_links_are_ranked_and_within_what_is_required(nodes: dict[str, Node]) -> None:
    composition = compose(nodes)
    for name in nodes:
        links = composition.weakest_links(name, limit=100)
        gains = [link.gain for link in links]
        assert gains == sorted(gains, reverse=True)
        assert all(gain > 0 for gain in gains)
        assert {link.target for link in links} <= set(composition.required(name))


def test_the_weakest_links_name_the_culprit_and_redundancy() -> None:
    nodes = {
        "web": Node(0.99995, plain("api")),
        "api": Node(0.999, (*plain("db"), Requirement(("cache-a", "cache-b"), 1, "caches"))),
        "db": Node(0.995, plain("disk")),
        "disk": Node(0.9),
        "cache-a": Node(0.99),
        "cache-b": Node(0.99),
    }
    composition = compose(nodes)
    links = composition.weakest_links("web")
    assert [(link.target, link.group) for link in links] == [
        ("disk", ""),
        ("db", ""),
        ("api", ""),
        ("api", "caches"),
        ("web", ""),
    ]
    web = composition.composites["web"]
    assert_close(links[0].gain, web / 0.9 - web)
    assert_close(links[3].gain, web / (1 - 0.01**2) - web)

    perfect = {"web": Node(1.0, plain("api")), "api": Node(1.0)}
    assert compose(perfect).weakest_links("web") == []
    dead = {"web": Node(0.9, plain("api")), "api": Node(0.0)}
    assert compose(dead).weakest_links("web")[0].target == "api"
    assert_close(compose(dead).weakest_links("web")[0].gain, 0.9)


def test_affected_by_walks_the_dependents() -> None:
    nodes = {
        "web": Node(1.0, plain("api")),
        "api": Node(1.0, (*plain("db"), Requirement(("cache-a", "cache-b"), 1))),
        "batch": Node(1.0, plain("db")),
        "db": Node(1.0),
        "cache-a": Node(1.0),
        "cache-b": Node(1.0),
        "lonely": Node(1.0),
    }
    assert affected_by(["cache-b"], nodes) == {"cache-b", "api", "web"}
    assert affected_by(["db"], nodes) == {"db", "api", "web", "batch"}
    assert affected_by(["web", "lonely"], nodes) == {"web", "lonely"}
    assert affected_by([], nodes) == set()


@PROPERTIES
@given(dags(max_nodes=12), st.data())
def test_a_change_moves_no_composite_outside_affected_by(
    nodes: dict[str, Node], data: st.DataObject
) -> None:
    changed = data.draw(st.sampled_from(sorted(nodes)), label="changed")
    assume(nodes[changed].own != 0.25)
    before = composite_availability(nodes)
    after = composite_availability({**nodes, changed: Node(0.25, nodes[changed].requirements)})
    moved = {name for name in nodes if after[name] != before[name]}
    assert changed in moved
    assert moved <= affected_by([changed], nodes)
