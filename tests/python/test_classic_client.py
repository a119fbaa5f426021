"""The classic ``google.cloud.bigtable`` API (``Client`` -> ``Instance`` -> ``Table``) against
Tabula's gateway: table admin with GC rules, direct writes, batch writes, reads with row sets and
filters, check-and-mutate (conditional rows), append and increment (append rows), sample row
keys, drop row range and delete table.

Each test asserts the exact data read back: families, qualifiers, values and timestamps (the
classic client sends timestamps truncated to milliseconds, and Tabula keeps them as sent).
"""

import datetime

import pytest
from google.api_core import exceptions
from google.cloud.bigtable import column_family, row_filters
from google.cloud.bigtable.row_set import RowRange, RowSet

UTC = datetime.UTC
# A fixed, millisecond-aligned instant, so timestamps read back can be compared exactly.
T0 = datetime.datetime(2024, 5, 17, 12, 0, 0, 123000, tzinfo=UTC)


def ts(ms_after_t0):
    """``T0`` plus whole milliseconds."""
    return T0 + datetime.timedelta(milliseconds=ms_after_t0)


def cells_of(row):
    """A ``PartialRowData`` as ``{family: {qualifier: [(value, timestamp), ...]}}``."""
    return {
        family: {
            qualifier: [(cell.value, cell.timestamp) for cell in cells]
            for qualifier, cells in columns.items()
        }
        for family, columns in row.cells.items()
    }


def rows_of(partial_rows):
    """Every row of a ``read_rows`` answer as ``{row_key: cells_of(row)}``, in the order read."""
    return [(row.row_key, cells_of(row)) for row in partial_rows]


def write_simple_rows(table, keys, family="cf", qualifier=b"q", when=T0):
    """One cell per row: value ``b"value-" + key``."""
    rows = []
    for key in keys:
        row = table.direct_row(key)
        row.set_cell(family, qualifier, b"value-" + key, timestamp=when)
        rows.append(row)
    statuses = table.mutate_rows(rows)
    assert [s.code for s in statuses] == [0] * len(keys)


def test_create_table_with_families_and_gc_rules(instance, make_table, unique_name):
    families = {
        "versions": column_family.MaxVersionsGCRule(2),
        "age": column_family.MaxAgeGCRule(datetime.timedelta(days=5)),
        "union": column_family.GCRuleUnion(
            [
                column_family.MaxVersionsGCRule(3),
                column_family.MaxAgeGCRule(datetime.timedelta(hours=1)),
            ]
        ),
        "intersection": column_family.GCRuleIntersection(
            [
                column_family.MaxVersionsGCRule(1),
                column_family.MaxAgeGCRule(datetime.timedelta(seconds=90)),
            ]
        ),
        "forever": None,
    }
    table = make_table(unique_name, families)

    assert table.exists()
    assert unique_name in [t.table_id for t in instance.list_tables()]
    listed = table.list_column_families()
    assert sorted(listed) == sorted(families)
    for name, rule in families.items():
        assert listed[name].gc_rule == rule, name

    # Re-creating answers ALREADY_EXISTS.
    with pytest.raises(exceptions.AlreadyExists):
        instance.table(unique_name).create(column_families={"versions": None})

    # ModifyColumnFamilies: create, update and drop a family.
    added = table.column_family("added", column_family.MaxVersionsGCRule(7))
    added.create()
    changed = table.column_family("versions", column_family.MaxVersionsGCRule(5))
    changed.update()
    table.column_family("age").delete()
    listed = table.list_column_families()
    assert sorted(listed) == ["added", "forever", "intersection", "union", "versions"]
    assert listed["added"].gc_rule == column_family.MaxVersionsGCRule(7)
    assert listed["versions"].gc_rule == column_family.MaxVersionsGCRule(5)


