//! The agitator's decisions, pure: given the processes, what the agitator holds down, the
//! active master and the lock-service leader, which process a fault of a kind takes (or why
//! it waits); given the user tablets and the live servers, which admin operation to run.
//!
//! The rule that keeps the cluster alive: a fault that takes a process away fires only when
//! every process of that role is up and not held by the agitator, so at most one lock node,
//! one tablet server (killed or paused) and one master are down at a time; a lock node is
//! killed only if a majority of the cell stays up; the paused server is never killed. And a
//! killed process's role stays quiet until the cluster can have healed ([`quiet_after_kill`]).
//! A pause and a lock-leader kill never overlap: a new leader gives every session its TTL plus
//! a grace, so the paused server's session would outlive the pause and the pause would test
//! nothing. A master kill, a tablet kill and a pause wait until the active master reports
//! every tablet served: each hits a cluster that healed from the previous fault (service must
//! come back after any single failure; faults faster than the healing would only measure
//! how long the cluster can be kept down).

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tabula_common::{ServerId, TabletId};

use super::super::control::ProcView;
use super::super::plan::Role;
use super::spec::Kind;

/// What the agitator knows when it picks a target.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Picture<'a> {
    pub(crate) procs: &'a [ProcView],
    /// Names of the processes the agitator holds down: killed and not yet back, paused, or
    /// resumed and not yet settled.
    pub(crate) held: &'a [String],
    /// Names of the tablet servers stopped by a pause now (also in `held`).
    pub(crate) paused: &'a [String],
    /// The active master's id and address, from `/tabula/master`, and how many tablets it
    /// reports not served (asked only for `master`, `tablet` and `pause`).
    pub(crate) active_master: Option<(&'a str, &'a str)>,
    pub(crate) unserved: Option<u32>,
    /// The lock-service leader's node id and address (asked only for `lock`).
    pub(crate) lock_leader: Option<(u64, &'a str)>,
}

/// The process a fault acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) pid: u32,
}

/// What to do for a process fault that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Choice {
    /// SIGKILL this process (master, tablet, lock).
    Kill(Target),
    /// SIGSTOP this tablet server (pause).
    Pause(Target),
    /// Not now, and why.
    Wait(String),
}

/// The role a process fault acts on; `None` for `admin`.
pub(crate) fn role_of(kind: Kind) -> Option<Role> {
    match kind {
        Kind::Master => Some(Role::Master),
        Kind::Tablet | Kind::Pause => Some(Role::Tablet),
        Kind::Lock => Some(Role::Lock),
        Kind::Admin => None,
    }
}

/// The session lengths the cluster runs with, which say how long it takes to heal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leases {
    /// The lock-service session TTL of tablet servers and masters.
    pub(crate) session_ttl: Duration,
    /// What a new lock-service leader adds to every session's TTL before expiring any.
    pub(crate) leader_grace: Duration,
}

/// Margin for elections, master rounds and a loaded machine.
const HEAL_MARGIN: Duration = Duration::from_secs(5);

/// How long after a kill of `role` no other process of that role is taken. A dead tablet
/// server's tablets move, and a standby master takes over, only once the dead process's
/// session expired (its TTL). After a lock-leader kill the new leader gives every session its
/// TTL plus a grace before expiring any: killing leaders faster than that would keep every
/// dead process's session, and so its locks, alive for ever.
pub(crate) fn quiet_after_kill(role: Role, leases: Leases) -> Duration {
    match role {
        Role::Tablet | Role::Master => leases.session_ttl + HEAL_MARGIN,
        Role::Lock => leases.session_ttl + leases.leader_grace + 2 * HEAL_MARGIN,
        // Never a victim (no fault kind acts on it); stateless, it heals at once.
        Role::Gateway => Duration::ZERO,
    }
}

/// The roles a fault of `kind` needs free: its own, and for a pause also the lock cell (see
/// the module doc); none for `admin`.
pub(crate) fn roles_needed(kind: Kind) -> &'static [Role] {
    match kind {
        Kind::Master => &[Role::Master],
        Kind::Tablet => &[Role::Tablet],
        Kind::Lock => &[Role::Lock],
        Kind::Pause => &[Role::Tablet, Role::Lock],
        Kind::Admin => &[],
    }
}

/// Within one look at the cluster (due kinds taken longest-overdue first), the roles kept for
/// a fault that had to wait: a later kind that needs one of them waits too, so a fault that
/// needs two roles free at once (a pause) is not starved by the kinds that keep either busy.
#[derive(Debug, Default)]
pub(crate) struct Reservations {
    kept: Vec<(Role, Kind)>,
}

