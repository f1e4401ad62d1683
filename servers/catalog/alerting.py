"""Prometheus rule files that alert on an SLO's error-budget burn, from its burn-rate policies.

The shape is Sloth's and Pyrra's: one recording rule per window the policies
read, `slo:sli_error:ratio_rate<window>`, holding the SLI's error ratio over
that window, and one alert per policy that fires while both its long and its
short window burn faster than the policy's threshold. The thresholds come from
`servers.catalog.budgets`, whose `evaluate_burn_alerts` makes the same
comparison in Python, so the catalog shows the alerts these rules would raise.

>>> document = prometheus_rules(
...     service="checkout",
...     slo="availability",
...     objective=0.999,
...     window_seconds=30 * 86400,
...     error_ratio_query="sum(rate(errors[{{window}}])) / sum(rate(requests[{{window}}]))",
... )
>>> [rule["record"] for rule in document["groups"][0]["rules"]][:2]
['slo:sli_error:ratio_rate5m', 'slo:sli_error:ratio_rate30m']
>>> print(document["groups"][1]["rules"][0]["expr"])  # doctest: +NORMALIZE_WHITESPACE
slo:sli_error:ratio_rate1h{slo_service="checkout",slo_name="availability"} > (14.4 * 0.001)
and slo:sli_error:ratio_rate5m{slo_service="checkout",slo_name="availability"} > (14.4 * 0.001)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypedDict

import yaml

from servers.catalog.budgets import (
    WORKBOOK_POLICIES,
    BurnRatePolicy,
    alert_windows_seconds,
    error_budget,
    policies_for,
)
from servers.catalog.specs import SloSpec

__all__ = [
    "ALERT_NAME",
    "WINDOW_PLACEHOLDER",
    "AlertingRule",
    "RecordingRule",
    "RuleFile",
    "RuleGroup",
    "prometheus_duration",
    "prometheus_rules",
    "promql_string",
    "recording_rule_name",
    "render_rules",
    "slo_rules",
]

# Where the error-ratio query takes its range, as in Sloth's `{{.window}}`.
WINDOW_PLACEHOLDER = "{{window}}"
# One name for every policy, so Alertmanager groups an SLO's alerts; the labels tell them apart.
ALERT_NAME = "SloErrorBudgetBurn"

# Largest first: a duration is written in the largest unit that divides it.
_DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


class RecordingRule(TypedDict):
    """A Prometheus recording rule, keys in the order people write them."""

    record: str
    expr: str
    labels: dict[str, str]


class AlertingRule(TypedDict):
    """A Prometheus alerting rule, keys in the order people write them."""

    alert: str
    expr: str
    labels: dict[str, str]
    annotations: dict[str, str]


class RuleGroup(TypedDict):
    """A named group of rules, evaluated together."""

    name: str
    rules: list[RecordingRule] | list[AlertingRule]


class RuleFile(TypedDict):
    """A Prometheus rule file, as `promtool check rules` reads it."""

    groups: list[RuleGroup]


def prometheus_duration(seconds: int) -> str:
    """A whole number of seconds as a Prometheus duration, in the largest unit that divides it.

    Days rather than weeks, since SLO windows are spoken of in days (28d, not 4w).

    Raises:
        ValueError: The duration is not a positive whole number of seconds.

    >>> [prometheus_duration(s) for s in (300, 1800, 3600, 21600, 259200, 90)]
    ['5m', '30m', '1h', '6h', '3d', '90s']
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise ValueError(f"a duration is a positive whole number of seconds, not {seconds!r}")
    for unit, size in _DURATION_UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: every whole number of seconds divides by 1 s")


def promql_string(value: str) -> str:
    r"""A PromQL double-quoted string literal holding `value` (Go's escapes).

    >>> print(promql_string('say "hi" \\ bye'))
    "say \"hi\" \\ bye"
    """
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def recording_rule_name(window_seconds: int) -> str:
    """The series holding the SLI's error ratio over a window, as Sloth names it.

    >>> recording_rule_name(3600)
    'slo:sli_error:ratio_rate1h'
    """
    return f"slo:sli_error:ratio_rate{prometheus_duration(window_seconds)}"