def test_direct_rows_write_delete_and_read_back(make_table, unique_name):
    table = make_table(unique_name, {"cf": None, "other": None})

    row = table.direct_row(b"row-1")
    row.set_cell("cf", b"a", b"a-old", timestamp=ts(0))
    row.set_cell("cf", b"a", b"a-new", timestamp=ts(5))
    row.set_cell("cf", b"b", b"\x00\xff binary", timestamp=ts(1))
    row.set_cell("other", b"x", b"x1", timestamp=ts(2))
    row.set_cell("other", b"y", b"y1", timestamp=ts(3))
    row.commit()

    got = table.read_row(b"row-1")
    assert got.row_key == b"row-1"
    # Versions newest first, qualifiers as bytes.
    assert cells_of(got) == {
        "cf": {
            b"a": [(b"a-new", ts(5)), (b"a-old", ts(0))],
            b"b": [(b"\x00\xff binary", ts(1))],
        },
        "other": {b"x": [(b"x1", ts(2))], b"y": [(b"y1", ts(3))]},
    }
    assert got.cell_value("cf", b"a") == b"a-new"

    # Deletes: one version by time range, one column, one family.
    row = table.direct_row(b"row-1")
    row.delete_cell("cf", b"a", time_range=row_filters.TimestampRange(start=ts(0), end=ts(1)))
    row.delete_cell("cf", b"b")
    row.delete_cells("other", row.ALL_COLUMNS)
    row.commit()
    assert cells_of(table.read_row(b"row-1")) == {"cf": {b"a": [(b"a-new", ts(5))]}}

    # The whole row.
    row = table.direct_row(b"row-1")
    row.delete()
    row.commit()
    assert table.read_row(b"row-1") is None
    assert rows_of(table.read_rows()) == []


def test_server_timestamps_are_assigned(make_table, unique_name):
    table = make_table(unique_name, {"cf": None})
    before = datetime.datetime.now(UTC) - datetime.timedelta(seconds=5)
    row = table.direct_row(b"k")
    row.set_cell("cf", b"q", b"v")  # no timestamp: the server's time (-1)
    row.commit()
    after = datetime.datetime.now(UTC) + datetime.timedelta(seconds=5)
    cell = table.read_row(b"k").cells["cf"][b"q"][0]
    assert cell.value == b"v"
    assert before <= cell.timestamp <= after


def test_batch_writes_and_row_sets(make_table, unique_name):
    table = make_table(unique_name, {"cf": None})
    keys = [f"key-{i:03}".encode() for i in range(50)]
    write_simple_rows(table, keys)

    everything = rows_of(table.read_rows())
    assert [k for k, _ in everything] == keys
    assert everything[7] == (b"key-007", {"cf": {b"q": [(b"value-key-007", T0)]}})

    # start inclusive, end exclusive (or inclusive when asked), limit.
    assert [r.row_key for r in table.read_rows(start_key=b"key-010", end_key=b"key-013")] == [
        b"key-010",
        b"key-011",
        b"key-012",
    ]
    assert [
        r.row_key
        for r in table.read_rows(start_key=b"key-010", end_key=b"key-012", end_inclusive=True)
    ] == [b"key-010", b"key-011", b"key-012"]
    assert [r.row_key for r in table.read_rows(limit=3)] == keys[:3]

    # A RowSet of keys and ranges: rows in key order, each once.
    row_set = RowSet()
    row_set.add_row_key(b"key-040")
    row_set.add_row_key(b"key-002")
    row_set.add_row_key(b"missing")
    row_set.add_row_range(RowRange(start_key=b"key-020", end_key=b"key-023"))
    row_set.add_row_range_from_keys(start_key=b"key-022", end_key=b"key-025")
    row_set.add_row_range_with_prefix("key-04")  # this helper takes str only
    assert [r.row_key for r in table.read_rows(row_set=row_set)] == [
        b"key-002",
        b"key-020",
        b"key-021",
        b"key-022",
        b"key-023",
        b"key-024",
        b"key-040",
        b"key-041",
        b"key-042",
        b"key-043",
        b"key-044",
        b"key-045",
        b"key-046",
        b"key-047",
        b"key-048",
        b"key-049",
    ]

    # The mutations batcher flushes a batch of rows through MutateRows.
    with table.mutations_batcher(flush_count=7) as batcher:
        for i in range(20):
            row = table.direct_row(f"batched-{i:02}".encode())
            row.set_cell("cf", b"n", str(i).encode(), timestamp=ts(i))
            batcher.mutate(row)
    batched = rows_of(table.read_rows(start_key=b"batched-", end_key=b"batched.."))
    assert batched == [
        (f"batched-{i:02}".encode(), {"cf": {b"n": [(str(i).encode(), ts(i))]}}) for i in range(20)
    ]


