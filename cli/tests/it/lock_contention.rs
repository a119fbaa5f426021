//! A randomized contention run with a safety checker: six `tabula lock hold` processes contend
//! for one exclusive lock on a 3-node cell while a seeded driver SIGSTOPs and SIGCONTs them
//! (sometimes for longer than their lease), SIGKILLs them and SIGINTs them (which releases),
//! respawning every holder that exits. Each holder prints `holding generation=G at_unix_us=U` every 20 ms while its session is
//! safe.
//!
//! The checker, over every claim of every process: a generation is claimed by one process
//! only; the claim intervals `[min U, max U]` of different generations do not overlap; and
//! generations grow with time (the later holder has the larger generation). Progress is
//! asserted too (several generations), so the run cannot pass by holding nothing.
//!
//! The seed is printed; `TABULA_CONTENTION_SEED=<n>` replays a run's fault choices (timing
//! still varies).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support;
use crate::support::{Cell, DEADLINE, HoldArgs, HoldEvent, Holder};

const HOLDERS: usize = 6;
const TTL_MS: u64 = 1500;
const REPORT_MS: u64 = 20;
/// How long the driver injects faults.
const FAULT_PHASE: Duration = Duration::from_secs(20);
/// No stop starts this close to the end of the fault phase, so every stop has ended (and the
/// resumed holder had time to speak) before the final interrupt.
const QUIET_TAIL: Duration = Duration::from_secs(4);
/// At least this many distinct generations must have been claimed.
const MIN_GENERATIONS: usize = 5;

/// One `holding` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Claim {
    generation: u64,
    at_unix_us: u64,
    /// Which process printed it (index into the run's holders).
    holder: usize,
}

/// The claims of one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tenure {
    generation: u64,
    first_us: u64,
    last_us: u64,
    holders: BTreeSet<usize>,
    claims: usize,
}

/// Checks the claims; answers the tenures in time order, or what is wrong.
fn check(claims: &[Claim]) -> Result<Vec<Tenure>, String> {
    let mut by_generation: BTreeMap<u64, Tenure> = BTreeMap::new();
    for c in claims {
        let t = by_generation.entry(c.generation).or_insert(Tenure {
            generation: c.generation,
            first_us: c.at_unix_us,
            last_us: c.at_unix_us,
            holders: BTreeSet::new(),
            claims: 0,
        });
        t.first_us = t.first_us.min(c.at_unix_us);
        t.last_us = t.last_us.max(c.at_unix_us);
        t.holders.insert(c.holder);
        t.claims += 1;
    }
    let mut tenures: Vec<Tenure> = by_generation.into_values().collect();
    if let Some(t) = tenures.iter().find(|t| t.holders.len() > 1) {
        return Err(format!(
            "generation {} claimed by several processes {:?}",
            t.generation, t.holders
        ));
    }
    tenures.sort_by_key(|t| (t.first_us, t.generation));
    for pair in tenures.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.last_us >= b.first_us {
            return Err(format!(
                "generations {} (claimed {}..={} by {:?}) and {} (claimed {}..={} by {:?}) \
                 overlap by {} us",
                a.generation,
                a.first_us,
                a.last_us,
                a.holders,
                b.generation,
                b.first_us,
                b.last_us,
                b.holders,
                a.last_us - b.first_us
            ));
        }
        if a.generation >= b.generation {
            return Err(format!(
                "generation {} was held before generation {}",
                a.generation, b.generation
            ));
        }
    }
    Ok(tenures)
}

