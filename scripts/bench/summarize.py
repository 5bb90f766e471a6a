#!/usr/bin/env python3
"""Summarize a raw TSV written by scripts/bench-edge into a markdown table.

Usage: summarize.py RAW.tsv [NOISY_PCT]

Each (round, size, proto) is one triple: the edge, the reference server and nginx,
measured one right after the other. Every run gives requests per second of server CPU
time (rps / server CPU share), and within a triple:
  eff            edge or nginx requests per CPU-second / the reference's
  edge / nginx   the edge's requests per CPU-second / nginx's
Per target (edge = plain HTTP, edge-tls = HTTPS) and size the table shows the medians
over the rounds and the min-max of the effs.

"machine µs" is what a response cost both cores together: the busy time of the
server's core and of wrk's core per response. On loopback the kernel charges the TCP
work of a transfer to whichever side happens to run it, so a server can look cheap
per CPU-second while its client pays more; this column shows the whole cost.

"target" checks issue 9's goal on the medians: the edge's eff at least 0.9, above
nginx's, and its p99 latency no worse than nginx's. "rounds met" counts the rounds
that meet all three on their own, to show how robust the verdict is.

Notes flag rows to treat with care:
  wrk-bound  wrk's core was >= 95 % busy during the reference's runs: the reference
             had idle CPU, so compare requests per CPU-second (eff), not requests/s
  noisy N    N runs saw another job busy on a core (> NOISY_PCT %, default 25)
  errors N   N failed requests or non-2xx responses in total
Only the Python 3 standard library is used.
"""
import csv
import statistics
import sys
from collections import OrderedDict

ROLES = ("edge", "reference", "nginx")
EFF_GOAL = 0.9


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


def span(values):
    values = [v for v in values if v is not None]
    return f"{min(values):.2f}–{max(values):.2f}" if values else "n/a"


def per_cpu_second(row):
    """Requests per second of the server's CPU time, or None without a CPU figure."""
    rps, cpu = num(row["rps"]), num(row["server_cpu_pct"])
    return rps / (cpu / 100) if rps and cpu else None


def machine_us(row):
    """Busy time of both cores (server's and wrk's) per response, in µs."""
    rps = num(row["rps"])
    cores = [num(row["server_core_busy_pct"]), num(row["wrk_core_busy_pct"])]
    if not rps or None in cores:
        return None
    return sum(cores) / 100 / rps * 1e6


def meets_goal(eff_edge, eff_nginx, p99_edge, p99_nginx):
    if None in (eff_edge, eff_nginx, p99_edge, p99_nginx):
        return False
    return eff_edge >= EFF_GOAL and eff_edge > eff_nginx and p99_edge <= p99_nginx


def summarize(triples, noisy_pct):
    """One table row (a dict) from the triples of one target and size."""
    effs = {"edge": [], "nginx": []}
    edge_vs_nginx, rounds_met = [], 0
    rps = {role: [] for role in ROLES}
    p99 = {role: [] for role in ROLES}
    machine = {role: [] for role in ROLES}
    reference_wrk_busy = []
    noisy = errors = 0
    for triple in triples.values():
        for role, row in triple.items():
            errors += int(num(row["errors"]) or 0) + int(num(row["non2xx"]) or 0)
            if (num(row["bg_busy_pct"]) or 0) > noisy_pct:
                noisy += 1
            rps[role].append(num(row["rps"]))
            p99[role].append(num(row["p99_ms"]))
            machine[role].append(machine_us(row))
        if any(role not in triple for role in ROLES):
            continue
        reference_wrk_busy.append(num(triple["reference"]["wrk_core_busy_pct"]))
        per_cpu = {role: per_cpu_second(triple[role]) for role in ROLES}
        if None in per_cpu.values():
            continue
        eff_edge = per_cpu["edge"] / per_cpu["reference"]
        eff_nginx = per_cpu["nginx"] / per_cpu["reference"]
        effs["edge"].append(eff_edge)
        effs["nginx"].append(eff_nginx)
        edge_vs_nginx.append(per_cpu["edge"] / per_cpu["nginx"])
        if meets_goal(eff_edge, eff_nginx, num(triple["edge"]["p99_ms"]),
                      num(triple["nginx"]["p99_ms"])):
            rounds_met += 1
    notes = []
    busy = median(reference_wrk_busy)
    if busy is not None and busy >= 95:
        notes.append("wrk-bound")
    if noisy:
        notes.append(f"noisy {noisy}")
    if errors:
        notes.append(f"errors {errors}")
    eff_edge, eff_nginx = median(effs["edge"]), median(effs["nginx"])
    p99_edge, p99_nginx = median(p99["edge"]), median(p99["nginx"])
    return {
        "rounds": len(effs["edge"]),
        "eff_edge": eff_edge,
        "eff_edge_span": span(effs["edge"]),
        "eff_nginx": eff_nginx,
        "eff_nginx_span": span(effs["nginx"]),
        "edge_vs_nginx": median(edge_vs_nginx),
        "p99": {role: median(p99[role]) for role in ROLES},
        "rps": {role: median(rps[role]) for role in ROLES},
        "machine": {role: median(machine[role]) for role in ROLES},
        "met": meets_goal(eff_edge, eff_nginx, p99_edge, p99_nginx),
        "rounds_met": rounds_met,
        "notes": notes,
    }


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
        triples = groups.setdefault((target, row["size"]), OrderedDict())
        triples.setdefault(row["round"], {})[row["role"]] = row
    sizes = []
    for _, size in groups:
        if size not in sizes:
            sizes.append(size)
    keys = sorted(groups, key=lambda k: (k[0] != "edge", sizes.index(k[1])))

    print("| target | size | rounds | edge eff | edge eff min–max | nginx eff "
          "| nginx eff min–max | edge ÷ nginx per CPU-s | p99 ms edge / nginx / reference "
          "| rps edge / nginx / reference | machine µs edge / nginx / reference "
          "| target met | rounds met | notes |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---|")
    for key in keys:
        row = summarize(groups[key], noisy_pct)
        p99 = " / ".join(fmt(row["p99"][r], ".2f") for r in ("edge", "nginx", "reference"))
        rps = " / ".join(fmt(row["rps"][r], ".0f") for r in ("edge", "nginx", "reference"))
        machine = " / ".join(fmt(row["machine"][r], ".1f")
                             for r in ("edge", "nginx", "reference"))
        print(f"| {key[0]} | {key[1]} | {row['rounds']} "
              f"| {fmt(row['eff_edge'], '.2f')} | {row['eff_edge_span']} "
              f"| {fmt(row['eff_nginx'], '.2f')} | {row['eff_nginx_span']} "
              f"| {fmt(row['edge_vs_nginx'], '.2f')} | {p99} | {rps} | {machine} "
              f"| {'yes' if row['met'] else 'no'} | {row['rounds_met']} of {row['rounds']} "
              f"| {', '.join(row['notes'])} |")
    print()
    print(f"eff: requests per server CPU-second ÷ the reference server's in the same round. "
          f"Target (issue 9): edge eff ≥ {EFF_GOAL}, above nginx's, p99 no worse than "
          f"nginx's; 'target met' is judged on the medians. machine µs: busy time of "
          f"the server's and wrk's cores together per response.")


if __name__ == "__main__":
    main()
