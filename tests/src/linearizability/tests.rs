//! The checker against histories whose answer is known: hand-written linearizable and
//! non-linearizable ones, and generated ones (a real sequential execution with random
//! overlapping intervals is always linearizable; a read answering a value nobody wrote never
//! is).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn t(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn val(v: &str) -> Bytes {
    Bytes::copy_from_slice(v.as_bytes())
}

fn w(client: u32, inv: u64, done: u64, v: &str) -> Operation {
    Operation::completed(
        client,
        "k",
        Call::Write(val(v)),
        t(inv),
        t(done),
        Return::Write,
    )
}

fn w_unknown(client: u32, inv: u64, v: &str) -> Operation {
    Operation::unknown(client, "k", Call::Write(val(v)), t(inv))
}

fn r(client: u32, inv: u64, done: u64, v: Option<&str>) -> Operation {
    Operation::completed(
        client,
        "k",
        Call::Read,
        t(inv),
        t(done),
        Return::Read(v.map(val)),
    )
}

fn cas_call(expect: Option<&str>, new: &str) -> Call {
    Call::CompareAndSet {
        expect: expect.map(val),
        new: val(new),
    }
}

fn cas(client: u32, inv: u64, done: u64, expect: Option<&str>, new: &str, ok: bool) -> Operation {
    Operation::completed(
        client,
        "k",
        cas_call(expect, new),
        t(inv),
        t(done),
        Return::CompareAndSet(ok),
    )
}

fn cas_unknown(client: u32, inv: u64, expect: Option<&str>, new: &str) -> Operation {
    Operation::unknown(client, "k", cas_call(expect, new), t(inv))
}

fn verdict(history: &[Operation]) -> Verdict {
    check(history, &CheckOptions::default()).unwrap().verdict()
}

fn violation(history: &[Operation]) -> Violation {
    let report = check(history, &CheckOptions::default()).unwrap();
    assert_eq!(report.verdict(), Verdict::Violation, "{report}");
    report.violations().next().unwrap().clone()
}

#[test]
fn sequential_reads_writes_and_compare_and_sets_are_linearizable() {
    let h = [
        r(1, 0, 1, None),
        cas(1, 2, 3, None, "a", true),
        r(2, 4, 5, Some("a")),
        cas(2, 6, 7, Some("a"), "b", true),
        cas(1, 8, 9, Some("a"), "c", false),
        w(3, 10, 11, "d"),
        r(1, 12, 13, Some("d")),
    ];
    assert_eq!(verdict(&h), Verdict::Ok);
}

#[test]
fn a_stale_read_after_a_completed_write_is_a_violation_explained_by_three_operations() {
    let h = [
        w(1, 0, 10, "a"),
        r(2, 12, 14, Some("a")),
        w(1, 20, 30, "b"),
        r(3, 31, 33, Some("b")),
        r(2, 40, 50, Some("a")),
        w(3, 60, 70, "c"),
    ];
    let v = violation(&h);
    assert_eq!(v.key, Bytes::from("k"));
    assert_eq!(v.operations, [h[0].clone(), h[2].clone(), h[4].clone()]);
    assert_eq!(v.longest_order, [0, 1]);
    assert_eq!(v.value_after, Some(val("b")));
    assert_eq!(v.blocked, Some(2));
    let text = v.to_string();
    assert!(text.contains("key \"k\" is not linearizable"), "{text}");
    assert!(
        text.contains("#2 client 2 key \"k\" [0.040s, 0.050s] read = \"a\""),
        "{text}"
    );
    assert!(text.contains("the register holds \"b\""), "{text}");
}

#[test]
fn a_lost_acknowledged_write_is_a_violation() {
    let h = [w(1, 0, 10, "a"), r(2, 20, 30, None)];
    let v = violation(&h);
    assert_eq!(v.operations.len(), 2);
    // A write lost between two reads that saw it and then the older value.
    let h = [
        w(1, 0, 10, "a"),
        w(1, 11, 20, "b"),
        r(2, 21, 22, Some("b")),
        r(3, 23, 24, Some("a")),
    ];
    assert_eq!(verdict(&h), Verdict::Violation);
}

#[test]
fn a_compare_and_set_that_succeeds_on_a_wrong_value_is_a_violation() {
    let h = [w(1, 0, 10, "a"), cas(2, 20, 30, Some("b"), "c", true)];
    assert_eq!(verdict(&h), Verdict::Violation);
    let h = [w(1, 0, 10, "a"), cas(2, 20, 30, None, "c", true)];
    assert_eq!(verdict(&h), Verdict::Violation);
    // And one that fails on the right value.
    let h = [w(1, 0, 10, "a"), cas(2, 20, 30, Some("a"), "c", false)];
    assert_eq!(verdict(&h), Verdict::Violation);
}

