#!/usr/bin/env bash
# Soak: continuous ingest under the agitator for a long time, verified between rounds, then a
# report (scripts/soak_report.py): acknowledged writes lost, undefined/unreferenced nodes,
# availability (% of 1-second buckets with an acknowledged batch), the longest write outage,
# time to recover per fault kind (p50/p99), throughput and batch latency.
#
#   scripts/soak.sh [--duration 30m] [--round 10m] [--dir DIR] [--agitate SPEC]
#                   [--writers N] [--batch W] [--splits S] [--base-port P]
#
# Not part of CI: it runs for as long as --duration says (default 30 minutes). Everything it
# writes is under DIR (default ./soak-<UTC time>): the cluster, its logs and agitator.jsonl,
# the ack log, each round's verify answer, and report.md. Exits non-zero if a verify failed.
set -euo pipefail

duration=30m
round=10m
dir=""
agitate="master=60s,tablet=45s,lock=90s,pause=120s,admin=20s"
writers=4
batch=500
splits=6
base_port=27100

while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --round) round="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --agitate) agitate="$2"; shift 2 ;;
    --writers) writers="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --splits) splits="$2"; shift 2 ;;
    --base-port) base_port="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

seconds() { # 90s, 10m, 2h, 1h30m -> seconds
  local s="$1" total=0 n
  while [[ -n "$s" ]]; do
    [[ "$s" =~ ^([0-9]+)([smh])(.*)$ ]] || { echo "soak.sh: bad duration $1" >&2; exit 2; }
    n="${BASH_REMATCH[1]}"
    case "${BASH_REMATCH[2]}" in s) total=$((total + n)) ;; m) total=$((total + n * 60)) ;; h) total=$((total + n * 3600)) ;; esac
    s="${BASH_REMATCH[3]}"
  done
  echo "$total"
}
total_s=$(seconds "$duration")
round_s=$(seconds "$round")

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${dir:-$PWD/soak-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

echo "soak: building the release binary" >&2
(cd "$root" && cargo build --release -q -p tabula)
bin="$root/target/release/tabula"

"$bin" local --dir "$dir/cluster" --base-port "$base_port" --agitate "$agitate" \
  > "$dir/local.out" 2> "$dir/local.err" &
local_pid=$!
stop_cluster() {
  if kill -0 "$local_pid" 2>/dev/null; then
    kill -TERM "$local_pid" 2>/dev/null || true
    wait "$local_pid" 2>/dev/null || true
  fi
}
trap stop_cluster EXIT

lock=""
for _ in $(seq 1 360); do
  lock="$(sed -n 's/^cluster ready: --lock //p' "$dir/local.out" | head -1)"
  [[ -n "$lock" ]] && break
  kill -0 "$local_pid" 2>/dev/null || { echo "soak: tabula local exited; see $dir/local.err" >&2; exit 1; }
  sleep 0.5
done
[[ -n "$lock" ]] || { echo "soak: the cluster was not ready in 3 minutes" >&2; exit 1; }
echo "soak: cluster ready (--lock $lock), agitating with $agitate for $duration" >&2

start=$(date +%s)
failed=0
i=0
while (( $(date +%s) - start < total_s )); do
  i=$((i + 1))
  left=$(( total_s - ($(date +%s) - start) ))
  this=$(( left < round_s ? left : round_s ))
  echo "soak: round $i: ingest for ${this}s" >&2
  ingest_start=$(date +%s)
  "$bin" --lock "$lock" ingest --table soak --writers "$writers" --batch "$batch" \
    --splits "$splits" --duration "${this}s" --ack-log "$dir/acks.jsonl" --output json \
    >> "$dir/ingest.jsonl" 2>> "$dir/ingest.err" || echo "soak: round $i: ingest exited with $?" >&2
  echo "{\"round\":$i,\"ingest_start\":$ingest_start,\"ingest_end\":$(date +%s)}" >> "$dir/rounds.jsonl"
  echo "soak: round $i: verify" >&2
  if ! "$bin" --lock "$lock" verify --table soak --ack-log "$dir/acks.jsonl" --output json \
    > "$dir/verify-$i.json" 2>> "$dir/verify.err"; then
    failed=1
    echo "soak: round $i: VERIFY FAILED (see $dir/verify-$i.json)" >&2
  fi
done
end=$(date +%s)
stop_cluster
trap - EXIT

python3 "$root/scripts/soak_report.py" --dir "$dir" --start "$start" --end "$end" \
  --agitate "$agitate" > "$dir/report.md"
cat "$dir/report.md"
exit "$failed"
