"""Prometheus metrics, one registry per application (no process-wide globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests by route and status", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        # Domain counters: kept here so every domain finds them in one place.
        self.credits_charged = Counter(
            "credits_charged_total", "Credits charged for generations by kind (sfx, voice)", ["kind"], registry=self.registry
        )
        self.logins = Counter("logins_total", "Login attempts by outcome", ["outcome"], registry=self.registry)
        self.generations = Counter(
            "generations_total", "Generations by kind and outcome", ["kind", "outcome"], registry=self.registry
        )
        self.upstream = Counter(
            "upstream_attempts_total", "Upstream calls by provider and outcome", ["provider", "outcome"], registry=self.registry
        )
        self.keys_in_flight = Gauge("keybank_in_flight", "Leases held on provider keys", ["key"], registry=self.registry)
        self.webhooks = Counter("webhooks_total", "Webhook events by type and outcome", ["type", "outcome"], registry=self.registry)
        self.holds_expired = Counter(
            "credit_holds_expired_total", "Credit holds released by the sweep after their TTL", registry=self.registry
        )

        # Key-bank and cost gauges (server/alerts): refreshed from Postgres and Redis every
        # ALERT_CHECK_INTERVAL, so every worker exports the same figures; deploy/prometheus/alerts.yml
        # holds the alerts built on them.
        self.keybank_keys = Gauge(
            "keybank_keys", "Provider keys by state: active, cooling, exhausted, disabled, invalid", ["provider", "state"],
            registry=self.registry,
        )
        self.pool_remaining = Gauge(
            "keybank_pool_remaining_units", "Quota left on the keys in rotation (characters or tokens)", ["provider"],
            registry=self.registry,
        )
        self.pool_burn = Gauge(
            "keybank_pool_burn_units_per_day", "Units spent per day, averaged over the last 7 days", ["provider"],
            registry=self.registry,
        )
        self.upstream_cost = Gauge(
            "upstream_cost_month_dollars", "Upstream cost of the calendar month so far, at UPSTREAM_PRICES", ["provider"],
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
