//! `tabula servers | status | balancer`: the cluster as the active master sees it.
//!
//! `servers` JSON: `[{"server": ID, "address": STR, "tablets": N, "bytes": N, "reads": N,
//! "writes": N}]`. `status` JSON: `{"cluster_id", "active_master", "master_epoch",
//! "standby_masters": [..], "lock_leader", "servers", "tables", "tablets",
//! "tablets_not_serving", "balancer_enabled"}`. `balancer on|off` sets the cluster-wide
//! switch (it survives master failover) and prints `{"balancer": "on", "previous": "off"}`.

use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tabula_client::Client;
use tabula_proto::tabula::master::v1 as mpb;

use super::tablets::human_bytes;
use crate::output::{OutputFormat, emit, table};

/// `tabula balancer`.
#[derive(Debug, Args)]
pub(crate) struct BalancerArgs {
    /// Whether the active master moves tablets to even out the servers.
    pub(crate) state: Switch,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Switch {
    /// Balance.
    On,
    /// Do not balance (assignments of unserved tablets go on).
    Off,
}

fn switch_name(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// The JSON of one server.
fn server_json(s: &mpb::ServerView) -> Value {
    json!({
        "server": s.server_id,
        "address": s.address,
        "tablets": s.tablets,
        "bytes": s.bytes,
        "reads": s.reads,
        "writes": s.writes,
    })
}

/// Runs `servers`.
pub(crate) async fn servers(client: Client, output: OutputFormat) -> anyhow::Result<()> {
    let mut servers = client.admin().list_servers().await?;
    servers.sort_by(|a, b| a.server_id.cmp(&b.server_id));
    emit(
        output,
        || {
            let lines: Vec<Vec<String>> = servers
                .iter()
                .map(|s| {
                    vec![
                        s.server_id.clone(),
                        s.address.clone(),
                        s.tablets.to_string(),
                        human_bytes(s.bytes),
                        s.reads.to_string(),
                        s.writes.to_string(),
                    ]
                })
                .collect();
            table(
                &["SERVER", "ADDRESS", "TABLETS", "SIZE", "READS", "WRITES"],
                &lines,
            )
        },
        || Value::Array(servers.iter().map(server_json).collect()),
    )
}

/// The JSON of a cluster status.
pub(crate) fn status_json(s: &mpb::ClusterStatusResponse) -> Value {
    json!({
        "cluster_id": s.cluster_id,
        "active_master": s.active_master,
        "master_epoch": s.master_epoch,
        "standby_masters": s.standby_masters,
        "lock_leader": s.lock_leader,
        "servers": s.servers,
        "tables": s.tables,
        "tablets": s.tablets,
        "tablets_not_serving": s.tablets_not_serving,
        "balancer_enabled": s.balancer_enabled,
    })
}

/// The text of a cluster status: one `name: value` line each.
pub(crate) fn status_text(s: &mpb::ClusterStatusResponse) -> String {
    let standbys = if s.standby_masters.is_empty() {
        "-".to_owned()
    } else {
        s.standby_masters.join(", ")
    };
    [
        format!("cluster:          {}", s.cluster_id),
        format!(
            "active master:    {} (epoch {})",
            s.active_master, s.master_epoch
        ),
        format!("standby masters:  {standbys}"),
        format!("lock leader:      {}", s.lock_leader),
        format!("tablet servers:   {}", s.servers),
        format!("tables:           {}", s.tables),
        format!(
            "tablets:          {} ({} not serving)",
            s.tablets, s.tablets_not_serving
        ),
    ]
    .join("\n")
}

/// Runs `status`.
pub(crate) async fn status(client: Client, output: OutputFormat) -> anyhow::Result<()> {
    let status = client.admin().cluster_status().await?;
    emit(output, || status_text(&status), || status_json(&status))
}

/// Runs `balancer`.
pub(crate) async fn balancer(
    client: Client,
    args: BalancerArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let on = args.state == Switch::On;
    let previous = client.admin().set_balancer(on).await?;
    emit(
        output,
        || {
            format!(
                "balancer {} (was {})",
                switch_name(on),
                switch_name(previous)
            )
        },
        || json!({ "balancer": switch_name(on), "previous": switch_name(previous) }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_prints_every_field() {
        let s = mpb::ClusterStatusResponse {
            cluster_id: "c1".to_owned(),
            active_master: "m1 127.0.0.1:7131".to_owned(),
            master_epoch: 4,
            standby_masters: vec!["m2 127.0.0.1:7132".to_owned()],
            lock_leader: "1 127.0.0.1:7101".to_owned(),
            servers: 3,
            tables: 1,
            tablets: 5,
            tablets_not_serving: 0,
            balancer_enabled: true,
        };
        let text = status_text(&s);
        assert!(
            text.contains("active master:    m1 127.0.0.1:7131 (epoch 4)"),
            "{text}"
        );
        assert!(
            text.contains("tablets:          5 (0 not serving)"),
            "{text}"
        );
        assert_eq!(
            status_json(&s)["standby_masters"],
            json!(["m2 127.0.0.1:7132"])
        );
    }
}
