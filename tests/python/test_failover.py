"""A tablet server SIGKILLed while the official Python client reads and writes through the
gateway: the client's own retries carry it through, and no acknowledged write is lost.

Six writers (four with ``mutate_row``, two with ``bulk_mutate_rows`` batches, one of those on
the killed server) each write their own rows once, each row to a tablet of its own (the table is split at the writers' prefixes),
and record every row acknowledged. Two readers meanwhile read acknowledged rows back, one at a
time and by prefix scans: a row acknowledged before a read started must be in it with its exact
value. Once every writer has written for a while, the tablet server serving most of the table's
tablets is SIGKILLed (its pid from ``cluster.json``; ``tabula local`` restarts it). The run goes
on until every writer has had rows acknowledged well after the kill, then the whole table is
read and compared with what was written:

- every acknowledged row is there with its exact value and timestamp;
- a row whose write failed (the client gave up) may be there or not, but only with its value;
- nothing else is there.

Every write carries its own timestamp, so it is idempotent and the client retries it on
``UNAVAILABLE`` and ``DEADLINE_EXCEEDED`` (a server-time write would not be retried). The test
fails if any operation failed at all: retries must carry the client through the kill.

Figures (printed): rows acknowledged, the longest time a writer waited between two
acknowledgements (the stall), the slowest single operation, and the client's retries (RPC
attempts beyond the operations started, counted by wrapping the client's generated stub).

Needs ``TABULA_LOCAL_DIR`` (the ``tabula local`` directory, for ``cluster.json``),
``TABULA_BIN`` (the ``tabula`` binary, for ``tabula tablets``) and ``TABULA_LOCK`` (the cell).
"""

import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from google.cloud.bigtable import column_family
from google.cloud.bigtable.data import (
    BigtableDataClient,
    ReadRowsQuery,
    RowMutationEntry,
    RowRange,
    SetCell,
)

from conftest import INSTANCE, PROJECT

WRITERS = 6
# Rows per bulk_mutate_rows call; two writers use it, one of them writing to the killed server.
BULK_BATCH = 5
READERS = 2
# Every writer has this many rows acknowledged before the kill (the workload runs), and this
# many that it started writing after the kill before the run ends.
ACKS_BEFORE_KILL = 20
ACKS_AFTER_KILL = 30
# The whole run (a failover takes the session TTL, 10 s in tabula local, plus reassignment).
RUN_DEADLINE_S = 150.0
TIMESTAMP = 1_700_000_000_000_000
# Each RPC attempt is given this long (the client's defaults are 20 s and 60 s, longer than the
# failover): an attempt waiting on the killed server is cancelled and the client tries again,
# so the client's own retries, not only the gateway's, carry the workload through.
ATTEMPT_TIMEOUT_S = 3.0
# Each operation's budget for all its attempts: a failover on a loaded machine stays well inside.
OPERATION_TIMEOUT_S = 120.0


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: the failover test needs the tabula local cluster it kills")
    return value


def prefix(writer):
    return f"w{writer}-".encode()


def key_of(writer, seq):
    return prefix(writer) + b"%07d" % seq


def value_of(key):
    # Distinct per row and not derivable from the key alone by accident of the server.
    return b"value:" + key + b":" + key[::-1]


@dataclass
class Ack:
    key: bytes
    started: float
    acked: float


@dataclass
class WriterLog:
    acked: list = field(default_factory=list)  # [Ack] in ack order
    failed: list = field(default_factory=list)  # [(key, repr(error))]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked_keys(self):
        with self.lock:
            return [a.key for a in self.acked]


class RpcCounter:
    """Counts the RPC attempts the client makes, by wrapping its generated (gapic) client's
    methods: the data client calls them once per attempt, so attempts beyond the operations
    the test started are the client's own retries. Unary failures are counted by kind."""

    METHODS = ("mutate_row", "mutate_rows", "read_rows")

    def __init__(self, client):
        self.lock = threading.Lock()
        self.calls = Counter()
        self.errors = Counter()
        gapic = client._gapic_client
        for name in self.METHODS:
            setattr(gapic, name, self._wrap(name, getattr(gapic, name)))

    def _wrap(self, name, method):
        def counted(*args, **kwargs):
            with self.lock:
                self.calls[name] += 1
            try:
                return method(*args, **kwargs)
            except Exception as e:
                with self.lock:
                    self.errors[f"{name}: {type(e).__name__}"] += 1
                raise

        return counted


def tablet_servers(local_dir):
    """``{address: (name, pid)}`` of the running tablet servers in ``cluster.json``."""
    with open(os.path.join(local_dir, "cluster.json")) as f:
        doc = json.load(f)
    return {
        p["address"]: (p["name"], p["pid"])
        for p in doc["processes"]
        if p["role"] == "tablet" and p["pid"] is not None
    }


