//! `tabula lock status | add-node | remove-node`: the cell's leader, term and members, and
//! membership changes (which answer the cell's status after the change).

use clap::Args;
use serde_json::json;
use tabula_lockservice::client::{CellStatus, ClientOptions};

use super::cell;
use crate::output::{OutputFormat, emit, table};

/// `tabula lock add-node`.
#[derive(Debug, Args)]
pub(crate) struct AddNodeArgs {
    /// The new node's id (its `serve --id`).
    pub(crate) id: u64,
    /// Where the other nodes reach it: HOST:PORT.
    pub(crate) addr: String,
}

/// `tabula lock remove-node`.
#[derive(Debug, Args)]
pub(crate) struct RemoveNodeArgs {
    /// The node's id.
    pub(crate) id: u64,
}

/// Runs `status`.
pub(crate) fn status(cell_addrs: &[String], output: OutputFormat) -> anyhow::Result<()> {
    let client = cell::connect(cell_addrs, ClientOptions::default())?;
    cell::block_on(async move { print_status(&client.status().await?, output) })
}

/// Runs `add-node`.
pub(crate) fn add_node(
    cell_addrs: &[String],
    args: AddNodeArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let client = cell::connect(cell_addrs, ClientOptions::default())?;
    cell::block_on(
        async move { print_status(&client.add_node(args.id, &args.addr).await?, output) },
    )
}

/// Runs `remove-node`.
pub(crate) fn remove_node(
    cell_addrs: &[String],
    args: RemoveNodeArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let client = cell::connect(cell_addrs, ClientOptions::default())?;
    cell::block_on(async move { print_status(&client.remove_node(args.id).await?, output) })
}

fn print_status(status: &CellStatus, output: OutputFormat) -> anyhow::Result<()> {
    emit(output, || status_text(status), || status_json(status))
}

/// The status for a human: a header, then one table row per member.
fn status_text(status: &CellStatus) -> String {
    let leader = status.leader.as_ref().map_or_else(
        || "none known".to_owned(),
        |(id, addr)| format!("{id} {addr}"),
    );
    let rows: Vec<Vec<String>> = status
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.addr.clone(),
                if m.voter { "voter" } else { "learner" }.to_owned(),
                m.matched_index
                    .map_or_else(|| "-".to_owned(), |i| i.to_string()),
            ]
        })
        .collect();
    format!(
        "leader   {leader}\nterm     {}\napplied  {} (answered by node {})\n\n{}",
        status.term,
        status.applied_index,
        status.node_id,
        table(&["ID", "ADDR", "ROLE", "MATCHED"], &rows)
    )
}

/// The status for a script.
fn status_json(status: &CellStatus) -> serde_json::Value {
    let members: Vec<serde_json::Value> = status
        .members
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "addr": m.addr,
                "role": if m.voter { "voter" } else { "learner" },
                "matched_index": m.matched_index,
            })
        })
        .collect();
    json!({
        "node_id": status.node_id,
        "leader_id": status.leader.as_ref().map(|(id, _)| *id),
        "leader_addr": status.leader.as_ref().map(|(_, addr)| addr.clone()),
        "term": status.term,
        "applied_index": status.applied_index,
        "members": members,
    })
}

#[cfg(test)]
mod tests {
    use tabula_lockservice::client::MemberStatus;

    use super::*;

    fn cell() -> CellStatus {
        CellStatus {
            node_id: 1,
            leader: Some((1, "127.0.0.1:17101".to_owned())),
            term: 3,
            applied_index: 42,
            members: vec![
                MemberStatus {
                    id: 1,
                    addr: "127.0.0.1:17101".to_owned(),
                    voter: true,
                    matched_index: Some(42),
                },
                MemberStatus {
                    id: 4,
                    addr: "127.0.0.1:17104".to_owned(),
                    voter: false,
                    matched_index: None,
                },
            ],
        }
    }

    #[test]
    fn status_prints_the_leader_then_a_member_table() {
        assert_eq!(
            status_text(&cell()),
            "leader   1 127.0.0.1:17101\n\
             term     3\n\
             applied  42 (answered by node 1)\n\
             \n\
             ID  ADDR             ROLE     MATCHED\n\
             1   127.0.0.1:17101  voter    42\n\
             4   127.0.0.1:17104  learner  -"
        );
        let doc = status_json(&cell());
        assert_eq!(doc["leader_id"], 1);
        assert_eq!(doc["members"][1]["role"], "learner");
        assert_eq!(doc["members"][1]["matched_index"], serde_json::Value::Null);
    }
}