def test_reads_with_filters(make_table, unique_name):
    table = make_table(unique_name, {"cf": None, "meta": None})
    for key in [b"apple", b"apricot", b"banana", b"cherry"]:
        row = table.direct_row(key)
        for version in range(3):
            row.set_cell("cf", b"v", key + b"-%d" % version, timestamp=ts(version))
        row.set_cell("cf", b"col-a", b"A", timestamp=ts(0))
        row.set_cell("cf", b"col-b", b"B", timestamp=ts(0))
        row.set_cell("cf", b"col-c", b"C", timestamp=ts(0))
        row.set_cell("meta", b"len", str(len(key)).encode(), timestamp=ts(0))
        row.commit()

    def read(filter_, **kwargs):
        return rows_of(table.read_rows(filter_=filter_, **kwargs))

    # Row key regex (anchored: "ap" alone matches nothing).
    assert [k for k, _ in read(row_filters.RowKeyRegexFilter(b"ap.*"))] == [b"apple", b"apricot"]
    assert read(row_filters.RowKeyRegexFilter(b"ap")) == []

    # Latest version of one column of one family.
    latest = row_filters.RowFilterChain(
        [
            row_filters.FamilyNameRegexFilter("cf"),
            row_filters.ColumnQualifierRegexFilter(b"v"),
            row_filters.CellsColumnLimitFilter(1),
        ]
    )
    assert read(latest) == [
        (key, {"cf": {b"v": [(key + b"-2", ts(2))]}})
        for key in [b"apple", b"apricot", b"banana", b"cherry"]
    ]

    # Timestamp range [ts(1), ts(2)) on one column.
    chain = row_filters.RowFilterChain(
        [
            row_filters.ColumnQualifierRegexFilter(b"v"),
            row_filters.TimestampRangeFilter(row_filters.TimestampRange(start=ts(1), end=ts(2))),
        ]
    )
    assert read(chain, start_key=b"banana", end_key=b"banana\x00") == [
        (b"banana", {"cf": {b"v": [(b"banana-1", ts(1))]}})
    ]

    # Column range col-a (exclusive) .. col-c (inclusive), values stripped.
    stripped = row_filters.RowFilterChain(
        [
            row_filters.ColumnRangeFilter(
                "cf", start_column=b"col-a", end_column=b"col-c", inclusive_start=False
            ),
            row_filters.StripValueTransformerFilter(True),
        ]
    )
    assert read(stripped, limit=1) == [
        (b"apple", {"cf": {b"col-b": [(b"", ts(0))], b"col-c": [(b"", ts(0))]}})
    ]

    # Value range and exact value.
    assert read(
        row_filters.RowFilterChain(
            [
                row_filters.FamilyNameRegexFilter("meta"),
                row_filters.ValueRangeFilter(b"6", b"7", inclusive_end=False),
            ]
        )
    ) == [
        (b"banana", {"meta": {b"len": [(b"6", ts(0))]}}),
        (b"cherry", {"meta": {b"len": [(b"6", ts(0))]}}),
    ]
    assert [k for k, _ in read(row_filters.ExactValueFilter(b"apricot-1"))] == [b"apricot"]

    # Per-row cell offset and limit (cells in family, qualifier, newest-first order).
    per_row = row_filters.RowFilterChain(
        [row_filters.CellsRowOffsetFilter(1), row_filters.CellsRowLimitFilter(2)]
    )
    assert read(per_row, limit=1) == [
        (b"apple", {"cf": {b"col-b": [(b"B", ts(0))], b"col-c": [(b"C", ts(0))]}})
    ]

    # Interleave (union) of two branches, and a condition.
    union = row_filters.RowFilterUnion(
        [
            row_filters.FamilyNameRegexFilter("meta"),
            row_filters.RowFilterChain(
                [
                    row_filters.ColumnQualifierRegexFilter(b"col-a"),
                    row_filters.CellsColumnLimitFilter(1),
                ]
            ),
        ]
    )
    assert read(union, start_key=b"cherry") == [
        (b"cherry", {"cf": {b"col-a": [(b"A", ts(0))]}, "meta": {b"len": [(b"6", ts(0))]}})
    ]
    condition = row_filters.ConditionalRowFilter(
        base_filter=row_filters.ValueRegexFilter(b"5"),
        true_filter=row_filters.FamilyNameRegexFilter("meta"),
        false_filter=row_filters.BlockAllFilter(True),
    )
    assert read(condition) == [(b"apple", {"meta": {b"len": [(b"5", ts(0))]}})]

    # Labels come back on the cells they were applied to.
    labelled = row_filters.RowFilterChain(
        [
            row_filters.FamilyNameRegexFilter("meta"),
            row_filters.ApplyLabelFilter("tag"),
        ]
    )
    row = table.read_row(b"apple", filter_=labelled)
    assert [(c.value, c.labels) for c in row.cells["meta"][b"len"]] == [(b"5", ["tag"])]

    # A filter the server cannot compile is INVALID_ARGUMENT.
    with pytest.raises(exceptions.InvalidArgument):
        read(row_filters.RowKeyRegexFilter(b"(unclosed"))