#[test]
fn concurrent_operations_that_fit_in_one_order_only_are_linearizable() {
    // The read of absent must come before the write, the read of "a" after it.
    let h = [
        w(1, 0, 50, "a"),
        r(2, 10, 20, None),
        r(3, 30, 40, Some("a")),
    ];
    assert_eq!(verdict(&h), Verdict::Ok);
    // Two concurrent writes: the later read decides their order ("b" then "a") ...
    let h = [
        w(1, 0, 100, "a"),
        w(2, 0, 100, "b"),
        r(3, 110, 120, Some("a")),
    ];
    assert_eq!(verdict(&h), Verdict::Ok);
    // ... and a read of "b" after that read has no order left.
    let mut h = h.to_vec();
    h.push(r(3, 130, 140, Some("b")));
    assert_eq!(verdict(&h), Verdict::Violation);
    // Three concurrent compare-and-sets form one chain only.
    let h = [
        cas(1, 0, 100, Some("b"), "c", true),
        cas(2, 0, 100, None, "a", true),
        cas(3, 0, 100, Some("a"), "b", true),
        r(1, 101, 102, Some("c")),
    ];
    assert_eq!(verdict(&h), Verdict::Ok);
}

#[test]
fn an_unknown_outcome_may_take_effect_or_not_but_only_after_its_call_and_once() {
    // Taking effect, and not.
    assert_eq!(
        verdict(&[w_unknown(1, 0, "a"), r(2, 10, 20, Some("a"))]),
        Verdict::Ok
    );
    assert_eq!(
        verdict(&[w_unknown(1, 0, "a"), r(2, 10, 20, None)]),
        Verdict::Ok
    );
    // Taking effect long after its call.
    let h = [
        w_unknown(1, 0, "a"),
        r(2, 10, 20, None),
        r(2, 30, 40, Some("a")),
    ];
    assert_eq!(verdict(&h), Verdict::Ok);
    // Not before its call.
    assert_eq!(
        verdict(&[r(2, 0, 5, Some("a")), w_unknown(1, 10, "a")]),
        Verdict::Violation
    );
    // Not twice.
    let h = [
        w_unknown(1, 0, "a"),
        w(2, 10, 20, "b"),
        r(3, 30, 40, Some("a")),
        r(3, 50, 60, Some("b")),
    ];
    assert_eq!(verdict(&h), Verdict::Violation);
    // A compare-and-set of unknown outcome takes effect only where it matches.
    assert_eq!(
        verdict(&[cas_unknown(1, 0, None, "x"), r(2, 10, 20, Some("x"))]),
        Verdict::Ok
    );
    let h = [
        w(1, 0, 5, "a"),
        cas_unknown(2, 10, None, "x"),
        r(3, 20, 30, Some("x")),
    ];
    assert_eq!(verdict(&h), Verdict::Violation);
}

#[test]
fn an_unknown_write_nobody_read_can_still_explain_a_failed_compare_and_set() {
    // Client 1 read "a" and its compare-and-set from "a" failed: only client 2's write of
    // unknown outcome, never read, can have been in the way.
    let h = [
        w(1, 0, 5, "a"),
        r(1, 6, 7, Some("a")),
        w_unknown(2, 8, "v"),
        cas(1, 10, 15, Some("a"), "x", false),
        w(3, 20, 25, "w"),
        r(1, 30, 35, Some("w")),
    ];
    assert_eq!(verdict(&h), Verdict::Ok);
    let without: Vec<Operation> = h.iter().filter(|o| !o.is_unknown()).cloned().collect();
    assert_eq!(verdict(&without), Verdict::Violation);
}

#[test]
fn keys_are_checked_independently() {
    let mut other = w(1, 0, 10, "a");
    other.key = Bytes::from("other");
    let mut other_read = r(2, 20, 30, Some("a"));
    other_read.key = Bytes::from("other");
    let h = [w(1, 0, 10, "a"), r(2, 20, 30, None), other, other_read];
    let report = check(&h, &CheckOptions::default()).unwrap();
    assert_eq!(report.keys.len(), 2);
    assert!(matches!(report.keys[0].verdict, KeyVerdict::Violation(_)));
    assert_eq!(report.keys[1].key, Bytes::from("other"));
    assert_eq!(report.keys[1].verdict, KeyVerdict::Linearizable);
    assert_eq!(report.keys[1].operations, 2);
    assert_eq!(report.violations().count(), 1);
    assert!(report.to_string().contains("NOT LINEARIZABLE"), "{report}");
}

