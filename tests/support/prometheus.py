"""Reading Prometheus text in tests: one sample's value, a registry's exposition."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from worker import metrics


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` of a Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def scrape(registry: CollectorRegistry | None = None) -> str:
    return metrics.render(registry or metrics.registry_for_scrape()).decode()
