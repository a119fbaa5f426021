//! Live tablet servers: each has an ephemeral file `/tabula/servers/<server-id>` (contents:
//! its address) that dies with its session, so a server whose file is gone can no longer serve
//! — its own lease ran out before the lock service expired the session. A listed server is
//! asked what it serves (`ListTablets`); one that does not answer is *unreachable*: it may
//! still be serving, so its tablets are left alone until its file goes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tabula_client::Channels;
use tabula_common::{Code, Epoch, Error, ServerId, TableId, TabletId};
use tabula_lockservice::client::LockClient;
use tabula_proto::tabula::tablet::v1 as tpb;
use tokio::task::JoinSet;
use tracing::debug;

use crate::plan::{ServedTablet, ServerView};
use crate::splits::Child;

/// The directory of tablet servers' files.
pub const SERVERS_DIR: &str = "/tabula/servers";
/// How long a server has to answer `ListTablets`.
const LIST_TIMEOUT: Duration = Duration::from_secs(2);

/// What the master knows about tablet servers this round.
#[derive(Debug, Clone, Default)]
pub struct Servers {
    /// Listed and answering.
    pub live: BTreeMap<ServerId, ServerView>,
    /// Listed but not answering: `(id, address, why)`.
    pub unreachable: BTreeMap<ServerId, (String, String)>,
    /// Per live server, its load counters as reported (`reads`, `writes`).
    pub load: BTreeMap<ServerId, (u64, u64)>,
    /// Children of splits made on live servers: `(server, parent, child)`.
    pub split_children: Vec<(ServerId, TabletId, Child)>,
}

impl Servers {
    /// A server's address, live or not.
    pub fn addr(&self, id: &ServerId) -> Option<&str> {
        self.live
            .get(id)
            .map(|s| s.addr.as_str())
            .or_else(|| self.unreachable.get(id).map(|(a, _)| a.as_str()))
    }

    /// Whether the server's file exists (it may be serving).
    pub fn listed(&self, id: &ServerId) -> bool {
        self.live.contains_key(id) || self.unreachable.contains_key(id)
    }
}

/// Lists `/tabula/servers/` and asks every listed server what it serves, concurrently.
/// Every server asked accepts `master_epoch` first (a deposed master is fenced out of every
/// server the new one can reach).
pub async fn gather(
    lock: &LockClient,
    channels: &Channels,
    master_epoch: Epoch,
) -> Result<Servers, Error> {
    let listing = match lock.list(SERVERS_DIR).await {
        Ok(l) => l,
        Err(e) if e.code == Code::NotFound => return Ok(Servers::default()),
        Err(e) => return Err(e),
    };
    let mut asks = JoinSet::new();
    for name in listing.children {
        let path = format!("{SERVERS_DIR}/{name}");
        let addr = match lock.get(&path).await {
            Ok(info) => String::from_utf8_lossy(&info.contents).into_owned(),
            Err(e) if e.code == Code::NotFound => continue,
            Err(e) => return Err(e),
        };
        let channels = channels.clone();
        asks.spawn(async move {
            let id = ServerId(name);
            let answer = list_tablets(&channels, &addr, master_epoch).await;
            (id, addr, answer)
        });
    }
    let mut servers = Servers::default();
    while let Some(done) = asks.join_next().await {
        let Ok((id, addr, answer)) = done else {
            continue;
        };
        match answer {
            Ok(list) => {
                let (reads, writes) = list
                    .tablets
                    .iter()
                    .fold((0, 0), |(r, w), t| (r + t.reads, w + t.writes));
                servers.load.insert(id.clone(), (reads, writes));
                let tablets = list.tablets.iter().filter_map(served).collect();
                for status in &list.tablets {
                    if let Some((parent, child)) = split_child(status) {
                        servers.split_children.push((id.clone(), parent, child));
                    }
                }
                servers
                    .live
                    .insert(id.clone(), ServerView { id, addr, tablets });
            }
            Err(e) => {
                debug!(server = %id, %addr, error = %e, "tablet server did not answer ListTablets");
                servers.unreachable.insert(id, (addr, e.to_string()));
            }
        }
    }
    Ok(servers)
}

async fn list_tablets(
    channels: &Channels,
    addr: &str,
    master_epoch: Epoch,
) -> Result<tpb::ListTabletsResponse, Error> {
    let mut admin = channels.admin(addr)?;
    let mut request = tonic::Request::new(tpb::ListTabletsRequest {
        master_epoch: Some(tpb::MasterEpoch {
            epoch: master_epoch.0,
        }),
    });
    request.set_timeout(LIST_TIMEOUT);
    let call = admin.list_tablets(request);
    match tokio::time::timeout(LIST_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(Error::from(status)),
        Err(_) => Err(Error::new(
            Code::DeadlineExceeded,
            format!("ListTablets on {addr} took longer than {LIST_TIMEOUT:?}"),
        )),
    }
}

fn served(status: &tpb::TabletStatus) -> Option<ServedTablet> {
    let d = status.tablet.as_ref()?;
    Some(ServedTablet {
        tablet: TabletId(d.tablet_id),
        table: TableId(d.table_id),
        epoch: Epoch(d.tablet_epoch),
        size_bytes: status.approximate_size_bytes,
    })
}

fn split_child(status: &tpb::TabletStatus) -> Option<(TabletId, Child)> {
    if status.split_parent == 0 {
        return None;
    }
    let d = status.tablet.as_ref()?;
    Some((TabletId(status.split_parent), child_of(d)))
}

/// A split child as a tablet descriptor names it.
pub fn child_of(d: &tpb::TabletDescriptor) -> Child {
    Child {
        tablet: TabletId(d.tablet_id),
        table: TableId(d.table_id),
        start_row: bytes::Bytes::copy_from_slice(&d.start_row),
        end_row: d.end_row.as_deref().map(bytes::Bytes::copy_from_slice),
        epoch: Epoch(d.tablet_epoch),
    }
}

/// The ids of every tablet an unreachable server may be serving according to `assigned`
/// (tablet -> server): the planner must leave them alone.
pub fn frozen_by_unreachable(
    servers: &Servers,
    assigned: impl IntoIterator<Item = (TabletId, ServerId)>,
) -> BTreeSet<TabletId> {
    assigned
        .into_iter()
        .filter(|(_, server)| servers.unreachable.contains_key(server))
        .map(|(tablet, _)| tablet)
        .collect()
}