#[test]
fn a_search_past_its_step_bound_answers_unknown() {
    let mut h: Vec<Operation> = (0..12).map(|i| w(i, 0, 1000, &format!("v{i}"))).collect();
    h.push(r(99, 2000, 2001, Some("v0")));
    h.push(r(99, 2002, 2003, Some("v1")));
    let options = CheckOptions {
        max_steps_per_key: 100,
        ..CheckOptions::default()
    };
    let report = check(&h, &options).unwrap();
    assert_eq!(report.verdict(), Verdict::Unknown, "{report}");
    assert!(
        matches!(&report.keys[0].verdict, KeyVerdict::Unknown(why) if why.contains("step bound")),
        "{report}"
    );
    // Unbounded, the same history is a violation ("v0" then "v1" needs two orders).
    assert_eq!(verdict(&h), Verdict::Violation);
}

#[test]
fn a_malformed_history_is_refused() {
    let h = [r(1, 10, 5, None)];
    assert!(matches!(
        check(&h, &CheckOptions::default()),
        Err(HistoryError::CompletesBeforeInvoke { .. })
    ));
}

#[test]
fn unknown_reads_are_ignored_and_counted() {
    let h = [
        w(1, 0, 10, "a"),
        Operation::unknown(2, "k", Call::Read, t(0)),
    ];
    let report = check(&h, &CheckOptions::default()).unwrap();
    assert_eq!(report.verdict(), Verdict::Ok);
    assert_eq!(report.keys[0].unknown_outcomes, 1);
}

/// A long history of `clients` concurrent clients on two keys, each client calling one
/// operation after another with random latencies; the register executes the operations in the
/// order of random points inside their intervals. About 3% of the writes and compare-and-sets
/// lose their answer, half of those without taking effect.
fn concurrent_history(seed: u64, clients: u32, per_client: usize) -> Vec<Operation> {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(seed);
    // (point, client, invoke, complete, kind, key)
    let mut planned = Vec::new();
    for client in 0..clients {
        let mut now = rng.random_range(0..1_000u64);
        for _ in 0..per_client {
            let invoke = now;
            let point = invoke + rng.random_range(0..5_000u64);
            let complete = point + rng.random_range(0..5_000u64);
            let kind = rng.random_range(0..3u8);
            let key = rng.random_range(0..2u8);
            planned.push((point, client, invoke, complete, kind, key));
            now = complete + rng.random_range(0..3_000u64);
        }
    }
    planned.sort();
    let mut regs: HashMap<u8, Option<Bytes>> = HashMap::new();
    let mut out = Vec::new();
    for (i, (_, client, invoke, complete, kind, key)) in planned.into_iter().enumerate() {
        let reg = regs.entry(key).or_insert(None);
        let new = val(&format!("{client}-{i}"));
        let lost = kind != 0 && rng.random_range(0..100) < 3;
        let applied = !lost || rng.random_bool(0.5);
        let (call, ret) = match kind {
            0 => (Call::Read, Return::Read(reg.clone())),
            1 => {
                if applied {
                    *reg = Some(new.clone());
                }
                (Call::Write(new), Return::Write)
            }
            _ => {
                let expect = if rng.random_bool(0.7) {
                    reg.clone()
                } else {
                    Some(val("stale"))
                };
                let matched = expect == *reg;
                if matched && applied {
                    *reg = Some(new.clone());
                }
                (
                    Call::CompareAndSet { expect, new },
                    Return::CompareAndSet(matched),
                )
            }
        };
        let key = Bytes::from(format!("key{key}"));
        let (invoke, complete) = (
            Duration::from_micros(invoke),
            Duration::from_micros(complete),
        );
        out.push(if lost {
            Operation::unknown(client, key, call, invoke)
        } else {
            Operation::completed(client, key, call, invoke, complete, ret)
        });
    }
    out
}

#[test]
fn a_long_concurrent_history_with_unknown_outcomes_is_checked_in_few_steps() {
    let h = concurrent_history(7, 8, 1_000);
    let unknown = h.iter().filter(|o| o.is_unknown()).count();
    assert!(unknown > 50, "{unknown}");
    let report = check(&h, &CheckOptions::default()).unwrap();
    assert_eq!(report.verdict(), Verdict::Ok, "{report}");
    for k in &report.keys {
        // Linear in the operations times the unknown outcomes (each of which the search may
        // try at every point after its call): nothing exponential.
        let bound = k.operations * (k.unknown_outcomes + 10);
        assert!(k.steps < bound as u64, "{report}");
    }
    // One read moved to a value written only much later is caught.
    let mut late = h.clone();
    let victim = late
        .iter()
        .position(|o| o.key == "key0" && matches!(o.call, Call::Read))
        .unwrap();
    let future = late
        .iter()
        .rev()
        .find_map(|o| match (&o.call, &o.completion) {
            (Call::Write(v), Some(_)) if o.key == "key0" => Some(v.clone()),
            _ => None,
        })
        .unwrap();
    if let Some(c) = late[victim].completion.as_mut() {
        c.ret = Return::Read(Some(future));
    }
    let report = check(&late, &CheckOptions::default()).unwrap();
    assert_eq!(report.verdict(), Verdict::Violation, "{report}");
}

