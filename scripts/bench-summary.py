#!/usr/bin/env python3
"""Tables and Aurora/reference ratios from the loadgen JSON files of
scripts/bench-vs-reference.sh: summary.md and summary.json in OUT.

Usage: bench-summary.py OUT TARGET... (the first target named `reference`
is the baseline; OUT/TARGET/RUN.json are the runs).
"""

import json
import sys
from pathlib import Path

MIB = 1024 * 1024


def load(out, targets):
    runs = {}
    for target in targets:
        for path in sorted((out / target).glob("*.json")):
            runs.setdefault(path.stem, {})[target] = json.loads(path.read_text())
    return runs


def run_order(name):
    # create-cC, create-c1, mixed-cC, fanout, anything else.
    if name == "create-c1":
        return (1, name)
    for i, prefix in ((0, "create-c"), (2, "mixed-c"), (3, "fanout")):
        if name.startswith(prefix):
            return (i, name)
    return (9, name)


def usage(report):
    return ((report.get("server") or {}).get("usage")) or {}


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, spec=".1f", none="–"):
    return none if v is None else format(v, spec)


def each_run(runs, targets):
    """(run name, server, report) in table order."""
    for name in sorted(runs, key=run_order):
        for target in targets:
            if target in runs[name]:
                yield name, target, runs[name][target]


def figures_table(runs, targets):
    lines = [
        "| run | server | ok | errors | req/s | p50 ms | p99 ms | max ms | RSS mean MiB | RSS peak MiB | CPU cores |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, target, r in each_run(runs, targets):
        t, u = r["total"], usage(r)
        lines.append(
            f"| {name} | {target} | {t['ok']} | {t['errors']} | {t['per_second']:.1f} "
            f"| {t['latency_ms']['p50']:.2f} | {t['latency_ms']['p99']:.2f} | {t['latency_ms']['max']:.2f} "
            f"| {fmt(u.get('mean_rss') and u['mean_rss'] / MIB)} | {fmt(u.get('peak_rss') and u['peak_rss'] / MIB)} "
            f"| {fmt(u.get('cpu_cores'), '.2f')} |"
        )
    return lines


def firehose_table(runs, targets):
    lines = [
        "| run | server | subscribers | events | events/s | complete | failed | delivery p50 ms | p99 ms | max ms | drain ms | KiB per idle subscriber |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, target, r in each_run(runs, targets):
        if r["firehose"]["subscribers"] < 2:
            continue
        f = r["firehose"]
        idle = (r.get("server") or {}).get("idle_subscriber_bytes")
        lines.append(
            f"| {name} | {target} | {f['subscribers']} | {f['events']} | {f['events_per_second']:.1f} "
            f"| {f['complete_subscribers']} | {f['failed_subscribers']} "
            f"| {f['delivery_latency_ms']['p50']:.2f} | {f['delivery_latency_ms']['p99']:.2f} "
            f"| {f['delivery_latency_ms']['max']:.2f} | {f['drain_ms']:.0f} | {fmt(idle and idle / 1024)} |"
        )
        if f.get("first_failure"):
            lines.append(f"| | | first failure: {f['first_failure'][:100]} | | | | | | | | | |")
    return lines


def ratio_table(runs, targets, base):
    lines = [
        "| run | server | req/s × | p50 × | p99 × | RSS peak × | CPU × |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    out = {}
    for name in sorted(runs, key=run_order):
        b = runs[name].get(base)
        if b is None:
            continue
        for target in targets:
            r = runs[name].get(target)
            if target == base or r is None:
                continue
            row = {
                "throughput": ratio(r["total"]["per_second"], b["total"]["per_second"]),
                "p50": ratio(r["total"]["latency_ms"]["p50"], b["total"]["latency_ms"]["p50"]),
                "p99": ratio(r["total"]["latency_ms"]["p99"], b["total"]["latency_ms"]["p99"]),
                "rss_peak": ratio(usage(r).get("peak_rss"), usage(b).get("peak_rss")),
                "cpu": ratio(usage(r).get("cpu_cores"), usage(b).get("cpu_cores")),
            }
            out.setdefault(name, {})[target] = row
            lines.append(
                f"| {name} | {target} | {fmt(row['throughput'], '.2f')} | {fmt(row['p50'], '.3f')} "
                f"| {fmt(row['p99'], '.3f')} | {fmt(row['rss_peak'], '.3f')} | {fmt(row['cpu'], '.2f')} |"
            )
    return lines, out


def targets_table(runs, targets, base, ratios):
    """The issue's targets, as ratios against the reference in this run."""
    concurrent = next((n for n in sorted(runs) if n.startswith("create-c") and n != "create-c1"), None)
    lines = ["| target | server | figure | met |", "|---|---|--:|:-:|"]
    verdicts = {}

    def add(goal, target, value, ok, text):
        verdicts.setdefault(target, {})[goal] = {"value": value, "met": ok}
        lines.append(f"| {goal} | {target} | {text} | {'yes' if ok else 'no' if ok is not None else '–'} |")

    for target in targets:
        if target == base:
            continue
        if concurrent:
            v = ratios.get(concurrent, {}).get(target, {}).get("throughput")
            add(f"{concurrent} createRecord throughput ≥ 20× reference", target, v,
                None if v is None else v >= 20, f"{fmt(v, '.2f')}×")
            v = ratios.get(concurrent, {}).get(target, {}).get("rss_peak")
            add(f"RSS under load ({concurrent}, peak) ≤ 1/5 of reference", target, v,
                None if v is None else v <= 0.2, f"{fmt(v, '.3f')}×")
        v = ratios.get("create-c1", {}).get(target, {}).get("p50")
        add("sequential createRecord p50 ≤ 1/5 of reference", target, v,
            None if v is None else v <= 0.2, f"{fmt(v, '.3f')}×")
        for name in sorted((n for n in runs if n.startswith("fanout")), key=lambda n: (len(n), n)):
            r = runs[name].get(target)
            if r is None:
                continue
            f = r["firehose"]
            ok = (
                f["complete_subscribers"] == f["subscribers"]
                and f["failed_subscribers"] == 0
                and f["delivery_latency_ms"]["p99"] < 50
            )
            add(f"{name}: {f['subscribers']} subscribers all complete, p99 < 50 ms", target,
                f["delivery_latency_ms"]["p99"], ok,
                f"{f['complete_subscribers']}/{f['subscribers']} complete, "
                f"{f['events_per_second']:.1f} events/s, p99 {f['delivery_latency_ms']['p99']:.1f} ms")
    return lines, verdicts


def main():
    out = Path(sys.argv[1])
    targets = sys.argv[2:]
    runs = load(out, targets)
    base = "reference" if "reference" in targets else None
    md = ["### Load", "", *figures_table(runs, targets), "", "### Firehose fan-out", "",
          *firehose_table(runs, targets), ""]
    summary = {"runs": runs}
    if base:
        lines, ratios = ratio_table(runs, targets, base)
        md += ["### Aurora / reference (× of the reference's figure)", "", *lines, ""]
        lines, verdicts = targets_table(runs, targets, base, ratios)
        md += ["### Targets", "", *lines, ""]
        summary["ratios"], summary["targets"] = ratios, verdicts
    text = "\n".join(md)
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(text)


if __name__ == "__main__":
    main()