def test_check_and_mutate_with_conditional_rows(make_table, unique_name):
    table = make_table(unique_name, {"cf": None})
    row = table.direct_row(b"account")
    row.set_cell("cf", b"state", b"open", timestamp=ts(0))
    row.commit()

    is_open = row_filters.RowFilterChain(
        [row_filters.ColumnQualifierRegexFilter(b"state"), row_filters.ValueRegexFilter(b"open")]
    )
    cond = table.conditional_row(b"account", filter_=is_open)
    cond.set_cell("cf", b"state", b"closed", timestamp=ts(1), state=True)
    cond.set_cell("cf", b"note", b"was not open", timestamp=ts(1), state=False)
    assert cond.commit() is True
    assert cells_of(table.read_row(b"account")) == {
        "cf": {b"state": [(b"closed", ts(1)), (b"open", ts(0))]}
    }

    # Now the predicate's latest-version check fails: the false branch runs.
    latest_is_open = row_filters.RowFilterChain([row_filters.CellsColumnLimitFilter(1), is_open])
    cond = table.conditional_row(b"account", filter_=latest_is_open)
    cond.set_cell("cf", b"state", b"reopened", timestamp=ts(2), state=True)
    cond.set_cell("cf", b"note", b"was not open", timestamp=ts(2), state=False)
    cond.delete_cell("cf", b"state", state=False)
    assert cond.commit() is False
    assert cells_of(table.read_row(b"account")) == {"cf": {b"note": [(b"was not open", ts(2))]}}

    # A predicate on a row that does not exist matches nothing.
    cond = table.conditional_row(b"nobody", filter_=row_filters.PassAllFilter(True))
    cond.set_cell("cf", b"x", b"true-branch", timestamp=ts(3), state=True)
    cond.set_cell("cf", b"x", b"false-branch", timestamp=ts(3), state=False)
    assert cond.commit() is False
    assert cells_of(table.read_row(b"nobody")) == {"cf": {b"x": [(b"false-branch", ts(3))]}}