def table_tablets(table_name, last_error):
    """The table's tablets as ``tabula tablets TABLE --output json`` lists them, or None (its
    error kept in ``last_error[0]`` for the timeout message) if the command failed."""
    out = subprocess.run(
        [
            env("TABULA_BIN"),
            "tablets",
            table_name,
            "--lock",
            env("TABULA_LOCK"),
            "--output",
            "json",
        ],
        check=False,
        capture_output=True,
        timeout=60,
    )
    if out.returncode != 0:
        last_error[0] = out.stderr.decode(errors="replace") + out.stdout.decode(errors="replace")
        return None
    return json.loads(out.stdout)


def wait_for(what, deadline_s, check, interval_s=0.1, **details):
    """Polls ``check`` until it answers something true; fails naming ``what`` (formatted with
    ``details`` at that moment) after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < end, f"timed out after {deadline_s} s waiting for " + what.format(
            **{k: v() for k, v in details.items()}
        )
        time.sleep(interval_s)


def writer_loop(table, writer, bulk, log, stop):
    seq = 0
    while not stop.is_set():
        if bulk:
            keys = [key_of(writer, seq + i) for i in range(BULK_BATCH)]
            seq += BULK_BATCH
            started = time.monotonic()
            try:
                table.bulk_mutate_rows(
                    [
                        RowMutationEntry(
                            k, SetCell("cf", b"v", value_of(k), timestamp_micros=TIMESTAMP)
                        )
                        for k in keys
                    ],
                    attempt_timeout=ATTEMPT_TIMEOUT_S,
                    operation_timeout=OPERATION_TIMEOUT_S,
                )
            except Exception as e:  # noqa: BLE001 - recorded: the row may or may not be there
                with log.lock:
                    log.failed.extend((k, repr(e)) for k in keys)
                continue
        else:
            keys = [key_of(writer, seq)]
            seq += 1
            started = time.monotonic()
            try:
                table.mutate_row(
                    keys[0],
                    SetCell("cf", b"v", value_of(keys[0]), timestamp_micros=TIMESTAMP),
                    attempt_timeout=ATTEMPT_TIMEOUT_S,
                    operation_timeout=OPERATION_TIMEOUT_S,
                )
            except Exception as e:  # noqa: BLE001
                with log.lock:
                    log.failed.append((keys[0], repr(e)))
                continue
        acked = time.monotonic()
        with log.lock:
            log.acked.extend(Ack(k, started, acked) for k in keys)


def reader_loop(table, logs, stop, problems, stats, seed):
    rng = random.Random(seed)
    while not stop.is_set():
        writer = rng.randrange(WRITERS)
        known = logs[writer].acked_keys()  # acknowledged before this read starts
        if not known:
            time.sleep(0.01)
            continue
        started = time.monotonic()
        try:
            if rng.random() < 0.8:
                key = rng.choice(known)
                row = table.read_row(
                    key, attempt_timeout=ATTEMPT_TIMEOUT_S, operation_timeout=OPERATION_TIMEOUT_S
                )
                got = None if row is None else [(c.family, c.qualifier, c.value) for c in row.cells]
                if got != [("cf", b"v", value_of(key))]:
                    problems.append(f"read_row({key!r}) after its ack answered {got!r}")
            else:
                p = prefix(writer)
                rows = table.read_rows(
                    ReadRowsQuery(row_ranges=RowRange(start_key=p, end_key=p[:-1] + b".")),
                    attempt_timeout=ATTEMPT_TIMEOUT_S,
                    operation_timeout=OPERATION_TIMEOUT_S,
                )
                seen = {r.row_key: r.cells[0].value for r in rows}
                missing = [k for k in known if seen.get(k) != value_of(k)]
                if missing:
                    problems.append(
                        f"a scan of {p!r} lacked {len(missing)} acknowledged rows, e.g. {missing[:3]!r}"
                    )
        except Exception as e:  # noqa: BLE001
            problems.append(f"a read failed (the client gave up): {e!r}")
            with stats["lock"]:
                stats["read_failures"] += 1
            continue
        with stats["lock"]:
            stats["reads"] += 1
            stats["slowest_read_s"] = max(stats["slowest_read_s"], time.monotonic() - started)


def longest_gap(acks, since, until):
    """The longest time without an acknowledgement in ``[since, until]``, over ``acks``."""
    times = [since] + sorted(a.acked for a in acks if since <= a.acked <= until) + [until]
    return max(b - a for a, b in itertools.pairwise(times))


def test_tablet_server_kill_under_python_client_load(make_table, unique_name, capsys):
    local_dir = env("TABULA_LOCAL_DIR")
    splits = [prefix(w) for w in range(1, WRITERS)]
    make_table(unique_name, {"cf": column_family.MaxVersionsGCRule(1)}, initial_split_keys=splits)

    client = BigtableDataClient(project=PROJECT)
    rpcs = RpcCounter(client)
    table = client.get_table(INSTANCE, unique_name)

    # The victim: the tablet server serving most of this table's tablets.
    last_error = [""]
    tablets = wait_for(
        "every tablet of the table served (last error of tabula tablets: {last_error})",
        60,
        lambda: (
            (t := table_tablets(unique_name, last_error))
            and len(t) == WRITERS
            and all(x["address"] for x in t)
            and t
        ),
        last_error=lambda: last_error[0],
    )
    servers = tablet_servers(local_dir)
    per_server = Counter(t["address"] for t in tablets)
    victim_addr, victim_tablets = per_server.most_common(1)[0]
    victim_name, victim_pid = servers[victim_addr]
    victim_writers = sorted(
        w
        for w in range(WRITERS)
        for t in tablets
        if t["address"] == victim_addr and t["start"] == (prefix(w).decode() if w else "")
    )
    assert victim_writers, f"no writer's tablet is on {victim_addr}: {tablets}"
    # Bulk writers: one whose tablet is on the victim, one whose tablet is elsewhere.
    bulk_writers = {victim_writers[0]} | {
        next(w for w in range(WRITERS) if w not in victim_writers)
    }

    logs = [WriterLog() for _ in range(WRITERS)]
    stop = threading.Event()
    problems = []
    stats = {"lock": threading.Lock(), "reads": 0, "read_failures": 0, "slowest_read_s": 0.0}
    threads = [
        threading.Thread(
            target=writer_loop, args=(table, w, w in bulk_writers, logs[w], stop), daemon=True
        )
        for w in range(WRITERS)
    ]
    threads += [
        threading.Thread(
            target=reader_loop, args=(table, logs, stop, problems, stats, seed), daemon=True
        )
        for seed in range(READERS)
    ]
    for t in threads:
        t.start()
    try:
        wait_for(
            f"every writer to have {ACKS_BEFORE_KILL} rows acknowledged",
            60,
            lambda: all(len(log.acked_keys()) >= ACKS_BEFORE_KILL for log in logs),
        )
        acked_before_kill = sum(len(log.acked_keys()) for log in logs)

        os.kill(victim_pid, signal.SIGKILL)
        killed = time.monotonic()

        def enough_after_kill():
            for log in logs:
                with log.lock:
                    if sum(1 for a in log.acked if a.started > killed) < ACKS_AFTER_KILL:
                        return False
            return True

        wait_for(
            f"every writer to have {ACKS_AFTER_KILL} rows acknowledged after {victim_name} was killed",
            RUN_DEADLINE_S,
            enough_after_kill,
        )
        recovered = time.monotonic()
        restarted = wait_for(
            f"tabula local to restart {victim_name}",
            60,
            lambda: any(
                n == victim_name and p != victim_pid for n, p in tablet_servers(local_dir).values()
            ),
        )
        assert restarted
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client thread did not stop within 120 s"
    ended = time.monotonic()

    attempts = Counter(rpcs.calls)  # before the verifying scan below adds one
    # Everything written, read back through a fresh scan of the whole table.
    rows = table.read_rows(ReadRowsQuery())
    stored = {
        r.row_key: [(c.family, c.qualifier, c.value, c.timestamp_micros) for c in r.cells]
        for r in rows
    }
    acked = {a.key for log in logs for a in log.acked}
    failed = {k: e for log in logs for k, e in log.failed}
    lost = sorted(k for k in acked if stored.get(k) != [("cf", b"v", value_of(k), TIMESTAMP)])
    wrong = sorted(
        k
        for k, cells in stored.items()
        if k not in acked and (k not in failed or cells != [("cf", b"v", value_of(k), TIMESTAMP)])
    )

    operations = Counter()
    for w, log in enumerate(logs):
        ops = len(log.acked) + len(log.failed)
        operations["mutate_rows" if w in bulk_writers else "mutate_row"] += (
            ops // BULK_BATCH if w in bulk_writers else ops
        )
    operations["read_rows"] = stats["reads"] + stats["read_failures"]
    stall = max(longest_gap(logs[w].acked, killed, recovered) for w in victim_writers)
    slowest_write = max(a.acked - a.started for log in logs for a in log.acked)
    report = {
        "victim": victim_name,
        "victim_tablets_of_table": victim_tablets,
        "writers_on_victim": victim_writers,
        "bulk_writers": sorted(bulk_writers),
        "acked_rows": len(acked),
        "acked_before_kill": acked_before_kill,
        "failed_writes": len(failed),
        "reads": stats["reads"],
        "longest_writer_stall_s": round(stall, 2),
        "slowest_write_s": round(slowest_write, 2),
        "slowest_read_s": round(stats["slowest_read_s"], 2),
        "kill_to_all_writers_recovered_s": round(recovered - killed, 2),
        "kill_to_end_s": round(ended - killed, 1),
        "operations": dict(operations),
        "rpc_attempts": dict(attempts),
        "client_retries": sum(attempts.values()) - sum(operations.values()),
        "rpc_errors": dict(rpcs.errors),
    }
    with capsys.disabled():
        print("\nfailover through the gateway: " + json.dumps(report))
    client.close()

    assert not lost, f"{len(lost)} acknowledged rows lost or changed, e.g. {lost[:5]!r}"
    assert not wrong, (
        f"{len(wrong)} rows that were never acknowledged with that value: {wrong[:5]!r}"
    )
    assert not problems, f"{len(problems)} read problems, e.g. {problems[:5]}"
    assert not failed, (
        f"{len(failed)} writes failed instead of being retried through the kill, e.g. "
        f"{list(failed.items())[:3]}"
    )
