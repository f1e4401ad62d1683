"""Error budgets and multi-window, multi-burn-rate alerts for one SLO, as pure arithmetic.

The definitions are the Google SRE workbook's ("Implementing SLOs" and
"Alerting on SLOs"): an objective of 99.9% leaves an error budget B = 0.1% of
the events (or of the time) in its window; a burn rate is the observed error
ratio divided by B, so burning at rate 1 spends exactly the budget by the end
of the window. Nothing here knows about gRPC, SQL or Prometheus; the rule files
that watch the same policies are built by `servers.catalog.alerting`.

>>> error_budget(0.999)
0.001
>>> budget_report(0.999, 30 * 86400, total_events=0, bad_events=0).time_budget_seconds / 60
43.2
>>> [policy.threshold(30 * 86400) for policy in WORKBOOK_POLICIES]
[14.4, 6.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "ALERT_WINDOWS_SECONDS",
    "WORKBOOK_POLICIES",
    "BudgetReport",
    "BurnAlert",
    "BurnRatePolicy",
    "alert_windows_seconds",
    "budget_report",
    "error_budget",
    "evaluate_burn_alerts",
]


def error_budget(objective: float) -> float:
    """The share of events an SLO may get wrong: B = 1 - objective.

    The subtraction is done in decimal on the objective as written (its
    shortest round-tripping form), then rounded once, so 0.999 leaves exactly
    the budget 0.001 its operator meant rather than binary's
    0.0010000000000000009; rule files then read `0.001` and a month's time
    budget is 2592 s, not 2592.0000000000023 s.

    Args:
        objective: The target share of good events, strictly between 0 and 1.

    Returns:
        The error budget B, strictly between 0 and 1.

    Raises:
        ValueError: The objective is not in the open interval (0, 1); 1 would
            leave no budget to burn and 0 no objective.

    >>> error_budget(0.9995)
    0.0005
    """
    if not 0 < objective < 1:
        raise ValueError(f"an objective must lie strictly between 0 and 1, not {objective!r}")
    return float(Decimal(1) - Decimal(repr(float(objective))))


@dataclass(frozen=True, slots=True)
class BudgetReport:
    """Where one SLO stands against its error budget, in events and in time.

    Attributes:
        objective: The target share of good events.
        error_budget: B = 1 - objective.
        window_seconds: The SLO window (for example 30 days).
        elapsed_seconds: How much of the window the counts cover.
        total_events: Events observed over the elapsed part.
        bad_events: Of those, the ones that missed the objective.
        attainment: good / total; 1.0 without traffic (nothing went wrong).
        error_ratio: bad / total; 0.0 without traffic.
        allowed_bad_events: The bad events the whole window may hold, with the
            observed traffic projected to the window: B * total * window / elapsed.
        consumed: The share of the window's budget already spent, bad /
            allowed_bad_events; 0.0 without traffic.
        remaining: 1 - consumed; negative once the budget is overspent.
        time_budget_seconds: The budget as time, B * window (99.9% over 30 days
            is 2592 s, 43.2 minutes).
        consumed_seconds: consumed * time budget.
        remaining_seconds: remaining * time budget; negative when overspent.
        burn_rate: error_ratio / B over the elapsed part; 1.0 spends exactly the
            budget by the end of the window.
        exhaustion_seconds: How long until the remaining budget is gone at the
            current burn rate; 0.0 when it is already gone, None when nothing
            burns it (or so little that the time overflows a float).
    """

    objective: float
    error_budget: float
    window_seconds: float
    elapsed_seconds: float
    total_events: float
    bad_events: float
    attainment: float
    error_ratio: float
    allowed_bad_events: float
    consumed: float
    remaining: float
    time_budget_seconds: float
    consumed_seconds: float
    remaining_seconds: float
    burn_rate: float
    exhaustion_seconds: float | None


def time_budget(budget: float, window_seconds: float) -> float:
    """The error budget as time, B * window, in decimal as B is (0.001 over 28 days: 2419.2 s)."""
    return float(Decimal(repr(budget)) * Decimal(repr(float(window_seconds))))


def budget_report(
    objective: float,
    window_seconds: float,
    total_events: float,
    bad_events: float,
    *,
    elapsed_seconds: float | None = None,
    current_burn_rate: float | None = None,
) -> BudgetReport:
    """Error budget, its consumption and its exhaustion for the counts seen so far.

    Counts are floats as well as ints because they usually come from
    Prometheus' `increase()`, which extrapolates.

    Args:
        objective: The target share of good events, in (0, 1).
        window_seconds: The SLO window, positive.
        total_events: Events over the elapsed part of the window, ≥ 0.
        bad_events: Of those, the bad ones, 0 ≤ bad ≤ total.
        elapsed_seconds: How much of the window the counts cover, in
            (0, window]; the whole window when omitted.
        current_burn_rate: The burn rate to extrapolate the exhaustion with,
            typically the one over the last hour; the elapsed part's average
            `burn_rate` when omitted.

    Returns:
        The report; see `BudgetReport` for each figure.

    Raises:
        ValueError: An argument is out of the range given above, or not finite.

    >>> report = budget_report(0.99, 1000, total_events=500, bad_events=2, elapsed_seconds=500)
    >>> report.allowed_bad_events, report.consumed, report.burn_rate
    (10.0, 0.2, 0.4)
    >>> report.exhaustion_seconds  # 80% of the budget left, burning 0.4 budgets a window
    2000.0
    """
    budget = error_budget(objective)
    if not (math.isfinite(window_seconds) and window_seconds > 0):
        raise ValueError(f"the window must be a positive duration, not {window_seconds!r}")
    elapsed = window_seconds if elapsed_seconds is None else elapsed_seconds
    if not 0 < elapsed <= window_seconds:
        raise ValueError(f"the elapsed time {elapsed!r} must lie in (0, {window_seconds!r}]")
    if not (math.isfinite(total_events) and 0 <= bad_events <= total_events):
        raise ValueError(
            f"counts need 0 ≤ bad ≤ total, not bad={bad_events!r} total={total_events!r}"
        )
    if current_burn_rate is not None and not (
        math.isfinite(current_burn_rate) and current_burn_rate >= 0
    ):
        raise ValueError(f"a burn rate is finite and ≥ 0, not {current_burn_rate!r}")

    if total_events > 0:
        attainment = (total_events - bad_events) / total_events
        error_ratio = bad_events / total_events
        allowed_bad_events = budget * total_events * window_seconds / elapsed
        consumed = bad_events / allowed_bad_events
    else:
        attainment = 1.0
        error_ratio = 0.0
        allowed_bad_events = 0.0
        consumed = 0.0
    remaining = 1.0 - consumed
    time_budget_seconds = time_budget(budget, window_seconds)
    burn_rate = error_ratio / budget
    rate = burn_rate if current_burn_rate is None else current_burn_rate
    exhaustion_seconds: float | None
    if remaining <= 0:
        exhaustion_seconds = 0.0
    elif rate == 0:
        exhaustion_seconds = None
    else:
        # Burning at rate r spends r budgets per window, so 1 / r windows empty a whole one.
        exhaustion_seconds = remaining * window_seconds / rate
        if math.isinf(exhaustion_seconds):  # a rate so near 0 that it never runs out either
            exhaustion_seconds = None
    return BudgetReport(
        objective=objective,
        error_budget=budget,
        window_seconds=window_seconds,
        elapsed_seconds=elapsed,
        total_events=total_events,
        bad_events=bad_events,
        attainment=attainment,
        error_ratio=error_ratio,
        allowed_bad_events=allowed_bad_events,
        consumed=consumed,
        remaining=remaining,
        time_budget_seconds=time_budget_seconds,
        consumed_seconds=consumed * time_budget_seconds,
        remaining_seconds=remaining * time_budget_seconds,
        burn_rate=burn_rate,
        exhaustion_seconds=exhaustion_seconds,
    )


@dataclass(frozen=True, slots=True)
class BurnRatePolicy:
    """One multi-window burn-rate alert: `budget_fraction` of the budget spent in the long window.

    The short window (a twelfth of the long one in the workbook) makes the
    alert stop soon after the burning stops, instead of for as long as the long
    window still remembers it.

    Attributes:
        severity: What the alert does, for example "page" or "ticket".
        long_window_seconds: The window the budget share is measured over.
        short_window_seconds: The window that confirms the burn is still going.
        budget_fraction: The share of the whole window's budget that, once
            spent within the long window, raises the alert (0.02 for 2%).
    """

    severity: str
    long_window_seconds: int
    short_window_seconds: int
    budget_fraction: float

    def __post_init__(self) -> None:
        if not self.severity:
            raise ValueError("a burn-rate policy needs a severity")
        if not 0 < self.short_window_seconds < self.long_window_seconds:
            raise ValueError(
                f"windows need 0 < short < long, not short={self.short_window_seconds!r} "
                f"long={self.long_window_seconds!r}"
            )
        if not 0 < self.budget_fraction <= 1:
            raise ValueError(f"a budget fraction lies in (0, 1], not {self.budget_fraction!r}")

    def threshold(self, window_seconds: float) -> float:
        """The burn rate that spends `budget_fraction` of the budget within the long window.

        It is budget_fraction * window / long window: 14.4, 6 and 1 for the
        workbook's policies over 30 days. Other SLO windows scale the same way,
        as Sloth scales them (13.44, 5.6 and 0.933… over 28 days), so each
        policy keeps meaning "this share of the budget in this long".

        Args:
            window_seconds: The SLO window, at least as long as the long window.

        Returns:
            The burn-rate threshold.

        Raises:
            ValueError: The SLO window is shorter than the long window, whose
                burn rate it could then never observe.
        """
        if not window_seconds >= self.long_window_seconds:
            raise ValueError(
                f"the SLO window {window_seconds!r} s is shorter than the policy's long window "
                f"{self.long_window_seconds} s"
            )
        # Multiplied first: 0.02 * 2592000 / 3600 is 14.4 exactly, 0.02 * (2592000 / 3600) too,
        # but this order also gives 5.6 for 28 days where the other gives 5.6000000000000005.
        return self.budget_fraction * window_seconds / self.long_window_seconds


HOUR = 3600
DAY = 24 * HOUR

# The workbook's recommendation for a 30-day SLO ("Alerting on SLOs", table 5-8).
WORKBOOK_POLICIES = (
    BurnRatePolicy(
        "page", long_window_seconds=HOUR, short_window_seconds=300, budget_fraction=0.02
    ),
    BurnRatePolicy(
        "page", long_window_seconds=6 * HOUR, short_window_seconds=1800, budget_fraction=0.05
    ),
    BurnRatePolicy(
        "ticket", long_window_seconds=3 * DAY, short_window_seconds=6 * HOUR, budget_fraction=0.1
    ),
)


def policies_for(
    window_seconds: float, policies: Iterable[BurnRatePolicy] = WORKBOOK_POLICIES
) -> tuple[BurnRatePolicy, ...]:
    """The policies an SLO window can use: those whose long window fits in it.

    A 1-day SLO keeps the two paging policies (1 h and 6 h) and drops the
    3-day ticket, whose burn it could never observe.
    """
    return tuple(policy for policy in policies if policy.long_window_seconds <= window_seconds)


def alert_windows_seconds(policies: Iterable[BurnRatePolicy]) -> tuple[int, ...]:
    """Every long and short window the policies read, ascending, each once.

    >>> alert_windows_seconds(WORKBOOK_POLICIES)
    (300, 1800, 3600, 21600, 259200)
    """
    return tuple(
        sorted(
            {policy.long_window_seconds for policy in policies}
            | {policy.short_window_seconds for policy in policies}
        )
    )


ALERT_WINDOWS_SECONDS = alert_windows_seconds(WORKBOOK_POLICIES)


@dataclass(frozen=True, slots=True)
class BurnAlert:
    """How one policy judges the observed error ratios, and whether it fires.

    Attributes:
        policy: The policy judged.
        threshold: Its burn-rate threshold for the SLO's window.
        long_burn_rate: The burn rate over its long window.
        short_burn_rate: The burn rate over its short window.
        firing: Both windows' error ratios exceed threshold * B, strictly, as
            the generated Prometheus expression compares them.
    """

    policy: BurnRatePolicy
    threshold: float
    long_burn_rate: float
    short_burn_rate: float
    firing: bool


def evaluate_burn_alerts(
    objective: float,
    window_seconds: float,
    error_ratios: Mapping[int, float],
    policies: Iterable[BurnRatePolicy] = WORKBOOK_POLICIES,
) -> list[BurnAlert]:
    """Judge each policy against the error ratios observed over its two windows.

    `firing` compares each error ratio with `threshold * B` exactly as
    Prometheus evaluates `ratio > (threshold * B)` in the rules from
    `servers.catalog.alerting`, so an SLO shown as burning here is one that
    pages there, down to the last bit.

    Args:
        objective: The target share of good events, in (0, 1).
        window_seconds: The SLO window.
        error_ratios: The observed error ratio (bad / total, in [0, 1]) over
            each window in seconds; every policy's two windows must be there.
        policies: The policies to judge, the workbook's by default.

    Returns:
        One verdict per policy, in the policies' order.

    Raises:
        ValueError: A window is missing, a ratio is outside [0, 1], or the
            objective or window is invalid.

    >>> ratios = {300: 0.02, 1800: 0.0, 3600: 0.02, 21600: 0.003, 259200: 0.0005}
    >>> [alert.firing for alert in evaluate_burn_alerts(0.999, 30 * 86400, ratios)]
    [True, False, False]
    """
    budget = error_budget(objective)
    chosen = tuple(policies)
    missing = [window for window in alert_windows_seconds(chosen) if window not in error_ratios]
    if missing:
        raise ValueError(f"no error ratio observed over the windows {missing} (seconds)")
    for window, ratio in error_ratios.items():
        if not 0 <= ratio <= 1:
            raise ValueError(f"the error ratio over {window} s lies in [0, 1], not {ratio!r}")
    alerts = []
    for policy in chosen:
        threshold = policy.threshold(window_seconds)
        long_ratio = error_ratios[policy.long_window_seconds]
        short_ratio = error_ratios[policy.short_window_seconds]
        limit = threshold * budget
        alerts.append(
            BurnAlert(
                policy=policy,
                threshold=threshold,
                long_burn_rate=long_ratio / budget,
                short_burn_rate=short_ratio / budget,
                firing=long_ratio > limit and short_ratio > limit,
            )
        )
    return alerts
