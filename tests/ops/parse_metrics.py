"""Parses a /metrics scrape (stdin) with the Prometheus project's own
text-format parser (prometheus_client) and prints it as JSON:
{"families": {name: {"type": ..., "help": ...}}, "samples": [[name, labels, value], ...]}.
Exits 1 naming any family without HELP or TYPE."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
families = {}
samples = []
problems = []
for family in text_string_to_metric_families(text):
    if family.type == "unknown":
        problems.append(f"{family.name}: no TYPE")
    if not family.documentation:
        problems.append(f"{family.name}: no HELP")
    families[family.name] = {"type": family.type, "help": family.documentation}
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
json.dump({"families": families, "samples": samples}, sys.stdout)
