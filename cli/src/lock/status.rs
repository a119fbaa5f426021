//! `tabula lock status | add-node | remove-node`: the cell's leader, term and members (each
//! with how far the leader has replicated to it and how far it has applied itself), and
//! membership changes (which answer the cell's status after the change).

use clap::Args;
use serde_json::json;
use tabula_lockservice::client::{CellStatus, ClientOptions, MemberApplied};

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

/// The status for a human: a header, then one table row per member. MATCHED is what the
/// leader has replicated to it (`-` if the answering node does not lead); APPLIED is what it
/// has applied itself (`unreachable` if it did not answer, `-` if it was not asked).
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
                match &m.applied {
                    MemberApplied::Index(i) => i.to_string(),
                    MemberApplied::Unreachable(_) => "unreachable".to_owned(),
                    MemberApplied::Unknown => "-".to_owned(),
                },
            ]
        })
        .collect();
    format!(
        "leader   {leader}\nterm     {}\napplied  {} (answered by node {})\n\n{}",
        status.term,
        status.applied_index,
        status.node_id,
        table(&["ID", "ADDR", "ROLE", "MATCHED", "APPLIED"], &rows)
    )
}

/// The status for a script: a member's `applied_index` is null when unknown, and
/// `unreachable` then says why if it was asked.
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
                "applied_index": m.applied.index(),
                "unreachable": match &m.applied {
                    MemberApplied::Unreachable(why) => Some(why.as_str()),
                    MemberApplied::Index(_) | MemberApplied::Unknown => None,
                },
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
                    applied: MemberApplied::Index(42),
                },
                MemberStatus {
                    id: 2,
                    addr: "127.0.0.1:17102".to_owned(),
                    voter: true,
                    matched_index: Some(40),
                    applied: MemberApplied::Unreachable("no answer within 500ms".to_owned()),
                },
                MemberStatus {
                    id: 4,
                    addr: "127.0.0.1:17104".to_owned(),
                    voter: false,
                    matched_index: None,
                    applied: MemberApplied::Unknown,
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
             ID  ADDR             ROLE     MATCHED  APPLIED\n\
             1   127.0.0.1:17101  voter    42       42\n\
             2   127.0.0.1:17102  voter    40       unreachable\n\
             4   127.0.0.1:17104  learner  -        -"
        );
        let doc = status_json(&cell());
        assert_eq!(doc["leader_id"], 1);
        assert_eq!(
            doc["members"],
            json!([
                { "id": 1, "addr": "127.0.0.1:17101", "role": "voter", "matched_index": 42,
                  "applied_index": 42, "unreachable": null },
                { "id": 2, "addr": "127.0.0.1:17102", "role": "voter", "matched_index": 40,
                  "applied_index": null, "unreachable": "no answer within 500ms" },
                { "id": 4, "addr": "127.0.0.1:17104", "role": "learner", "matched_index": null,
                  "applied_index": null, "unreachable": null },
            ])
        );
    }
}