impl Reservations {
    /// Why `kind` must wait for an earlier kind, if so.
    pub(crate) fn blocks(&self, kind: Kind) -> Option<String> {
        roles_needed(kind).iter().find_map(|role| {
            self.kept
                .iter()
                .find(|(r, k)| r == role && *k != kind)
                .map(|(r, k)| format!("the {} processes are kept for the overdue {k}", r.name()))
        })
    }

    /// `kind` had to wait: keep its roles for it.
    pub(crate) fn keep_for(&mut self, kind: Kind) {
        for role in roles_needed(kind) {
            self.kept.push((*role, kind));
        }
    }
}

/// Why no process of `role` may be taken now, if so (`held`: the processes the agitator
/// holds down).
pub(crate) fn role_busy(procs: &[ProcView], held: &[String], role: Role) -> Option<String> {
    let mut members = procs.iter().filter(|p| p.role == role);
    members.find_map(|p| {
        if held.contains(&p.name) {
            Some(format!("{} is held down by the agitator", p.name))
        } else if p.pid.is_none() {
            Some(format!("{} is down", p.name))
        } else {
            None
        }
    })
}

/// The process fault of `kind` to fire now (not for `admin`).
pub(crate) fn choose(kind: Kind, picture: &Picture<'_>, rng: &mut impl Rng) -> Choice {
    let Some(role) = role_of(kind) else {
        return Choice::Wait("admin is not a process fault".to_owned());
    };
    if let Some(why) = role_busy(picture.procs, picture.held, role) {
        return Choice::Wait(why);
    }
    if kind == Kind::Pause
        && let Some(why) = role_busy(picture.procs, picture.held, Role::Lock)
    {
        return Choice::Wait(format!(
            "{why}: a new lock leader would keep the paused server's session past the pause"
        ));
    }
    if matches!(kind, Kind::Master | Kind::Tablet | Kind::Pause) {
        match (picture.active_master, picture.unserved) {
            (None, _) | (_, None) => {
                return Choice::Wait("no active master answers the cluster status".to_owned());
            }
            (Some(_), Some(n)) if n > 0 => {
                return Choice::Wait(format!("{n} tablet(s) not served yet"));
            }
            _ => {}
        }
    }
    if kind == Kind::Lock
        && let Some(name) = picture.paused.first()
    {
        return Choice::Wait(format!(
            "{name} is paused: a new lock leader would keep its session past the pause"
        ));
    }
    let members: Vec<&ProcView> = picture.procs.iter().filter(|p| p.role == role).collect();
    let target = match kind {
        Kind::Master => {
            let Some((id, addr)) = picture.active_master else {
                return Choice::Wait("no active master is known".to_owned());
            };
            members
                .iter()
                .find(|p| p.id == id)
                .or_else(|| members.iter().find(|p| p.addr == addr))
                .copied()
        }
        Kind::Lock => {
            let Some((id, addr)) = picture.lock_leader else {
                return Choice::Wait("the lock cell has no leader".to_owned());
            };
            // Killing one node must leave a majority of the cell up.
            if members.len() < 3 {
                return Choice::Wait(format!(
                    "a cell of {} lock node(s) has no majority without its leader",
                    members.len()
                ));
            }
            members
                .iter()
                .find(|p| p.id == id.to_string())
                .or_else(|| members.iter().find(|p| p.addr == addr))
                .copied()
        }
        Kind::Tablet | Kind::Pause => {
            if members.is_empty() {
                None
            } else {
                Some(members[rng.random_range(0..members.len())])
            }
        }
        Kind::Admin => None,
    };
    let Some(p) = target else {
        return Choice::Wait(format!("no running {} process to act on", role.name()));
    };
    let Some(pid) = p.pid else {
        return Choice::Wait(format!("{} is down", p.name));
    };
    let target = Target {
        name: p.name.clone(),
        pid,
    };
    if kind == Kind::Pause {
        Choice::Pause(target)
    } else {
        Choice::Kill(target)
    }
}

/// A user tablet as the admin fault sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TabletBrief {
    pub(crate) table: String,
    pub(crate) tablet: TabletId,
    pub(crate) start_row: Bytes,
    /// It has a right neighbour in its table (it does not end the table).
    pub(crate) has_right: bool,
    pub(crate) server: Option<ServerId>,
}

