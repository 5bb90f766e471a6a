#!/usr/bin/env python3
"""Summarize a raw TSV written by scripts/bench-edge into a markdown table.

Usage: summarize.py RAW.tsv [NOISY_PCT]

Each (round, size, proto) is one pair: the edge measured, then nginx right after
it on the same protocol. For every pair, ratio = edge rps / nginx rps. Per target
(edge = plain HTTP, edge-tls = HTTPS) and size the table shows the medians over
the rounds, and the min-max of the ratios. "per CPU-s" is the same ratio computed
from requests per second of server CPU time (fairer when one side left its core
partly idle). Notes flag pairs to treat with care:
  wrk-bound  wrk's core was >= 95 % busy during the nginx runs: nginx may have had
             more to give, so the ratio is an upper bound
  noisy N    N runs saw another job busy on a core (> NOISY_PCT %, default 25)
  errors N   N failed requests or non-2xx responses in total
Only the Python 3 standard library is used.
"""
import csv
import statistics
import sys
from collections import OrderedDict


def num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: summarize.py RAW.tsv [NOISY_PCT]")
    noisy_pct = float(sys.argv[2]) if len(sys.argv) == 3 else 25.0
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        sys.exit("summarize.py: no runs in " + sys.argv[1])

    # (target, size) -> round -> role -> row, in order of first appearance.
    groups = OrderedDict()
    for row in rows:
        target = "edge-tls" if row["proto"] == "https" else "edge"
        pairs = groups.setdefault((target, row["size"]), OrderedDict())
        pairs.setdefault(row["round"], {})[row["role"]] = row
    # Targets first (edge, edge-tls), sizes in the order they were run.
    sizes = []
    for _, size in groups:
        if size not in sizes:
            sizes.append(size)
    keys = sorted(groups, key=lambda k: (k[0] != "edge", sizes.index(k[1])))

    print("| target | size | pairs | edge rps (median) | nginx rps (median) "
          "| ratio (median) | ratio min–max | ratio per CPU-s (median) | notes |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for key in keys:
        edge_rps, nginx_rps, ratios, cpu_ratios, wrk_busy = [], [], [], [], []
        noisy = errors = 0
        for pair in groups[key].values():
            edge, nginx = pair.get("edge"), pair.get("nginx")
            for row in (edge, nginx):
                if row is None:
                    continue
                errors += int(num(row["errors"]) or 0) + int(num(row["non2xx"]) or 0)
                if (num(row["bg_busy_pct"]) or 0) > noisy_pct:
                    noisy += 1
            if edge is None or nginx is None:
                continue
            e, n = num(edge["rps"]), num(nginx["rps"])
            edge_rps.append(e)
            nginx_rps.append(n)
            wrk_busy.append(num(nginx["wrk_core_busy_pct"]))
            if e is not None and n:
                ratios.append(e / n)
            ec, nc = num(edge["server_cpu_pct"]), num(nginx["server_cpu_pct"])
            if e and n and ec and nc:
                cpu_ratios.append((e / ec) / (n / nc))
        notes = []
        busy = median(wrk_busy)
        if busy is not None and busy >= 95:
            notes.append("wrk-bound")
        if noisy:
            notes.append(f"noisy {noisy}")
        if errors:
            notes.append(f"errors {errors}")
        span = (f"{min(ratios):.2f}–{max(ratios):.2f}" if ratios else "n/a")
        print(f"| {key[0]} | {key[1]} | {len(ratios)} "
              f"| {fmt(median(edge_rps), '.0f')} | {fmt(median(nginx_rps), '.0f')} "
              f"| {fmt(median(ratios), '.2f')} | {span} "
              f"| {fmt(median(cpu_ratios), '.2f')} | {', '.join(notes)} |")


if __name__ == "__main__":
    main()
