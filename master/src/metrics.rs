//! The master's metrics and health over plain HTTP (`--metrics ADDR`): `GET /metrics` in the
//! Prometheus text format — counters kept across leaderships (`MasterMetrics`: rounds, actions
//! by kind and outcome, splits recorded, leaderships won) and gauges read at scrape time from
//! the latest round (active or not, master epoch, servers, tables, tablets by state, tablets
//! not serving) — and `GET /healthz`: `200 active epoch N` while this master leads safely,
//! `200 standby` while it waits for the lock, `503` with the reason when its session is not
//! safe. Anything else is `404`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use tabula_client::meta::TabletState;
use tabula_common::metrics::{CONTENT_TYPE, Exposition, Kind};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::plan::Action;
use crate::service::Leader;

/// Counters that outlive one leadership.
#[derive(Debug, Default)]
pub struct MasterMetrics {
    rounds: AtomicU64,
    leaderships: AtomicU64,
    splits_recorded: AtomicU64,
    /// `ACTION_KINDS` x `[ok, failed]`.
    actions: [[AtomicU64; 2]; ACTION_KINDS.len()],
}

const ACTION_KINDS: [&str; 4] = ["assign", "unload", "move", "end_move"];

impl MasterMetrics {
    /// Counts a round.
    pub fn round(&self) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a leadership won.
    pub fn became_active(&self) {
        self.leaderships.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a split recorded in METADATA.
    pub fn split_recorded(&self) {
        self.splits_recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an executed action and whether it succeeded.
    pub fn action(&self, action: &Action, ok: bool) {
        let kind = match action {
            Action::Assign { .. } => 0,
            Action::Unload { .. } => 1,
            Action::Move { .. } => 2,
            Action::EndMove { .. } => 3,
        };
        self.actions[kind][usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition of the counters and of `leader`'s latest round.
    pub fn render(&self, leader: &Leader) -> String {
        let mut out = Exposition::default();
        let counter = |out: &mut Exposition, name: &str, help: &str, v: &AtomicU64| {
            out.family(name, Kind::Counter, help);
            out.sample(name, &[], v.load(Ordering::Relaxed) as f64);
        };
        counter(
            &mut out,
            "tabula_master_rounds_total",
            "Rounds of gather, plan and execute run while active.",
            &self.rounds,
        );
        counter(
            &mut out,
            "tabula_master_leaderships_total",
            "Times this master became the active one.",
            &self.leaderships,
        );
        counter(
            &mut out,
            "tabula_master_splits_recorded_total",
            "Splits made by tablet servers that this master recorded in METADATA.",
            &self.splits_recorded,
        );
        out.family(
            "tabula_master_actions_total",
            Kind::Counter,
            "Placement actions executed, by kind and result.",
        );
        for (kind, counts) in ACTION_KINDS.iter().zip(&self.actions) {
            for (result, count) in ["ok", "failed"].iter().zip(counts) {
                out.sample(
                    "tabula_master_actions_total",
                    &[("kind", kind), ("result", result)],
                    count.load(Ordering::Relaxed) as f64,
                );
            }
        }
        let active = leader.get().filter(|a| a.exec().leadership.is_safe());
        let gauge = |out: &mut Exposition, name: &str, help: &str, v: f64| {
            out.family(name, Kind::Gauge, help);
            out.sample(name, &[], v);
        };
        gauge(
            &mut out,
            "tabula_master_active",
            "1 while this master leads with a safe session, else 0.",
            f64::from(u8::from(active.is_some())),
        );
        if let Some(active) = active {
            let snapshot = active.latest();
            gauge(
                &mut out,
                "tabula_master_epoch",
                "The master epoch of this master's leadership.",
                active.exec().leadership.epoch().0 as f64,
            );
            gauge(
                &mut out,
                "tabula_master_servers_live",
                "Tablet servers listed and answering.",
                snapshot.servers.live.len() as f64,
            );
            gauge(
                &mut out,
                "tabula_master_servers_unreachable",
                "Tablet servers listed but not answering.",
                snapshot.servers.unreachable.len() as f64,
            );
            gauge(
                &mut out,
                "tabula_master_tables",
                "Tables in the catalog.",
                snapshot.tables.len() as f64,
            );
            let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
            for state in ["unassigned", "assigned", "moving", "deleting"] {
                by_state.insert(state, 0);
            }
            for record in snapshot.records.values() {
                let state = match record.state {
                    TabletState::Unassigned => "unassigned",
                    TabletState::Assigned => "assigned",
                    TabletState::Moving => "moving",
                    TabletState::Deleting => "deleting",
                };
                *by_state.entry(state).or_default() += 1;
            }
            out.family(
                "tabula_master_tablets",
                Kind::Gauge,
                "Tablets METADATA records, by state.",
            );
            for (state, n) in by_state {
                out.sample("tabula_master_tablets", &[("state", state)], n as f64);
            }
            let not_serving = snapshot
                .records
                .values()
                .filter(|r| !snapshot.is_served(r))
                .count();
            gauge(
                &mut out,
                "tabula_master_tablets_not_serving",
                "Tablets not served at their recorded server and epoch.",
                not_serving as f64,
            );
        }
        out.finish()
    }
}

/// What `/healthz` answers: the status and the body.
pub fn health(leader: &Leader) -> (StatusCode, String) {
    match leader.get() {
        Some(active) if active.exec().leadership.is_safe() => (
            StatusCode::OK,
            format!("active epoch {}\n", active.exec().leadership.epoch().0),
        ),
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the master's lock-service session is not safe\n".to_owned(),
        ),
        None => (StatusCode::OK, "standby\n".to_owned()),
    }
}

/// The routes over `metrics` and `leader`.
pub fn router(metrics: Arc<MasterMetrics>, leader: Arc<Leader>) -> Router {
    let for_health = leader.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render(&leader);
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], text) }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let (status, body) = health(&for_health);
                async move {
                    (
                        status,
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        body,
                    )
                }
            }),
        )
}

/// Binds `addr`; answers the listener and the bound address (port 0 resolved).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Serves `router` on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_renders_counters_and_is_healthy() {
        let metrics = MasterMetrics::default();
        metrics.round();
        metrics.action(
            &Action::Unload {
                tablet: tabula_common::TabletId(1),
                server: tabula_common::ServerId("s".into()),
                epoch: tabula_common::Epoch(1),
            },
            false,
        );
        let leader = Leader::default();
        let text = metrics.render(&leader);
        assert!(text.contains("tabula_master_rounds_total 1\n"), "{text}");
        assert!(
            text.contains("tabula_master_actions_total{kind=\"unload\",result=\"failed\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("tabula_master_active 0\n"), "{text}");
        assert!(!text.contains("tabula_master_epoch"), "{text}");
        assert_eq!(health(&leader), (StatusCode::OK, "standby\n".to_owned()));
    }
}
