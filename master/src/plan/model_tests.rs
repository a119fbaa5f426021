//! Model tests of [`plan`] over random views: executing its actions round after round settles
//! into a safe (and, with the balancer on, balanced) placement.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;
use tabula_common::{Epoch, TableId, TabletId};

use super::plan;
use super::testkit::{apply, assigned, check_safe, counts, place, settle, sid, view};
use super::types::{Action, BalancerOptions, ClusterView, ServedTablet, TabletMeta, TabletState};

const LIVE_IDS: [&str; 4] = ["s0", "s1", "s2", "s3"];

/// Random views: up to 4 live servers, up to 16 tablets (tablet 0 is the root tablet, 1 and 2
/// are METADATA) in any state, placed on live (mostly `s0`, so there is something to balance),
/// dead or no servers at random epochs, each placed one served correctly or not at random, and
/// servers reporting random further copies (of known and unknown tablets, at random epochs).
fn arb_view() -> impl Strategy<Value = ClusterView> {
    let meta = (
        0u8..6,
        0u8..12,
        0u64..4,
        0u64..1000,
        prop::bool::weighted(0.8),
    );
    let served = prop::collection::vec((0u64..18, 0u64..5), 0..6);
    (
        0usize..=4,
        prop::collection::vec(meta, 0..16),
        prop::collection::vec(served, 4),
        any::<bool>(),
    )
        .prop_map(|(live, metas, served, enabled)| {
            let mut v = view(&LIVE_IDS[..live]);
            for (i, (state, server, epoch, size_bytes, served)) in metas.into_iter().enumerate() {
                let i = i as u64;
                let table = match i {
                    0 => 0,
                    1 | 2 => 1,
                    _ => 2 + i % 3,
                };
                let server = match server {
                    0..=6 => Some(sid("s0")),
                    7..=9 => Some(sid(&format!("s{}", server - 6))), // dead when >= live
                    10 => Some(sid("gone")),
                    _ => None,
                };
                v.tablets.push(TabletMeta {
                    table: TableId(table),
                    tablet: TabletId(i),
                    start_row: Bytes::from(format!("{i:04}")),
                    end_row: None,
                    epoch: Epoch(epoch),
                    state: match state {
                        0 => TabletState::Unassigned,
                        1..=3 => TabletState::Assigned,
                        4 => TabletState::Moving,
                        _ => TabletState::Deleting,
                    },
                    server: server.clone(),
                    size_bytes,
                });
                if let Some(s) = server
                    .and_then(|s| v.servers.get_mut(&s))
                    .filter(|_| served)
                {
                    s.tablets.push(ServedTablet {
                        tablet: TabletId(i),
                        table: TableId(table),
                        epoch: Epoch(epoch),
                        size_bytes,
                    });
                }
            }
            for (id, copies) in LIVE_IDS[..live].iter().zip(served) {
                let copies: Vec<ServedTablet> = copies
                    .into_iter()
                    .map(|(tablet, epoch)| {
                        let meta = v.tablets.iter().find(|m| m.tablet.0 == tablet);
                        ServedTablet {
                            tablet: TabletId(tablet),
                            table: meta.map_or(TableId(9), |m| m.table),
                            epoch: Epoch(epoch),
                            size_bytes: meta.map_or(7, |m| m.size_bytes),
                        }
                    })
                    .collect();
                if let Some(s) = v.servers.get_mut(&sid(id)) {
                    s.tablets.extend(copies);
                }
            }
            v.balancer = BalancerOptions {
                enabled,
                max_moves: 100,
            };
            v
        })
}

/// How many live servers report each tablet.
fn holders(view: &ClusterView) -> BTreeMap<TabletId, usize> {
    let mut out = BTreeMap::new();
    for s in view.servers.values() {
        let mine: BTreeSet<TabletId> = s.tablets.iter().map(|t| t.tablet).collect();
        for t in mine {
            *out.entry(t).or_insert(0) += 1;
        }
    }
    out
}

