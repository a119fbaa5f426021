//! Placement: a pure function from what the master knows ([`ClusterView`]) to what it should
//! do next ([`Action`]s). No I/O, no clock, no randomness: the async loop in `node` gathers the
//! view (live servers from the lock service, what each serves from `ListTablets`, records from
//! root and METADATA), calls [`plan`], executes the actions, and plans again. Tests drive it
//! with hand-made views.
//!
//! Rules, in priority order:
//! 1. A live server serving a tablet it should not is told to unload it: a tablet METADATA
//!    does not know, records as `Deleting` or `Unassigned`, places on another server, or at
//!    any epoch other than METADATA's. Only the copy on METADATA's server at METADATA's epoch
//!    is right.
//! 2. Tablets that need a server (not `Deleting`, and no live server serves them: new,
//!    unassigned, their server gone, or their load on a live server lost) are assigned at
//!    their epoch + 1: the root tablet first, then METADATA tablets, then user tablets (by
//!    table, then start row); each to the live server with the fewest tablets (ties: fewest
//!    bytes, then smallest id), counting this round's assignments and not counting this
//!    round's unloads. A tablet still served somewhere wrongly is unloaded this round and
//!    assigned the next, so no assignment is planned while another copy is served.
//! 3. If rules 1 and 2 planned nothing and balancing is on: moves from the most to the least
//!    loaded server while their tablet counts differ by more than one, picking the tablet that
//!    narrows the byte gap most, at most `max_moves` at a time (counting `moves_in_flight`);
//!    system tablets (root, METADATA) are not moved by the balancer, nor are `pinned` ones (an
//!    operator's `MoveTablet` stands). A `Moving` tablet not in flight (a move a dead master
//!    left unfinished) still serves on its source and is movable.
//! 4. In every round, a `Moving` tablet not in flight that the balancer does not move and
//!    whose recorded server still serves it at METADATA's epoch is recorded `Assigned` there
//!    again (`EndMove`): the unfinished move is abandoned rather than left `Moving` for good.
//!
//! Tablets in `in_flight` are left alone by every rule; an in-flight tablet METADATA already
//! places on a live server counts toward that server's load.
//!
//! Reading order: `types` (the view and the actions), `round` ([`plan`]), then one file per
//! rule: `unload`, `assign`, `balance`, `end_move`; `index` and `load` are the lookups they share.

mod assign;
mod balance;
mod end_move;
mod index;
mod load;
mod round;
mod types;
mod unload;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

pub use round::plan;
pub use types::{
    Action, BalancerOptions, ClusterView, ServedTablet, ServerView, TabletMeta, TabletState,
};
