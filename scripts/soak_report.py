#!/usr/bin/env python3
"""The report of a soak run (scripts/soak.sh), as Markdown on stdout.

Inputs, all under --dir:
  acks.jsonl            one line per acknowledged ingest batch: writer, from, to, time_ms
                        (when it was acknowledged) and latency_us (send to acknowledgement)
  cluster/agitator.jsonl one line per fault: time_ms, kind, target, ok, ...
  verify-N.json         each round's `tabula verify --output json`
  ingest.jsonl          each round's `tabula ingest --output json` summary
  rounds.jsonl          each round's ingest window (unix seconds); availability and outages
                        count only inside these windows (verify runs between them)

Definitions:
  availability      % of the run's 1-second buckets holding at least one acknowledged batch
  outage            a gap between consecutive acknowledgements (any writer) longer than 1 s
  time to recover   for a fault at t: the end of the longest outage overlapping
                    [t, t + 60 s] minus t (0 if writes never stopped for more than 1 s)
Only the Python standard library is used.
"""

import argparse
import glob
import json
import os
import sys

OUTAGE_S = 1.0
RECOVERY_WINDOW_S = 60.0


def read_lines(path):
    """Parsed JSON lines of `path`; a torn last line is skipped."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    index = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[index]


def outages(times_s, start_s, end_s):
    """Gaps (from, to) longer than OUTAGE_S between acknowledgements, the run's ends included."""
    points = [start_s] + sorted(times_s) + [end_s]
    return [(a, b) for a, b in zip(points, points[1:]) if b - a > OUTAGE_S]


def recovery(fault_s, gaps):
    worst = 0.0
    for a, b in gaps:
        if b >= fault_s and a <= fault_s + RECOVERY_WINDOW_S:
            worst = max(worst, b - fault_s)
    return worst


def fmt(value, unit=""):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value}{unit}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--start", type=float, required=True, help="unix seconds")
    parser.add_argument("--end", type=float, required=True, help="unix seconds")
    parser.add_argument("--agitate", default="")
    args = parser.parse_args()

    acks = [a for a in read_lines(os.path.join(args.dir, "acks.jsonl")) if "time_ms" in a]
    faults = read_lines(os.path.join(args.dir, "cluster", "agitator.jsonl"))
    ingests = read_lines(os.path.join(args.dir, "ingest.jsonl"))
    verifies = []
    for path in sorted(glob.glob(os.path.join(args.dir, "verify-*.json")),
                       key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0])):
        try:
            with open(path, encoding="utf-8") as f:
                verifies.append((os.path.basename(path), json.load(f)))
        except (OSError, json.JSONDecodeError) as e:
            verifies.append((os.path.basename(path), {"passed": False, "error": str(e)}))

    start, end = args.start, args.end
    times = [a["time_ms"] / 1000.0 for a in acks]
    nodes = sum(a["to"] - a["from"] for a in acks)
    latencies_ms = [a["latency_us"] / 1000.0 for a in acks if "latency_us" in a]
    rounds = read_lines(os.path.join(args.dir, "rounds.jsonl"))
    windows = [(r["ingest_start"], r["ingest_end"]) for r in rounds] or [(start, end)]
    buckets = set()
    n_buckets = 0
    gaps = []
    for w_start, w_end in windows:
        inside = [t for t in times if w_start <= t <= w_end]
        buckets |= {(w_start, int(t - w_start)) for t in inside}
        n_buckets += max(1, int(w_end - w_start))
        gaps += outages(inside, w_start, w_end)
    n_buckets = max(1, n_buckets)
    longest = max(gaps, key=lambda g: g[1] - g[0]) if gaps else None

    by_kind = {}
    for fault in faults:
        kind = fault.get("kind", "?")
        if kind in ("resume", "restart"):
            continue
        t = fault.get("time_ms", 0) / 1000.0
        if not start <= t <= end:
            continue
        by_kind.setdefault(kind, []).append(recovery(t, gaps))

    last = verifies[-1][1] if verifies else {}
    all_passed = bool(verifies) and all(v.get("passed") for _, v in verifies)

    print("# Soak report\n")
    print(f"- Duration: {(end - start) / 60:.1f} min; agitator: `{args.agitate}`")
    print(f"- Rounds verified: {len(verifies)}; all passed: **{all_passed}**")
    print(f"- Acknowledged nodes: {nodes} in {len(acks)} batches "
          f"({nodes / max(1.0, sum(b - a for a, b in windows)):.0f} nodes/s of ingest time)")
    print(f"- Acknowledged writes lost (acked but missing, last verify): "
          f"**{last.get('acked_missing', '-')}**; undefined: **{last.get('undefined', '-')}**; "
          f"CRC failures: {last.get('crc', '-')}; referenced: {last.get('referenced', '-')}; "
          f"unreferenced: {last.get('unreferenced', '-')}")
    ingest_s = sum(b - a for a, b in windows)
    print(f"- Ingest time: {ingest_s / 60:.1f} min in {len(windows)} round(s) "
          f"(verify runs between rounds)")
    print(f"- Availability (1-second buckets of ingest time with an acknowledged batch): "
          f"**{100.0 * len(buckets) / n_buckets:.2f}%**")
    if longest:
        print(f"- Longest write outage: **{longest[1] - longest[0]:.1f} s** "
              f"(from +{longest[0] - start:.0f} s); outages over {OUTAGE_S:.0f} s: {len(gaps)}")
    else:
        print(f"- Longest write outage: none over {OUTAGE_S:.0f} s")
    print(f"- Batch latency: p50 {fmt(percentile(latencies_ms, 0.50), ' ms')}, "
          f"p99 {fmt(percentile(latencies_ms, 0.99), ' ms')}, "
          f"max {fmt(max(latencies_ms) if latencies_ms else None, ' ms')}")
    retries = sum(i.get("retries", 0) for i in ingests)
    print(f"- Ingest runs: {len(ingests)}; retries: {retries}")

    print("\n## Time to recover per fault kind\n")
    print("| kind | faults | p50 (s) | p99 (s) | max (s) |")
    print("|---|---:|---:|---:|---:|")
    for kind in sorted(by_kind):
        values = by_kind[kind]
        print(f"| {kind} | {len(values)} | {fmt(percentile(values, 0.5))} | "
              f"{fmt(percentile(values, 0.99))} | {fmt(max(values))} |")

    print("\n## Rounds\n")
    print("| verify | passed | referenced | unreferenced | undefined | crc | acked | acked missing |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, v in verifies:
        print(f"| {name} | {v.get('passed')} | {v.get('referenced', '-')} | "
              f"{v.get('unreferenced', '-')} | {v.get('undefined', '-')} | {v.get('crc', '-')} | "
              f"{v.get('acked', '-')} | {v.get('acked_missing', '-')} |")
    if not acks:
        print("\nNo acknowledged batch carried a time: was the ack log written by this "
              "version of `tabula ingest`?", file=sys.stderr)


if __name__ == "__main__":
    main()