#[test]
fn the_checker_accepts_disjoint_ordered_tenures_and_rejects_the_rest() {
    let c = |generation, at_unix_us, holder| Claim {
        generation,
        at_unix_us,
        holder,
    };
    let good = [
        c(5, 10, 0),
        c(5, 20, 0),
        c(9, 21, 1),
        c(9, 40, 1),
        c(12, 50, 0),
    ];
    let tenures = check(&good).unwrap();
    assert_eq!(
        tenures.iter().map(|t| t.generation).collect::<Vec<_>>(),
        [5, 9, 12]
    );
    assert!(check(&[]).unwrap().is_empty());
    // The old holder claims after the new one's first claim.
    let overlap = check(&[c(5, 10, 0), c(9, 21, 1), c(5, 21, 0)]).unwrap_err();
    assert!(overlap.contains("overlap"), "{overlap}");
    // The later tenure has the smaller generation.
    let order = check(&[c(9, 10, 0), c(5, 20, 1)]).unwrap_err();
    assert!(order.contains("held before"), "{order}");
    // Two processes claim one generation.
    let shared = check(&[c(5, 10, 0), c(5, 20, 1)]).unwrap_err();
    assert!(shared.contains("several"), "{shared}");
}

/// A holder slot: the running process, and until when the driver stopped it.
struct Slot {
    /// Index into `Run::holders`.
    current: usize,
    stopped_until: Option<Instant>,
}

/// Every process of the run (live and finished) and the fault counts.
struct Run {
    holders: Vec<Holder>,
    slots: Vec<Slot>,
    faults: BTreeMap<&'static str, usize>,
    /// Every fault: when (unix us), what, on which process or node.
    fault_log: Vec<(u64, &'static str, String)>,
}

impl Run {
    fn spawn(&mut self, cell: &Cell) -> usize {
        let args = HoldArgs {
            path: "/contended".to_owned(),
            ttl_ms: TTL_MS,
            report_ms: REPORT_MS,
        };
        let index = self.holders.len();
        let mut holder = Holder::spawn(cell, &format!("holder-{index}"), &args);
        holder.quiet();
        self.holders.push(holder);
        index
    }

    /// Replaces every slot's process that exited.
    fn respawn_exited(&mut self, cell: &Cell) {
        for s in 0..self.slots.len() {
            let current = self.slots[s].current;
            if self.holders[current].try_exit().is_some() {
                self.slots[s] = Slot {
                    current: self.spawn(cell),
                    stopped_until: None,
                };
            }
        }
    }

    /// Resumes the slots whose stop is over (all of them with `all`).
    fn resume_due(&mut self, all: bool) {
        let now = Instant::now();
        for slot in &mut self.slots {
            if let Some(until) = slot.stopped_until
                && (all || until <= now)
            {
                self.holders[slot.current].signal(libc::SIGCONT);
                slot.stopped_until = None;
            }
        }
    }

    /// The slot whose process holds the lock, as far as its output tells.
    fn holding_slot(&self) -> Option<usize> {
        self.slots.iter().position(|slot| {
            slot.stopped_until.is_none()
                && self.holders[slot.current]
                    .events()
                    .iter()
                    .any(|e| matches!(e, HoldEvent::Acquired { .. }))
        })
    }

    /// One random fault on the holder (mostly) or on a random slot.
    fn fault(&mut self, rng: &mut StdRng, may_stop: bool) {
        let target = match self.holding_slot() {
            Some(s) if rng.random_bool(0.7) => s,
            _ => rng.random_range(0..self.slots.len()),
        };
        let slot = &mut self.slots[target];
        if slot.stopped_until.is_some() {
            return;
        }
        let holder = &mut self.holders[slot.current];
        let roll = rng.random_range(0..100);
        let kind = match roll {
            0..25 if may_stop => {
                let ms = rng.random_range(100..800);
                holder.signal(libc::SIGSTOP);
                slot.stopped_until = Some(Instant::now() + Duration::from_millis(ms));
                "stop within the lease"
            }
            25..50 if may_stop => {
                let ms = rng.random_range(TTL_MS + 200..TTL_MS * 2 + 500);
                holder.signal(libc::SIGSTOP);
                slot.stopped_until = Some(Instant::now() + Duration::from_millis(ms));
                "stop past the lease"
            }
            50..70 => {
                holder.signal(libc::SIGKILL);
                "kill"
            }
            _ => {
                holder.signal(libc::SIGINT);
                "interrupt"
            }
        };
        let name = holder.name.clone();
        self.note(kind, name);
    }