def test_append_and_increment_with_append_rows(make_table, unique_name):
    table = make_table(unique_name, {"cf": None})
    row = table.direct_row(b"counter")
    row.set_cell("cf", b"text", b"hello", timestamp=ts(0))
    row.set_cell("cf", b"count", (41).to_bytes(8, "big", signed=True), timestamp=ts(0))
    row.commit()

    append = table.append_row(b"counter")
    append.append_cell_value("cf", b"text", b", world")
    append.increment_cell_value("cf", b"count", 1)
    append.increment_cell_value("cf", b"fresh", -5)  # a missing cell counts from 0
    result = append.commit()

    # The answer holds the new cells, each at max(now, old timestamp).
    assert sorted(result["cf"]) == [b"count", b"fresh", b"text"]
    assert [v for v, _ in result["cf"][b"text"]] == [b"hello, world"]
    assert [v for v, _ in result["cf"][b"count"]] == [(42).to_bytes(8, "big", signed=True)]
    assert [v for v, _ in result["cf"][b"fresh"]] == [(-5).to_bytes(8, "big", signed=True)]
    for _, when in result["cf"][b"text"] + result["cf"][b"count"]:
        assert when > ts(0)

    # The stored latest versions are those values.
    latest = table.read_row(b"counter", filter_=row_filters.CellsColumnLimitFilter(1))
    assert latest.cell_value("cf", b"text") == b"hello, world"
    assert int.from_bytes(latest.cell_value("cf", b"count"), "big", signed=True) == 42
    assert int.from_bytes(latest.cell_value("cf", b"fresh"), "big", signed=True) == -5

    # Incrementing a value that is not 8 bytes is refused.
    bad = table.append_row(b"counter")
    bad.increment_cell_value("cf", b"text", 1)
    with pytest.raises((exceptions.FailedPrecondition, exceptions.InvalidArgument)):
        bad.commit()


def test_sample_row_keys_of_a_pre_split_table(make_table, unique_name):
    splits = [b"g", b"p"]
    table = make_table(unique_name, {"cf": None}, initial_split_keys=splits)
    write_simple_rows(table, [b"a", b"h", b"q", b"z"])
    samples = list(table.sample_row_keys())
    keys = [s.row_key for s in samples]
    offsets = [s.offset_bytes for s in samples]
    # One sample per tablet boundary; the last one's key is empty (the end of the table).
    assert keys == [b"g", b"p", b""]
    assert offsets == sorted(offsets)
    # Reads cross the tablet boundaries.
    assert [r.row_key for r in table.read_rows()] == [b"a", b"h", b"q", b"z"]


def test_drop_by_prefix_and_truncate(make_table, unique_name):
    table = make_table(unique_name, {"cf": None}, initial_split_keys=[b"m"])
    keys = [b"a-1", b"a-2", b"ab", b"b-1", b"n-1", b"n-2"]
    write_simple_rows(table, keys)

    table.drop_by_prefix(b"a-")
    assert [r.row_key for r in table.read_rows()] == [b"ab", b"b-1", b"n-1", b"n-2"]
    table.drop_by_prefix(b"n")
    assert [r.row_key for r in table.read_rows()] == [b"ab", b"b-1"]

    table.truncate()
    assert rows_of(table.read_rows()) == []
    # The table and its families are still there and take writes.
    assert sorted(table.list_column_families()) == ["cf"]
    write_simple_rows(table, [b"after"])
    assert rows_of(table.read_rows()) == [(b"after", {"cf": {b"q": [(b"value-after", T0)]}})]


def test_delete_table_and_missing_tables(instance, make_table, unique_name):
    table = make_table(unique_name, {"cf": None})
    write_simple_rows(table, [b"k"])
    table.delete()
    assert not table.exists()
    assert unique_name not in [t.table_id for t in instance.list_tables()]
    with pytest.raises(exceptions.NotFound):
        table.read_row(b"k")
    with pytest.raises(exceptions.NotFound):
        table.delete()
    # The classic DirectRow.commit answers a google.rpc.Status instead of raising.
    row = instance.table("never-created-" + unique_name).direct_row(b"k")
    row.set_cell("cf", b"q", b"v", timestamp=T0)
    assert row.commit().code == 5  # NOT_FOUND


def test_what_tabula_does_not_offer_is_unimplemented_with_a_reason(make_table, unique_name):
    table = make_table(unique_name, {"cf": None})
    for call in (table.get_iam_policy, lambda: list(table.list_backups())):
        with pytest.raises(exceptions.MethodNotImplemented) as refused:
            call()
        assert "not supported by Tabula" in refused.value.message, refused.value
    # Consistency tokens: a write is durable and visible once acknowledged.
    admin = table._instance._client.table_admin_client
    token = admin.generate_consistency_token(name=table.name).consistency_token
    assert admin.check_consistency(name=table.name, consistency_token=token).consistent
