"""The tracing settings and the sampler: new traces start at calls, at the configured ratio."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from servers.config import ConfigurationError, load_settings
from servers.tracing import Tracing, sampler


def test_new_traces_start_at_calls_at_the_configured_ratio() -> None:
    provider = TracerProvider(sampler=sampler(1.0))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("background query", kind=SpanKind.CLIENT) as query:
        assert not query.is_recording()
    with tracer.start_as_current_span("call", kind=SpanKind.SERVER) as call:
        assert call.is_recording()
        with tracer.start_as_current_span("query", kind=SpanKind.CLIENT) as inner:
            assert inner.is_recording()
    never = TracerProvider(sampler=sampler(0.0)).get_tracer("test")
    with never.start_as_current_span("call", kind=SpanKind.SERVER) as unsampled:
        assert not unsampled.is_recording()


def test_the_collector_is_an_http_url_and_tracing_stays_off_without_one() -> None:
    assert load_settings(otlp_endpoint="http://127.0.0.1:4318/").otlp_endpoint == (
        "http://127.0.0.1:4318"
    )
    assert load_settings(otlp_endpoint="http://collector:4318/v1/traces").otlp_endpoint == (
        "http://collector:4318"
    )
    for unfit in ("127.0.0.1:4317", "http://", "ftp://collector:4318"):
        with pytest.raises(ConfigurationError, match="OTLP over HTTP"):
            load_settings(otlp_endpoint=unfit)
    for ratio in (1.5, -0.1, float("nan")):
        with pytest.raises(ConfigurationError, match="CONDUCTOR_TRACE_SAMPLE_RATIO"):
            load_settings(trace_sample_ratio=ratio)
    assert not Tracing.exporting("", sample_ratio=1.0, version="0", instance="i").enabled
    on = Tracing.exporting("http://127.0.0.1:9", sample_ratio=0.5, version="1.2", instance="i")
    assert on.enabled
    assert on.provider is not None
    assert on.provider.resource.attributes["service.name"] == "intelgraph-conductor"
    on.shutdown()