    fn note(&mut self, kind: &'static str, target: String) {
        *self.faults.entry(kind).or_default() += 1;
        self.fault_log.push((support::unix_us(), kind, target));
    }

    /// Every claim of every process, checking that each claims only the generation it
    /// acquired.
    fn claims(&self) -> Vec<Claim> {
        let mut claims = Vec::new();
        for (index, holder) in self.holders.iter().enumerate() {
            let events = holder.events();
            let acquired: Vec<u64> = events
                .iter()
                .filter_map(|e| match e {
                    HoldEvent::Acquired { generation, .. } => Some(*generation),
                    _ => None,
                })
                .collect();
            assert!(acquired.len() <= 1, "{}", holder.dump());
            for e in events {
                if let HoldEvent::Holding {
                    generation,
                    at_unix_us,
                } = e
                {
                    assert_eq!(
                        acquired.first(),
                        Some(&generation),
                        "{} claims a generation it did not acquire:\n{}",
                        holder.name,
                        holder.dump()
                    );
                    claims.push(Claim {
                        generation,
                        at_unix_us,
                        holder: index,
                    });
                }
            }
        }
        claims
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contending_holders_never_overlap_under_stops_kills_and_interrupts() {
    let seed = std::env::var("TABULA_CONTENTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    eprintln!("contention seed: {seed} (replay with TABULA_CONTENTION_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let mut cell = Cell::start(3);
    cell.wait_leader(&cell.ids()).await;
    let mut run = Run {
        holders: Vec::new(),
        slots: Vec::new(),
        faults: BTreeMap::new(),
        fault_log: Vec::new(),
    };
    let start_us = support::unix_us();
    for _ in 0..HOLDERS {
        let current = run.spawn(&cell);
        run.slots.push(Slot {
            current,
            stopped_until: None,
        });
    }

    let start = Instant::now();
    let end = start + FAULT_PHASE;
    let mut next_fault = start + Duration::from_millis(rng.random_range(500..1200));
    while Instant::now() < end {
        run.respawn_exited(&cell);
        run.resume_due(false);
        if Instant::now() >= next_fault {
            let may_stop = Instant::now() + QUIET_TAIL < end;
            run.fault(&mut rng, may_stop);
            next_fault = Instant::now() + Duration::from_millis(rng.random_range(300..1200));
        }
        // Paces the driver; nothing waits on it.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.resume_due(true);
    for slot in &run.slots {
        run.holders[slot.current].signal(libc::SIGINT);
    }
    for slot in &run.slots {
        let holder = &mut run.holders[slot.current];
        holder.wait_exit(DEADLINE).await;
    }
    cell.assert_running();

    let claims = run.claims();
    let verdict = check(&claims);
    let ms = |us: u64| (i128::from(us) - i128::from(start_us)) / 1000;
    for (at, kind, target) in &run.fault_log {
        eprintln!("fault at {} ms: {kind} {target}", ms(*at));
    }
    if std::env::var_os("TABULA_CONTENTION_DUMP").is_some() {
        eprintln!("start at {start_us}");
        for h in &run.holders {
            eprintln!("{}", h.dump());
        }
    }
    let tenures = match verdict {
        Ok(tenures) => tenures,
        Err(why) => {
            for h in &run.holders {
                eprintln!("{}", h.dump());
            }
            panic!("seed {seed}: {why}");
        }
    };
    eprintln!(
        "seed {seed}: {} processes, faults {:?}, {} claims, {} generations: {:?}",
        run.holders.len(),
        run.faults,
        claims.len(),
        tenures.len(),
        tenures
            .iter()
            .map(|t| (
                t.generation,
                t.holders.clone(),
                ms(t.first_us),
                ms(t.last_us)
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        tenures.len() >= MIN_GENERATIONS,
        "seed {seed}: only {} generations held ({:?})",
        tenures.len(),
        run.faults
    );
}
