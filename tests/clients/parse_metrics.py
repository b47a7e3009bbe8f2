"""Parses a Prometheus text exposition from stdin with prometheus_client's own parser and
prints every sample as one JSON object per line: {"family", "type", "name", "labels", "value"}.
A malformed exposition raises, and the test sees a non-zero exit."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    if not family.documentation:
        raise SystemExit(f"{family.name} has no HELP text")
    for sample in family.samples:
        print(json.dumps({
            "family": family.name,
            "type": family.type,
            "name": sample.name,
            "labels": sample.labels,
            "value": sample.value,
        }))
