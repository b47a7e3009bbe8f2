#!/usr/bin/env python3
"""Summarizes `perf script` output of a length-probed memmove (measure.sh copies): copies and
bytes per request for one thread, by the first sluice function on the stack.

perf drops samples under load, so requests are counted from the samples themselves: parsing a
head's header fields (`http1::head::header_lines`) copies its field table once per head, four
times per forwarded request (the request's head, the response's, each parsed and taken).
"""
import collections
import re
import sys

thread = sys.argv[1]
sites = collections.defaultdict(collections.Counter)
heads = 0
for sample in sys.stdin.read().split("\n\n"):
    lines = sample.strip().split("\n")
    if not lines or thread not in lines[0]:
        continue
    length = re.search(r"len=(\d+)", lines[0])
    if not length:
        continue
    frames = [line.split(None, 1)[1] for line in lines[1:] if len(line.split(None, 1)) > 1]
    site = next((f for f in frames[1:] if "sluice::" in f), "?")
    site = re.sub(r"\+0x[0-9a-f]+", "", site).split(" (")[0]
    if "header_lines" in site:
        heads += 1
    sites[site][int(length.group(1))] += 1

requests = heads / 4
if requests == 0:
    sys.exit("no head parsed: no request seen")
total_bytes = sum(n * size for c in sites.values() for size, n in c.items())
total_calls = sum(sum(c.values()) for c in sites.values())
print(f"requests seen: {requests:.0f}; per request: {total_calls / requests:.1f} copies, {total_bytes / requests:.0f} bytes")
print(f"{'bytes':>7} {'copies':>6}  function (largest sizes)")
ranked = sorted(sites.items(), key=lambda kv: -sum(n * size for size, n in kv[1].items()))
for site, sizes in ranked[:30]:
    nbytes = sum(n * size for size, n in sizes.items()) / requests
    calls = sum(sizes.values()) / requests
    largest = ", ".join(f"{size}×{n / requests:.2f}" for size, n in sorted(sizes.items(), key=lambda kv: -kv[0] * kv[1])[:4])
    print(f"{nbytes:7.0f} {calls:6.2f}  {site}  ({largest})")