/// One generated operation: (kind 0 read / 1 write / 2 cas, key, time before and after its
/// linearization point, unknown outcome if 0 (of 8), which value a cas expects, client).
type Spec = (u8, u8, u64, u64, u8, u8, u32);

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..3,
        0u8..3,
        0u64..=40,
        0u64..=40,
        0u8..8,
        0u8..3,
        0u32..5,
    )
}

/// A history made by running `specs` one after another on real registers (operation `i` takes
/// effect at `100 + 10 i` ms), each given a random interval around that point; some writes
/// and compare-and-sets get an unknown outcome, and `phantoms` writes of unknown outcome that
/// never took effect are added, and a read of every key at the end.
fn sequential_history(specs: &[Spec], phantoms: &[(u8, u64)]) -> Vec<Operation> {
    let mut regs: HashMap<u8, Option<Bytes>> = HashMap::new();
    let mut written: Vec<Bytes> = Vec::new();
    let mut out = Vec::new();
    for (i, &(kind, key, before, after, unknown, pick, client)) in specs.iter().enumerate() {
        let at = 100 + 10 * i as u64;
        let (invoke, done) = (t(at - before), t(at + after));
        let reg = regs.entry(key).or_insert(None);
        let new = val(&format!("v{i}"));
        let (call, ret) = match kind {
            0 => (Call::Read, Return::Read(reg.clone())),
            1 => {
                *reg = Some(new.clone());
                (Call::Write(new.clone()), Return::Write)
            }
            _ => {
                let expect = match pick {
                    0 => reg.clone(),
                    1 => None,
                    _ => written.last().cloned(),
                };
                let matched = expect == *reg;
                if matched {
                    *reg = Some(new.clone());
                }
                (
                    Call::CompareAndSet {
                        expect,
                        new: new.clone(),
                    },
                    Return::CompareAndSet(matched),
                )
            }
        };
        written.push(new);
        let key = Bytes::from(format!("key{key}"));
        let op = if unknown == 0 && kind != 0 {
            Operation::unknown(client, key, call, invoke)
        } else {
            Operation::completed(client, key, call, invoke, done, ret)
        };
        out.push(op);
    }
    // A last read of every key, so that every history has a read to corrupt.
    let end = 100 + 10 * specs.len() as u64 + 50;
    for (key, value) in regs {
        let key = Bytes::from(format!("key{key}"));
        out.push(Operation::completed(
            7,
            key,
            Call::Read,
            t(end),
            t(end + 1),
            Return::Read(value),
        ));
    }
    for (j, &(key, at)) in phantoms.iter().enumerate() {
        let key = Bytes::from(format!("key{key}"));
        let call = Call::Write(val(&format!("phantom{j}")));
        out.push(Operation::unknown(9, key, call, t(at)));
    }
    out
}

proptest! {
    // Failures found are kept beside this file (tests.proptest-regressions) and rerun first.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            prop::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_sequential_execution_with_overlapping_intervals_is_linearizable(
        specs in prop::collection::vec(spec(), 1..80),
        phantoms in prop::collection::vec((0u8..3, 0u64..900), 0..4),
    ) {
        let h = sequential_history(&specs, &phantoms);
        let report = check(&h, &CheckOptions::default()).unwrap();
        prop_assert_eq!(report.verdict(), Verdict::Ok, "{}", report);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_always_a_violation(
        specs in prop::collection::vec(spec(), 1..80),
        phantoms in prop::collection::vec((0u8..3, 0u64..900), 0..4),
        which in any::<prop::sample::Index>(),
    ) {
        let mut h = sequential_history(&specs, &phantoms);
        let reads: Vec<usize> = (0..h.len())
            .filter(|&i| matches!(h[i].completion, Some(Completion { ret: Return::Read(_), .. })))
            .collect();
        let victim = reads[which.index(reads.len())];
        if let Some(c) = h[victim].completion.as_mut() {
            c.ret = Return::Read(Some(val("never written")));
        }
        let report = check(&h, &CheckOptions::default()).unwrap();
        prop_assert_eq!(report.verdict(), Verdict::Violation, "{}", report);
        let v = report.violations().next().unwrap();
        prop_assert!(v.operations.contains(&h[victim]), "{}", v);
        prop_assert_eq!(v.operations.len(), 1, "{}", v);
    }
}