def prometheus_rules(
    *,
    service: str,
    slo: str,
    objective: float,
    window_seconds: int,
    error_ratio_query: str,
    policies: Iterable[BurnRatePolicy] = WORKBOOK_POLICIES,
    runbook_url: str = "",
) -> RuleFile:
    """The recording and alerting rules that watch one SLO's error-budget burn.

    The alerts have no `for:`: the short window already keeps a policy from
    firing on a blip and lets it resolve soon after the burn stops, and a
    `for:` would only delay the page (the workbook's reasoning).

    Args:
        service: The catalog service the SLO belongs to (label `slo_service`).
        slo: The SLO's name within the service (label `slo_name`).
        objective: The target share of good events, in (0, 1).
        window_seconds: The SLO window, a whole number of seconds.
        error_ratio_query: PromQL for the error ratio (bad / total) over
            `{{window}}`, which each recording rule replaces with its window.
        policies: The burn-rate policies, one alert each; the workbook's by default.
        runbook_url: Added to every alert's annotations when given.

    Returns:
        The rule file: a group of recording rules, then a group of alerts.

    Raises:
        ValueError: The service or SLO name is blank, the query lacks
            `{{window}}`, there is no policy, or the objective or a window is
            out of range.
    """
    if not service.strip() or not slo.strip():
        raise ValueError("an SLO's rules need a service name and an SLO name")
    if WINDOW_PLACEHOLDER not in error_ratio_query:
        raise ValueError(f"the error-ratio query must contain {WINDOW_PLACEHOLDER} for its range")
    chosen = tuple(policies)
    if not chosen:
        raise ValueError("an SLO's rules need at least one burn-rate policy")
    budget = error_budget(objective)
    window_text = prometheus_duration(window_seconds)
    identity = {"slo_service": service, "slo_name": slo}
    selector = "{" + ",".join(f"{name}={promql_string(value)}" for name, value in identity.items())
    selector += "}"

    recordings: list[RecordingRule] = [
        {
            "record": recording_rule_name(window),
            "expr": error_ratio_query.replace(WINDOW_PLACEHOLDER, prometheus_duration(window)),
            "labels": dict(identity),
        }
        for window in alert_windows_seconds(chosen)
    ]

    alerts: list[AlertingRule] = []
    for policy in chosen:
        threshold = policy.threshold(window_seconds)
        # repr() writes the shortest text that reads back as the same float, so Prometheus
        # compares against exactly the limit `evaluate_burn_alerts` uses.
        limit = f"({threshold!r} * {budget!r})"
        long_text = prometheus_duration(policy.long_window_seconds)
        short_text = prometheus_duration(policy.short_window_seconds)
        expr = (
            f"{recording_rule_name(policy.long_window_seconds)}{selector} > {limit} "
            f"and {recording_rule_name(policy.short_window_seconds)}{selector} > {limit}"
        )
        share = f"{policy.budget_fraction * 100:g}%"
        # Names reach the text through $labels, never pasted in, so a `{{` in one cannot
        # become template code.
        annotations = {
            "summary": (
                "{{ $labels.slo_service }} is burning the error budget of its SLO "
                f"{{{{ $labels.slo_name }}}} {threshold:g} times too fast"
            ),
            # No $value: it reads a recording rule of another group, whose evaluation
            # may or may not have run yet in the same step, so the text would change
            # with evaluation order (and promtool's tests with it).
            "description": (
                f"Over both the last {long_text} and the last {short_text} the error ratio is "
                f"above {threshold:g} times the budget of {budget!r}: at this rate {share} of "
                f"the {window_text} error budget is spent within {long_text}."
            ),
        }
        if runbook_url:
            annotations["runbook_url"] = runbook_url
        alerts.append(
            {
                "alert": ALERT_NAME,
                "expr": expr,
                "labels": {
                    "severity": policy.severity,
                    **identity,
                    "long_window": long_text,
                    "short_window": short_text,
                },
                "annotations": annotations,
            }
        )

    return {
        "groups": [
            {"name": f"slo-sli-recordings-{service}-{slo}", "rules": recordings},
            {"name": f"slo-alerts-{service}-{slo}", "rules": alerts},
        ]
    }


def slo_rules(service: str, slo: SloSpec, runbook_url: str = "") -> RuleFile:
    """The rules watching one catalog SLO, with the workbook's policies that fit its window.

    The one way a `SloSpec` becomes rules: the catalog's `AlertRules` RPC and
    the platform's own rule files (`deploy/prometheus/generate.py`) both call it.

    Raises:
        ValueError: The SLO has no indicator queries to alert on, or
            `prometheus_rules` refuses it.

    >>> from servers.catalog.specs import IndicatorSpec
    >>> indicator = IndicatorSpec(
    ...     bad_query="sum(rate(errors[{{window}}]))", total_query="sum(rate(calls[{{window}}]))"
    ... )
    >>> rules = slo_rules("api", SloSpec("availability", 0.999, indicator=indicator))
    >>> [rule["labels"]["long_window"] for rule in rules["groups"][1]["rules"]]
    ['1h', '6h', '3d']
    """
    if not slo.indicator.measurable:
        raise ValueError(f"the SLO {slo.name!r} has no indicator queries to alert on")
    window = slo.window.seconds()
    return prometheus_rules(
        service=service,
        slo=slo.name,
        objective=slo.objective,
        window_seconds=window,
        error_ratio_query=slo.indicator.error_ratio_query(),
        policies=policies_for(window),
        runbook_url=runbook_url,
    )


class _RuleDumper(yaml.SafeDumper):
    """Writes a multi-line expression as a literal block, one PromQL line a YAML line."""

    def represent_str(self, data: str) -> yaml.ScalarNode:
        # The emitter falls back to a quoted style where a block cannot hold the text.
        return self.represent_scalar("tag:yaml.org,2002:str", data, "|" if "\n" in data else None)


_RuleDumper.add_representer(str, _RuleDumper.represent_str)


def render_rules(document: RuleFile) -> str:
    r"""The rule file as YAML, keys in the order built and expressions unwrapped.

    >>> print(render_rules({"groups": [{"name": "g", "rules": [{"expr": "a\n/\nb"}]}]}), end="")
    groups:
    - name: g
      rules:
      - expr: |-
          a
          /
          b
    """
    return yaml.dump(
        document, Dumper=_RuleDumper, sort_keys=False, allow_unicode=True, width=math.inf
    )