proptest! {
    #[test]
    fn rounds_settle_into_a_safe_and_balanced_placement(mut v in arb_view()) {
        let mut settled = false;
        for _ in 0..8 {
            let actions = plan(&v);
            if actions.is_empty() {
                settled = true;
                break;
            }
            // One Assign or Move per tablet at most, never with an Unload of the same tablet.
            let unloaded: BTreeSet<TabletId> = actions
                .iter()
                .filter(|a| matches!(a, Action::Unload { .. }))
                .map(Action::tablet)
                .collect();
            let mut placed = BTreeSet::new();
            for a in actions.iter().filter(|a| !matches!(a, Action::Unload { .. })) {
                let t = a.tablet();
                prop_assert!(!unloaded.contains(&t) && placed.insert(t), "{:?}", actions);
            }
            let before = holders(&v);
            apply(&mut v, &actions);
            // A round never adds a second copy of a tablet.
            for (t, n) in holders(&v) {
                prop_assert!(n <= before.get(&t).copied().unwrap_or(0).max(1), "{} on {} servers", t, n);
            }
        }
        prop_assert!(settled, "not settled: {:?}", v);
        if v.servers.is_empty() {
            return Ok(());
        }
        if let Err(e) = check_safe(&v) {
            prop_assert!(false, "{}", e);
        }
        if v.balancer.enabled {
            let c = counts(&v);
            let floor = c.values().copied().min().unwrap_or(0);
            for (id, n) in &c {
                let user = v.servers.get(id).map_or(0, |s| {
                    s.tablets.iter().filter(|t| t.table >= TableId::FIRST_USER).count()
                });
                // More than one above the least loaded only with nothing the balancer may move.
                prop_assert!(*n <= floor + 1 || user == 0, "unbalanced {:?}", c);
            }
            let systems = v.tablets.iter().filter(|m| m.table < TableId::FIRST_USER).count();
            if systems == 0 {
                prop_assert!(c.values().max().unwrap_or(&0) - floor <= 1, "unbalanced {:?}", c);
            }
        }
    }

    #[test]
    fn plan_ignores_input_order_and_leaves_in_flight_tablets_alone(
        v in arb_view(),
        in_flight in prop::collection::btree_set(0u64..18, 0..4),
    ) {
        let mut v = v;
        v.in_flight = in_flight.iter().copied().map(TabletId).collect();
        let actions = plan(&v);
        for a in &actions {
            prop_assert!(!v.in_flight.contains(&a.tablet()), "{:?}", a);
        }
        let mut reversed = v.clone();
        reversed.tablets.reverse();
        for s in reversed.servers.values_mut() {
            s.tablets.reverse();
        }
        prop_assert_eq!(&actions, &plan(&reversed));
    }
}

proptest! {
    #[test]
    fn balancer_alone_evens_out_user_tablets_within_the_throttle(
        live in 1usize..=4,
        homes in prop::collection::vec((0usize..4, 0u64..1000), 0..24),
        max_moves in 1usize..5,
    ) {
        let mut v = view(&LIVE_IDS[..live]);
        for (i, (home, size_bytes)) in homes.into_iter().enumerate() {
            let mut m = assigned(2 + i as u64 % 3, i as u64, LIVE_IDS[home % live], 1);
            m.size_bytes = size_bytes;
            place(&mut v, m);
        }
        v.balancer = BalancerOptions { enabled: true, max_moves };
        let rounds = settle(&mut v, 30).map_err(TestCaseError::fail)?;
        for round in &rounds {
            prop_assert!(round.len() <= max_moves, "{:?}", round);
            prop_assert!(round.iter().all(|a| matches!(a, Action::Move { .. })), "{:?}", round);
        }
        if let Err(e) = check_safe(&v) {
            prop_assert!(false, "{}", e);
        }
        let c = counts(&v);
        let (lo, hi) = (c.values().min().copied(), c.values().max().copied());
        prop_assert!(hi.unwrap_or(0) - lo.unwrap_or(0) <= 1, "unbalanced {:?}", c);
    }
}
