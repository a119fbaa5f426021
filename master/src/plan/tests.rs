//! Unit tests of [`plan`]: hand-made views, exact actions.

use tabula_common::{Epoch, TableId, TabletId};

use super::plan;
use super::testkit::{
    apply, assigned, check_safe, counts, place, serve, settle, sid, unassigned, view,
};
use super::types::{Action, BalancerOptions, TabletState};

fn assign(tablet: u64, table: u64, server: &str, epoch: u64) -> Action {
    Action::Assign {
        tablet: TabletId(tablet),
        table: TableId(table),
        server: sid(server),
        epoch: Epoch(epoch),
    }
}

fn unload(tablet: u64, server: &str, epoch: u64) -> Action {
    Action::Unload {
        tablet: TabletId(tablet),
        server: sid(server),
        epoch: Epoch(epoch),
    }
}

fn off() -> BalancerOptions {
    BalancerOptions {
        enabled: false,
        max_moves: 0,
    }
}

#[test]
fn assigns_root_then_metadata_then_user_tablets() {
    let mut v = view(&["a"]);
    v.tablets = vec![
        unassigned(7, 10),
        unassigned(2, 11),
        unassigned(1, 3),
        unassigned(0, 1),
        unassigned(1, 2),
    ];
    let actions = plan(&v);
    let order: Vec<(u64, u64)> = actions
        .iter()
        .map(|a| match a {
            Action::Assign { tablet, table, .. } => (table.0, tablet.0),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(order, vec![(0, 1), (1, 2), (1, 3), (2, 11), (7, 10)]);
}

#[test]
fn user_tablets_are_assigned_by_table_then_start_row() {
    let mut v = view(&["a"]);
    let mut late = unassigned(2, 1);
    late.start_row = "m".into();
    let mut early = unassigned(2, 2);
    early.start_row = "".into();
    let mut other_table = unassigned(3, 0);
    other_table.start_row = "".into();
    v.tablets = vec![other_table, late, early];
    assert_eq!(
        plan(&v),
        vec![
            assign(2, 2, "a", 1),
            assign(1, 2, "a", 1),
            assign(0, 3, "a", 1)
        ]
    );
}

#[test]
fn assigns_to_least_loaded_counting_this_rounds_assignments() {
    let mut v = view(&["a", "b", "c"]);
    place(&mut v, assigned(2, 100, "a", 1));
    place(&mut v, assigned(2, 101, "a", 1));
    place(&mut v, assigned(2, 102, "b", 1));
    v.tablets.extend((1..=4).map(|t| unassigned(3, t)));
    // c has 0, b 1, a 2: c, then b/c tie at 1 -> b (no bytes, smaller id), then c, then a.
    assert_eq!(
        plan(&v),
        vec![
            assign(1, 3, "c", 1),
            assign(2, 3, "b", 1),
            assign(3, 3, "c", 1),
            assign(4, 3, "a", 1),
        ]
    );
}

#[test]
fn least_loaded_ties_break_on_bytes_then_server_id() {
    let mut v = view(&["a", "b", "c"]);
    let mut big = assigned(2, 100, "a", 1);
    big.size_bytes = 1000;
    place(&mut v, big);
    let mut small = assigned(2, 101, "b", 1);
    small.size_bytes = 10;
    place(&mut v, small);
    let mut also_small = assigned(2, 102, "c", 1);
    also_small.size_bytes = 10;
    place(&mut v, also_small);
    v.tablets.push(unassigned(3, 1));
    // All hold one tablet; b and c hold fewer bytes than a; b < c.
    assert_eq!(plan(&v), vec![assign(1, 3, "b", 1)]);
}

#[test]
fn dead_servers_tablets_are_reassigned_with_the_next_epoch() {
    let mut v = view(&["a", "b"]);
    place(&mut v, assigned(0, 1, "dead", 4));
    place(&mut v, assigned(2, 10, "dead", 7));
    let mut moving = assigned(2, 11, "dead", 2);
    moving.state = TabletState::Moving;
    place(&mut v, moving);
    place(&mut v, assigned(2, 12, "a", 3));
    assert_eq!(
        plan(&v),
        // b is empty: the root tablet; then a and b hold one each, a has the smaller id.
        vec![
            assign(1, 0, "b", 5),
            assign(10, 2, "a", 8),
            assign(11, 2, "b", 3)
        ]
    );
}

#[test]
fn assigned_tablet_its_live_server_does_not_serve_is_reassigned() {
    let mut v = view(&["a", "b"]);
    v.tablets.push(assigned(2, 10, "a", 3));
    place(&mut v, assigned(2, 11, "b", 1));
    assert_eq!(plan(&v), vec![assign(10, 2, "a", 4)]);
}

#[test]
fn unknown_served_tablet_is_unloaded() {
    let mut v = view(&["a"]);
    serve(&mut v, "a", 2, 99, 3);
    assert_eq!(plan(&v), vec![unload(99, "a", 3)]);
}

#[test]
fn stale_epoch_copy_is_unloaded_and_the_tablet_reassigned_next_round() {
    let mut v = view(&["a", "b"]);
    v.tablets.push(assigned(2, 10, "a", 5));
    serve(&mut v, "a", 2, 10, 4);
    assert_eq!(plan(&v), vec![unload(10, "a", 4)]);
    let actions = plan(&v);
    apply(&mut v, &actions);
    assert_eq!(plan(&v), vec![assign(10, 2, "a", 6)]);
}

#[test]
fn copy_at_a_newer_epoch_than_metadata_is_unloaded() {
    let mut v = view(&["a"]);
    place(&mut v, assigned(2, 10, "a", 5));
    serve(&mut v, "a", 2, 10, 6);
    assert_eq!(plan(&v), vec![unload(10, "a", 6)]);
}

#[test]
fn copy_on_the_wrong_server_is_unloaded_and_the_right_one_kept() {
    let mut v = view(&["a", "b"]);
    place(&mut v, assigned(2, 10, "a", 5));
    serve(&mut v, "b", 2, 10, 5);
    assert_eq!(plan(&v), vec![unload(10, "b", 5)]);
}

#[test]
fn deleting_tablet_is_unloaded_and_never_assigned() {
    let mut v = view(&["a"]);
    let mut gone = assigned(2, 10, "a", 5);
    place(&mut v, gone.clone());
    v.tablets[0].state = TabletState::Deleting;
    gone.tablet = TabletId(11);
    gone.state = TabletState::Deleting;
    gone.server = None;
    v.tablets.push(gone);
    assert_eq!(plan(&v), vec![unload(10, "a", 5)]);
    let actions = plan(&v);
    apply(&mut v, &actions);
    assert_eq!(plan(&v), Vec::new());
}

#[test]
fn unassigned_tablet_still_served_is_unloaded_first() {
    let mut v = view(&["a"]);
    v.tablets.push(unassigned(2, 10));
    serve(&mut v, "a", 2, 10, 0);
    assert_eq!(plan(&v), vec![unload(10, "a", 0)]);
    let actions = plan(&v);
    apply(&mut v, &actions);
    assert_eq!(plan(&v), vec![assign(10, 2, "a", 1)]);
}

#[test]
fn correctly_served_tablets_are_left_alone() {
    let mut v = view(&["a", "b"]);
    place(&mut v, assigned(0, 1, "a", 3));
    place(&mut v, assigned(1, 2, "b", 9));
    place(&mut v, assigned(2, 10, "a", 2));
    if let Some(a) = v.servers.get_mut(&sid("a")) {
        let again = a.tablets[1].clone();
        a.tablets.push(again); // reported twice: still right
    }
    assert_eq!(plan(&v), Vec::new());
}

fn end_move(tablet: u64, server: &str, epoch: u64) -> Action {
    Action::EndMove {
        tablet: TabletId(tablet),
        server: sid(server),
        epoch: Epoch(epoch),
    }
}

#[test]
fn an_unfinished_move_the_balancer_does_not_take_up_is_ended_where_the_tablet_is() {
    // Balanced (one tablet each), balancer on and off: tablet 10, left `Moving` on a, which
    // still serves it at METADATA's epoch, is recorded `Assigned` on a again, and nothing
    // else happens to it.
    for balancer in [BalancerOptions::default(), off()] {
        let mut v = view(&["a", "b"]);
        v.balancer = balancer;
        let mut moving = assigned(2, 10, "a", 2);
        moving.state = TabletState::Moving;
        place(&mut v, moving);
        place(&mut v, assigned(2, 11, "b", 1));
        assert_eq!(plan(&v), vec![end_move(10, "a", 2)]);
        let actions = plan(&v);
        apply(&mut v, &actions);
        check_safe(&v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan(&v), Vec::new());
    }
}

#[test]
fn an_unfinished_move_is_not_ended_while_in_flight_or_not_served_as_recorded() {
    let mut v = view(&["a", "b"]);
    v.balancer = off();
    let mut moving = assigned(2, 10, "a", 2);
    moving.state = TabletState::Moving;
    place(&mut v, moving.clone());
    // In flight: left alone.
    v.in_flight.insert(TabletId(10));
    assert_eq!(plan(&v), Vec::new());
    v.in_flight.clear();
    // Served at another epoch than METADATA's: that copy is unloaded, then the tablet
    // assigned; never ended at the wrong epoch.
    let mut v = view(&["a", "b"]);
    v.balancer = off();
    v.tablets.push(moving);
    serve(&mut v, "a", 2, 10, 1);
    assert_eq!(plan(&v), vec![unload(10, "a", 1)]);
}

#[test]
fn unloads_lighten_a_server_for_this_rounds_assignments() {
    let mut v = view(&["a", "b"]);
    place(&mut v, assigned(2, 10, "b", 1));
    serve(&mut v, "a", 2, 98, 1);
    serve(&mut v, "a", 2, 99, 1);
    v.tablets.push(unassigned(3, 1));
    // a keeps nothing after its unloads; b keeps one tablet.
    assert_eq!(
        plan(&v),
        vec![unload(98, "a", 1), unload(99, "a", 1), assign(1, 3, "a", 1)]
    );
}

#[test]
fn in_flight_tablets_are_untouched() {
    let mut v = view(&["a"]);
    v.tablets.push(unassigned(2, 10));
    v.tablets.push(assigned(2, 11, "dead", 1));
    serve(&mut v, "a", 2, 99, 1);
    place(&mut v, assigned(2, 12, "a", 1));
    serve(&mut v, "a", 2, 12, 0);
    v.in_flight = [10, 11, 12, 99].map(TabletId).into_iter().collect();
    assert_eq!(plan(&v), Vec::new());
}

#[test]
fn in_flight_assignment_counts_toward_its_targets_load() {
    let mut v = view(&["a", "b"]);
    place(&mut v, assigned(2, 10, "b", 1));
    v.tablets.push(assigned(2, 11, "a", 1));
    v.tablets.push(assigned(2, 12, "a", 1));
    v.in_flight = [11, 12].map(TabletId).into_iter().collect();
    v.tablets.push(unassigned(3, 1));
    // a serves nothing yet but is about to hold two tablets.
    assert_eq!(plan(&v), vec![assign(1, 3, "b", 1)]);
}

#[test]
fn no_live_servers_means_no_actions() {
    let mut v = view(&[]);
    v.tablets.push(unassigned(0, 1));
    v.tablets.push(assigned(2, 10, "dead", 1));
    assert_eq!(plan(&v), Vec::new());
}

/// 10 user tablets on `a`, none on `b`.
fn lopsided(max_moves: usize) -> super::types::ClusterView {
    let mut v = view(&["a", "b"]);
    for t in 0..10 {
        let mut m = assigned(2, 10 + t, "a", 1);
        m.size_bytes = 100 * (t + 1);
        place(&mut v, m);
    }
    v.balancer = BalancerOptions {
        enabled: true,
        max_moves,
    };
    v
}

#[test]
fn balancer_evens_out_ten_tablets_within_the_throttle() {
    let mut v = lopsided(2);
    let rounds = settle(&mut v, 10).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rounds.len(), 3, "2 + 2 + 1 moves: {rounds:?}");
    for round in &rounds {
        assert!(round.len() <= 2);
        for a in round {
            let Action::Move {
                from, to, epoch, ..
            } = a
            else {
                panic!("unexpected {a:?}");
            };
            assert_eq!((from, to, *epoch), (&sid("a"), &sid("b"), Epoch(2)));
        }
    }
    assert_eq!(counts(&v).values().copied().collect::<Vec<_>>(), vec![5, 5]);
    check_safe(&v).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn balancer_counts_moves_already_in_flight() {
    let mut v = lopsided(3);
    v.moves_in_flight = 2;
    assert_eq!(plan(&v).len(), 1);
    v.moves_in_flight = 3;
    assert_eq!(plan(&v), Vec::new());
    v.moves_in_flight = 7;
    assert_eq!(plan(&v), Vec::new());
}

#[test]
fn balancer_moves_the_tablet_that_narrows_the_byte_gap_most() {
    let mut v = view(&["a", "b"]);
    for (t, size) in [(10, 50), (11, 400), (12, 1000)] {
        let mut m = assigned(2, t, "a", 1);
        m.size_bytes = size;
        place(&mut v, m);
    }
    // Gap 1450: moving 400 leaves |1450 - 800| = 650, 1000 leaves 550, 50 leaves 1350.
    assert_eq!(
        plan(&v),
        vec![Action::Move {
            tablet: TabletId(12),
            table: TableId(2),
            from: sid("a"),
            to: sid("b"),
            epoch: Epoch(2),
        }]
    );
}

#[test]
fn balancer_disabled_moves_nothing() {
    let mut v = lopsided(2);
    v.balancer = off();
    assert_eq!(plan(&v), Vec::new());
}

#[test]
fn balancer_waits_while_unloads_or_assignments_are_pending() {
    let mut v = lopsided(2);
    v.tablets.push(unassigned(3, 1));
    assert_eq!(plan(&v), vec![assign(1, 3, "b", 1)]);
    let mut v = lopsided(2);
    serve(&mut v, "b", 2, 99, 1);
    assert_eq!(plan(&v), vec![unload(99, "b", 1)]);
}

#[test]
fn balancer_never_moves_system_tablets() {
    let mut v = view(&["a", "b"]);
    place(&mut v, assigned(0, 1, "a", 1));
    for t in 2..6 {
        place(&mut v, assigned(1, t, "a", 1));
    }
    assert_eq!(plan(&v), Vec::new());
    // With user tablets on the busy server, only those move.
    place(&mut v, assigned(2, 10, "a", 1));
    place(&mut v, assigned(2, 11, "a", 1));
    let rounds = settle(&mut v, 10).unwrap_or_else(|e| panic!("{e}"));
    let moved: Vec<TabletId> = rounds
        .iter()
        .flatten()
        .map(|a| match a {
            Action::Move { tablet, .. } => *tablet,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(moved, vec![TabletId(10), TabletId(11)]);
}

#[test]
fn balancer_drains_the_next_server_when_the_busiest_holds_only_system_tablets() {
    let mut v = view(&["a", "b", "c"]);
    for t in 1..5 {
        place(&mut v, assigned(1, t, "a", 1));
    }
    for t in 10..13 {
        place(&mut v, assigned(2, t, "b", 1));
    }
    let actions = plan(&v);
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert!(
        matches!(&actions[0], Action::Move { from, to, .. } if *from == sid("b") && *to == sid("c"))
    );
}

#[test]
fn a_balanced_cluster_is_a_fixpoint() {
    let mut v = view(&["a", "b", "c"]);
    v.tablets.push(unassigned(0, 1));
    v.tablets.push(unassigned(1, 2));
    v.tablets.extend((10..20).map(|t| unassigned(2, t)));
    v.balancer.max_moves = 100;
    let rounds = settle(&mut v, 10).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rounds.len(),
        1,
        "all assigned in one round, nothing to balance"
    );
    check_safe(&v).unwrap_or_else(|e| panic!("{e}"));
    let c: Vec<usize> = counts(&v).values().copied().collect();
    assert_eq!(c, vec![4, 4, 4]);
    assert_eq!(plan(&v), Vec::new());
}

#[test]
fn the_same_view_in_another_order_gives_the_same_plan() {
    let mut v = view(&["a", "b", "c"]);
    place(&mut v, assigned(2, 10, "dead", 1));
    place(&mut v, assigned(2, 11, "a", 1));
    serve(&mut v, "a", 2, 12, 1);
    serve(&mut v, "a", 2, 13, 1);
    v.tablets.extend((20..26).map(|t| unassigned(3, t)));
    let mut reversed = v.clone();
    reversed.tablets.reverse();
    for s in reversed.servers.values_mut() {
        s.tablets.reverse();
    }
    assert_eq!(plan(&v), plan(&reversed));
}

#[test]
fn balancer_finishes_a_move_a_dead_master_left_unfinished() {
    let mut v = view(&["a", "b"]);
    for (t, size, state) in [
        (10, 100, TabletState::Assigned),
        (11, 200, TabletState::Moving),
        (12, 100, TabletState::Assigned),
    ] {
        let mut m = assigned(2, t, "a", 1);
        m.size_bytes = size;
        m.state = state;
        place(&mut v, m);
    }
    // Gap 400: moving 11 (200 bytes) closes it; 10 or 12 would leave 200.
    assert_eq!(
        plan(&v),
        vec![Action::Move {
            tablet: TabletId(11),
            table: TableId(2),
            from: sid("a"),
            to: sid("b"),
            epoch: Epoch(2),
        }]
    );
    let actions = plan(&v);
    apply(&mut v, &actions);
    check_safe(&v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan(&v), Vec::new());
}

/// The layout of `tabula move` in `cli_commands` after an operator moved tablet 10 from `c`
/// to `b` at epoch 2: root on `a`, METADATA and user tablets 10 and 11 on `b`, 12 on `c`.
/// Counts 1 / 3 / 1 (the move made it uneven); of `b`'s user tablets, 10 and 11 narrow the
/// byte gap equally and the smaller id, 10, is the balancer's pick.
fn after_an_operators_move() -> super::types::ClusterView {
    let mut v = view(&["a", "b", "c"]);
    place(&mut v, assigned(0, 1, "a", 1));
    place(&mut v, assigned(1, 2, "b", 1));
    for (t, server, epoch, size) in [(10, "b", 2, 300), (11, "b", 1, 10), (12, "c", 1, 0)] {
        let mut m = assigned(2, t, server, epoch);
        m.size_bytes = size;
        place(&mut v, m);
    }
    v
}

#[test]
fn balancer_leaves_a_pinned_tablet_where_an_operator_moved_it() {
    let v = after_an_operators_move();
    // Unpinned, the balancer undoes the operator's move in the next round.
    assert!(
        matches!(&plan(&v)[..], [Action::Move { tablet, from, .. }]
            if *tablet == TabletId(10) && *from == sid("b")),
        "{:?}",
        plan(&v)
    );
    // Pinned, it balances with another tablet of the busy server.
    let mut v = after_an_operators_move();
    v.pinned.insert(TabletId(10));
    let rounds = settle(&mut v, 10).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rounds.iter().flatten().all(|a| a.tablet() != TabletId(10)),
        "{rounds:?}"
    );
    check_safe(&v).unwrap_or_else(|e| panic!("{e}"));
    let ten = v.tablets.iter().find(|m| m.tablet == TabletId(10));
    assert_eq!(
        ten.map(|m| (m.server.clone(), m.epoch)),
        Some((Some(sid("b")), Epoch(2)))
    );
    assert_eq!(counts(&v).values().copied().collect::<Vec<_>>(), [2, 2, 1]);
    // When the pinned tablet is the only movable one, the servers stay uneven.
    let mut v = view(&["a", "b"]);
    place(&mut v, assigned(0, 1, "a", 1));
    place(&mut v, assigned(1, 2, "a", 1));
    place(&mut v, assigned(2, 10, "a", 2));
    v.pinned.insert(TabletId(10));
    assert_eq!(plan(&v), Vec::new());
}

#[test]
fn pinned_tablets_are_still_reassigned_and_their_stray_copies_unloaded() {
    let mut v = view(&["a", "b"]);
    place(&mut v, assigned(2, 10, "dead", 2));
    serve(&mut v, "a", 2, 11, 1);
    place(&mut v, assigned(2, 11, "b", 2));
    v.pinned.extend([TabletId(10), TabletId(11)]);
    assert_eq!(plan(&v), vec![unload(11, "a", 1), assign(10, 2, "a", 3)]);
}