/// One admin operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AdminOp {
    /// Split the tablet holding `row` at its middle row.
    Split {
        table: String,
        tablet: TabletId,
        row: Bytes,
    },
    /// Move `tablet` to server `to`.
    Move {
        table: String,
        tablet: TabletId,
        to: ServerId,
    },
    /// Merge the tablet holding `row` with its right neighbour.
    Merge {
        table: String,
        tablet: TabletId,
        row: Bytes,
    },
    /// Flush every memtable of `table`.
    Flush { table: String },
    /// Compact every tablet of `table`.
    Compact { table: String, major: bool },
}

impl AdminOp {
    /// Its `action` in the fault log.
    pub(crate) fn action(&self) -> &'static str {
        match self {
            AdminOp::Split { .. } => "split",
            AdminOp::Move { .. } => "move",
            AdminOp::Merge { .. } => "merge",
            AdminOp::Flush { .. } => "flush",
            AdminOp::Compact { major: false, .. } => "compact",
            AdminOp::Compact { major: true, .. } => "major-compact",
        }
    }

    /// Its `target` in the fault log: `table/tablet`, or the table.
    pub(crate) fn target(&self) -> String {
        match self {
            AdminOp::Split { table, tablet, .. }
            | AdminOp::Move { table, tablet, .. }
            | AdminOp::Merge { table, tablet, .. } => format!("{table}/{tablet}"),
            AdminOp::Flush { table } | AdminOp::Compact { table, .. } => table.clone(),
        }
    }
}

/// A random admin operation on a random user tablet; `None` without one.
pub(crate) fn choose_admin(
    tablets: &[TabletBrief],
    servers: &[ServerId],
    rng: &mut impl Rng,
) -> Option<AdminOp> {
    if tablets.is_empty() {
        return None;
    }
    let t = &tablets[rng.random_range(0..tablets.len())];
    let others: Vec<&ServerId> = servers
        .iter()
        .filter(|s| Some(*s) != t.server.as_ref())
        .collect();
    let table = t.table.clone();
    let mut ops = vec![
        AdminOp::Split {
            table: table.clone(),
            tablet: t.tablet,
            row: t.start_row.clone(),
        },
        AdminOp::Flush {
            table: table.clone(),
        },
        AdminOp::Compact {
            table: table.clone(),
            major: rng.random_bool(0.5),
        },
    ];
    if !others.is_empty() {
        ops.push(AdminOp::Move {
            table: table.clone(),
            tablet: t.tablet,
            to: others[rng.random_range(0..others.len())].clone(),
        });
    }
    if t.has_right {
        ops.push(AdminOp::Merge {
            table,
            tablet: t.tablet,
            row: t.start_row.clone(),
        });
    }
    let i = rng.random_range(0..ops.len());
    Some(ops.swap_remove(i))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn view(name: &str, role: Role, id: &str, pid: Option<u32>) -> ProcView {
        ProcView {
            name: name.to_owned(),
            role,
            id: id.to_owned(),
            addr: format!("127.0.0.1:{}", 7000 + pid.unwrap_or(0)),
            pid,
            start: 0,
        }
    }

    /// 3 lock nodes, 3 tablet servers, 2 masters, all up.
    fn cluster() -> Vec<ProcView> {
        vec![
            view("lock-1", Role::Lock, "1", Some(11)),
            view("lock-2", Role::Lock, "2", Some(12)),
            view("lock-3", Role::Lock, "3", Some(13)),
            view("ts-1", Role::Tablet, "ts-1-5-0", Some(21)),
            view("ts-2", Role::Tablet, "ts-2-5-0", Some(22)),
            view("ts-3", Role::Tablet, "ts-3-5-0", Some(23)),
            view("m-1", Role::Master, "m-1", Some(31)),
            view("m-2", Role::Master, "m-2", Some(32)),
        ]
    }

    fn picture<'a>(procs: &'a [ProcView], held: &'a [String]) -> Picture<'a> {
        Picture {
            procs,
            held,
            paused: &[],
            active_master: Some(("m-2", "127.0.0.1:7032")),
            unserved: Some(0),
            lock_leader: Some((3, "127.0.0.1:7013")),
        }
    }

    fn kill(name: &str, pid: u32) -> Choice {
        Choice::Kill(Target {
            name: name.to_owned(),
            pid,
        })
    }

    #[test]
    fn the_master_and_lock_faults_take_the_active_master_and_the_leader() {
        let procs = cluster();
        let mut rng = StdRng::seed_from_u64(1);
        let p = picture(&procs, &[]);
        assert_eq!(choose(Kind::Master, &p, &mut rng), kill("m-2", 32));
        assert_eq!(choose(Kind::Lock, &p, &mut rng), kill("lock-3", 13));
        // Matched by address when the id is unknown.
        let by_addr = Picture {
            active_master: Some(("elsewhere", "127.0.0.1:7031")),
            lock_leader: Some((99, "127.0.0.1:7011")),
            ..p
        };
        assert_eq!(choose(Kind::Master, &by_addr, &mut rng), kill("m-1", 31));
        assert_eq!(choose(Kind::Lock, &by_addr, &mut rng), kill("lock-1", 11));
        let unknown = Picture {
            active_master: None,
            lock_leader: None,
            ..p
        };
        assert!(matches!(
            choose(Kind::Master, &unknown, &mut rng),
            Choice::Wait(_)
        ));
        assert!(matches!(
            choose(Kind::Lock, &unknown, &mut rng),
            Choice::Wait(_)
        ));
    }

    #[test]
    fn tablet_faults_spread_over_every_server() {
        let procs = cluster();
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            match choose(Kind::Tablet, &picture(&procs, &[]), &mut rng) {
                Choice::Kill(t) => seen.insert(t.name),
                other => panic!("{other:?}"),
            };
            match choose(Kind::Pause, &picture(&procs, &[]), &mut rng) {
                Choice::Pause(t) => assert!(t.name.starts_with("ts-")),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
    }

    #[test]
    fn never_two_processes_of_a_role_down_and_never_the_paused_server_killed() {
        let mut rng = StdRng::seed_from_u64(3);
        // Every combination of one process held or down: nothing more of its role is taken,
        // other roles still are.
        for taken in 0..cluster().len() {
            for how in ["held", "down"] {
                let mut procs = cluster();
                let held = if how == "held" {
                    vec![procs[taken].name.clone()]
                } else {
                    procs[taken].pid = None;
                    Vec::new()
                };
                let role = procs[taken].role;
                for kind in [Kind::Master, Kind::Tablet, Kind::Lock, Kind::Pause] {
                    for _ in 0..20 {
                        let choice = choose(kind, &picture(&procs, &held), &mut rng);
                        // A lock node down also holds the pauses back.
                        let blocked = role_of(kind) == Some(role)
                            || (kind == Kind::Pause && role == Role::Lock);
                        if blocked {
                            assert!(
                                matches!(choice, Choice::Wait(_)),
                                "{kind} with {} {how}: {choice:?}",
                                procs[taken].name
                            );
                        } else {
                            assert!(
                                !matches!(choice, Choice::Wait(_)),
                                "{kind} with {} {how}: {choice:?}",
                                procs[taken].name
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn process_faults_but_the_lock_kill_wait_for_every_tablet_served() {
        let procs = cluster();
        let mut rng = StdRng::seed_from_u64(8);
        for unserved in [None, Some(2)] {
            let p = Picture {
                unserved,
                ..picture(&procs, &[])
            };
            for kind in [Kind::Master, Kind::Tablet, Kind::Pause] {
                assert!(
                    matches!(choose(kind, &p, &mut rng), Choice::Wait(_)),
                    "{kind} with {unserved:?} tablets unserved"
                );
            }
            assert_eq!(choose(Kind::Lock, &p, &mut rng), kill("lock-3", 13));
        }
        let p = Picture {
            active_master: None,
            ..picture(&procs, &[])
        };
        assert!(matches!(
            choose(Kind::Tablet, &p, &mut rng),
            Choice::Wait(why) if why.contains("no active master")
        ));
    }

    #[test]
    fn a_pause_and_a_lock_leader_kill_never_overlap() {
        let procs = cluster();
        let mut rng = StdRng::seed_from_u64(4);
        let held = ["ts-2".to_owned()];
        let paused = Picture {
            paused: &held,
            ..picture(&procs, &held)
        };
        assert!(matches!(
            choose(Kind::Lock, &paused, &mut rng),
            Choice::Wait(why) if why.contains("ts-2 is paused")
        ));
        assert_eq!(choose(Kind::Master, &paused, &mut rng), kill("m-2", 32));
        // Killed, not paused: the lock leader may go.
        assert_eq!(
            choose(Kind::Lock, &picture(&procs, &held), &mut rng),
            kill("lock-3", 13)
        );
        let held = ["lock-1".to_owned()];
        assert!(matches!(
            choose(Kind::Pause, &picture(&procs, &held), &mut rng),
            Choice::Wait(why) if why.contains("lock-1")
        ));
        assert!(matches!(
            choose(Kind::Tablet, &picture(&procs, &held), &mut rng),
            Choice::Kill(_)
        ));
    }

    #[test]
    fn a_waiting_pause_keeps_the_tablet_servers_and_the_lock_cell() {
        let mut kept = Reservations::default();
        for kind in Kind::ALL {
            assert_eq!(kept.blocks(kind), None);
        }
        kept.keep_for(Kind::Pause);
        assert!(kept.blocks(Kind::Tablet).unwrap().contains("overdue pause"));
        assert!(kept.blocks(Kind::Lock).unwrap().contains("lock processes"));
        assert_eq!(kept.blocks(Kind::Master), None);
        assert_eq!(kept.blocks(Kind::Admin), None);
        let mut kept = Reservations::default();
        kept.keep_for(Kind::Tablet);
        assert!(kept.blocks(Kind::Pause).is_some());
        assert_eq!(kept.blocks(Kind::Lock), None);
        assert_eq!(
            kept.blocks(Kind::Tablet),
            None,
            "a kind is not kept from itself"
        );
    }

    #[test]
    fn a_small_lock_cell_keeps_its_leader() {
        let procs = vec![
            view("lock-1", Role::Lock, "1", Some(11)),
            view("ts-1", Role::Tablet, "ts-1-5-0", Some(21)),
            view("m-1", Role::Master, "m-1", Some(31)),
        ];
        let p = Picture {
            procs: &procs,
            held: &[],
            paused: &[],
            active_master: Some(("m-1", "")),
            unserved: Some(0),
            lock_leader: Some((1, "")),
        };
        let mut rng = StdRng::seed_from_u64(3);
        assert!(matches!(choose(Kind::Lock, &p, &mut rng), Choice::Wait(_)));
        assert_eq!(choose(Kind::Master, &p, &mut rng), kill("m-1", 31));
        assert_eq!(choose(Kind::Tablet, &p, &mut rng), kill("ts-1", 21));
    }

    #[test]
    fn a_lock_leader_kill_quiets_its_role_past_ttl_plus_grace() {
        let leases = Leases {
            session_ttl: Duration::from_secs(10),
            leader_grace: Duration::from_secs(5),
        };
        assert_eq!(
            quiet_after_kill(Role::Tablet, leases),
            Duration::from_secs(15)
        );
        assert_eq!(
            quiet_after_kill(Role::Master, leases),
            Duration::from_secs(15)
        );
        assert_eq!(
            quiet_after_kill(Role::Lock, leases),
            Duration::from_secs(25)
        );
    }

    fn brief(table: &str, tablet: u64, start: &'static [u8], has_right: bool) -> TabletBrief {
        TabletBrief {
            table: table.to_owned(),
            tablet: TabletId(tablet),
            start_row: Bytes::from_static(start),
            has_right,
            server: Some(ServerId("a".to_owned())),
        }
    }

    #[test]
    fn admin_ops_cover_every_action_and_respect_their_preconditions() {
        let mut rng = StdRng::seed_from_u64(11);
        assert_eq!(choose_admin(&[], &[], &mut rng), None);
        let tablets = [brief("t", 5, b"", true), brief("t", 6, b"m", false)];
        let servers = [ServerId("a".to_owned()), ServerId("b".to_owned())];
        let mut actions = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let op = choose_admin(&tablets, &servers, &mut rng).unwrap();
            actions.insert(op.action());
            match &op {
                AdminOp::Merge { tablet, row, .. } => {
                    assert_eq!(*tablet, TabletId(5), "merged the last tablet");
                    assert_eq!(&row[..], b"");
                }
                AdminOp::Move { to, .. } => assert_eq!(to.0, "b", "moved to its own server"),
                AdminOp::Split { tablet, row, .. } => {
                    let want: &[u8] = if *tablet == TabletId(5) { b"" } else { b"m" };
                    assert_eq!(&row[..], want);
                }
                AdminOp::Flush { table } | AdminOp::Compact { table, .. } => {
                    assert_eq!(table, "t");
                }
            }
        }
        assert_eq!(
            actions.into_iter().collect::<Vec<_>>(),
            [
                "compact",
                "flush",
                "major-compact",
                "merge",
                "move",
                "split"
            ]
        );
        // One server: nowhere to move to.
        for _ in 0..100 {
            let op = choose_admin(&tablets, &servers[..1], &mut rng).unwrap();
            assert_ne!(op.action(), "move");
        }
        assert_eq!(
            AdminOp::Merge {
                table: "t".into(),
                tablet: TabletId(5),
                row: Bytes::new()
            }
            .target(),
            "t/0000000000000005"
        );
    }
}
