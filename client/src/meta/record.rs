//! `TabletRecord`: what METADATA (and, for the root tablet, `/tabula/root`) says about one
//! tablet, as a typed value. Its wire form is `tabula.master.v1.TabletRecord`, prost-encoded;
//! prost writes fields in tag order and the message has no maps, so equal records encode to
//! equal bytes — which compare-and-set relies on (the predicate is the exact previous value).
//!
//! Validation (`from_proto`, `decode`, `validate`): a non-zero tablet id; a known state; a
//! non-empty range (`end_row > start_row` when there is an end); the root tablet (table 0)
//! covers the whole table; an assigned or moving tablet names its server.

use bytes::Bytes;
use prost::Message;
use tabula_common::{Epoch, Error, ServerId, TableId, TabletId, meta};
use tabula_proto::tabula::master::v1 as mpb;
use tabula_proto::tabula::tablet::v1 as tpb;

/// Where a tablet is in its life, as METADATA records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TabletState {
    /// Known to METADATA, served by nobody (new, or its server died).
    Unassigned,
    /// Assigned to `server` at `epoch`.
    Assigned,
    /// Unloading from `server`; the next owner loads it at a higher epoch.
    Moving,
    /// Its table is being deleted.
    Deleting,
}

impl TabletState {
    fn to_proto(self) -> mpb::TabletState {
        match self {
            TabletState::Unassigned => mpb::TabletState::Unassigned,
            TabletState::Assigned => mpb::TabletState::Assigned,
            TabletState::Moving => mpb::TabletState::Moving,
            TabletState::Deleting => mpb::TabletState::Deleting,
        }
    }

    fn from_proto(value: i32) -> Result<TabletState, Error> {
        match mpb::TabletState::try_from(value) {
            Ok(mpb::TabletState::Unassigned) => Ok(TabletState::Unassigned),
            Ok(mpb::TabletState::Assigned) => Ok(TabletState::Assigned),
            Ok(mpb::TabletState::Moving) => Ok(TabletState::Moving),
            Ok(mpb::TabletState::Deleting) => Ok(TabletState::Deleting),
            Ok(mpb::TabletState::Unspecified) => Err(Error::invalid_argument(
                "tablet record: state is unspecified",
            )),
            Err(_) => Err(Error::invalid_argument(format!(
                "tablet record: unknown state {value}"
            ))),
        }
    }
}

/// One tablet as METADATA describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabletRecord {
    /// The table the tablet belongs to (0: the root tablet, 1: METADATA).
    pub table: TableId,
    /// Unique in the cluster for the tablet's whole life.
    pub tablet: TabletId,
    /// First row (inclusive); empty is the table's beginning.
    pub start_row: Bytes,
    /// The row after the tablet (exclusive); `None` is the table's end.
    pub end_row: Option<Bytes>,
    /// The tablet epoch: grows with every assignment; a server serves the tablet only at the
    /// epoch it was given.
    pub epoch: Epoch,
    /// Where the tablet is in its life.
    pub state: TabletState,
    /// The server it is assigned to (or moving from).
    pub server: Option<ServerId>,
    /// That server's address (`host:port`); empty when there is no server.
    pub server_addr: String,
    /// The master epoch of the record's last writer.
    pub master_epoch: Epoch,
    /// Where the tablet's manifest lives on the storage root.
    pub manifest_path: String,
    /// For a left child inserted by a split: its parent.
    pub split_parent: Option<TabletId>,
    /// For a left child inserted by a split: its right sibling.
    pub split_sibling: Option<TabletId>,
    /// The tablet's manifest exists (it was loaded at least once): it is never loaded with
    /// `create` again.
    pub created: bool,
}

impl TabletRecord {
    /// The wire form.
    pub fn to_proto(&self) -> mpb::TabletRecord {
        mpb::TabletRecord {
            table_id: self.table.0,
            tablet_id: self.tablet.0,
            start_row: self.start_row.to_vec(),
            end_row: self.end_row.as_ref().map(|e| e.to_vec()),
            tablet_epoch: self.epoch.0,
            state: self.state.to_proto() as i32,
            server_id: self
                .server
                .as_ref()
                .map(|s| s.0.clone())
                .unwrap_or_default(),
            server_addr: self.server_addr.clone(),
            master_epoch: self.master_epoch.0,
            manifest_path: self.manifest_path.clone(),
            split_parent: self.split_parent.map_or(0, |t| t.0),
            split_sibling: self.split_sibling.map_or(0, |t| t.0),
            created: self.created,
        }
    }

    /// From the wire form, validated; `InvalidArgument` says what is wrong.
    pub fn from_proto(p: mpb::TabletRecord) -> Result<TabletRecord, Error> {
        let nonzero = |id: u64| (id != 0).then_some(TabletId(id));
        let record = TabletRecord {
            table: TableId(p.table_id),
            tablet: TabletId(p.tablet_id),
            start_row: Bytes::from(p.start_row),
            end_row: p.end_row.map(Bytes::from),
            epoch: Epoch(p.tablet_epoch),
            state: TabletState::from_proto(p.state)?,
            server: (!p.server_id.is_empty()).then_some(ServerId(p.server_id)),
            server_addr: p.server_addr,
            master_epoch: Epoch(p.master_epoch),
            manifest_path: p.manifest_path,
            split_parent: nonzero(p.split_parent),
            split_sibling: nonzero(p.split_sibling),
            created: p.created,
        };
        record.validate()?;
        Ok(record)
    }

    /// Checks the rules in the module doc; `InvalidArgument` says which one failed.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::invalid_argument(format!("tablet record: {m}")));
        if self.tablet.0 == 0 {
            return bad("tablet_id is 0".to_owned());
        }
        if let Some(end) = &self.end_row
            && *end <= self.start_row
        {
            return bad(format!(
                "tablet {} has an empty range: end row {:?} is not after start row {:?}",
                self.tablet,
                end.escape_ascii().to_string(),
                self.start_row.escape_ascii().to_string()
            ));
        }
        if self.table == TableId::ROOT && (!self.start_row.is_empty() || self.end_row.is_some()) {
            return bad(format!(
                "the root tablet {} must cover its whole table",
                self.tablet
            ));
        }
        if matches!(self.state, TabletState::Assigned | TabletState::Moving)
            && self.server.is_none()
        {
            return bad(format!(
                "tablet {} is {:?} but names no server",
                self.tablet, self.state
            ));
        }
        Ok(())
    }

    /// The prost encoding of `to_proto()` (deterministic: equal records, equal bytes).
    pub fn encode(&self) -> Bytes {
        Bytes::from(self.to_proto().encode_to_vec())
    }

    /// Decodes and validates bytes written by `encode`; `InvalidArgument` for corrupt input.
    pub fn decode(bytes: &[u8]) -> Result<TabletRecord, Error> {
        let p = mpb::TabletRecord::decode(bytes)
            .map_err(|e| Error::invalid_argument(format!("tablet record: undecodable: {e}")))?;
        TabletRecord::from_proto(p)
    }

    /// The METADATA row key of this record: its table and end row.
    pub fn meta_key(&self) -> Bytes {
        meta::row_key(self.table, self.end_row.as_deref())
    }

    /// What a data request sent to this tablet names: table, tablet and epoch, so a server
    /// that serves the row at another epoch, or in another tablet, answers `WrongTablet`.
    pub fn tablet_ref(&self) -> tpb::TabletRef {
        tpb::TabletRef {
            table_id: self.table.0,
            tablet_id: self.tablet.0,
            tablet_epoch: self.epoch.0,
        }
    }

    /// The tablet as a `LoadTablet` / admin command names it.
    pub fn descriptor(&self) -> tpb::TabletDescriptor {
        tpb::TabletDescriptor {
            table_id: self.table.0,
            tablet_id: self.tablet.0,
            start_row: self.start_row.to_vec(),
            end_row: self.end_row.as_ref().map(|e| e.to_vec()),
            tablet_epoch: self.epoch.0,
        }
    }

    /// Whether `row` is in `[start_row, end_row)`.
    pub fn contains(&self, row: &[u8]) -> bool {
        row >= &self.start_row[..] && self.end_row.as_ref().is_none_or(|e| row < &e[..])
    }
}

#[cfg(test)]
mod tests {
    use tabula_common::Code;

    use super::*;

    fn record() -> TabletRecord {
        TabletRecord {
            table: TableId(7),
            tablet: TabletId(42),
            start_row: Bytes::from_static(b"g"),
            end_row: Some(Bytes::from_static(b"p\x00\xff")),
            epoch: Epoch(3),
            state: TabletState::Assigned,
            server: Some(ServerId("ts-1".into())),
            server_addr: "127.0.0.1:7201".into(),
            master_epoch: Epoch(9),
            manifest_path: "tablets/000000000000002a/MANIFEST".into(),
            split_parent: Some(TabletId(40)),
            split_sibling: Some(TabletId(43)),
            created: true,
        }
    }

    #[test]
    fn records_round_trip_through_bytes_and_encode_deterministically() {
        let r = record();
        assert_eq!(TabletRecord::decode(&r.encode()).unwrap(), r);
        assert_eq!(r.encode(), r.clone().encode());
        let bare = TabletRecord {
            start_row: Bytes::new(),
            end_row: None,
            state: TabletState::Unassigned,
            server: None,
            server_addr: String::new(),
            split_parent: None,
            split_sibling: None,
            created: false,
            ..record()
        };
        assert_eq!(TabletRecord::decode(&bare.encode()).unwrap(), bare);
        for state in [
            TabletState::Unassigned,
            TabletState::Assigned,
            TabletState::Moving,
            TabletState::Deleting,
        ] {
            let r = TabletRecord { state, ..record() };
            assert_eq!(TabletRecord::decode(&r.encode()).unwrap().state, state);
        }
    }

    #[test]
    fn invalid_records_are_refused() {
        let invalid = |p: mpb::TabletRecord| {
            let e = TabletRecord::from_proto(p).unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument, "{e}");
            e.message
        };
        let good = record().to_proto();
        assert!(
            invalid(mpb::TabletRecord {
                tablet_id: 0,
                ..good.clone()
            })
            .contains("tablet_id")
        );
        assert!(
            invalid(mpb::TabletRecord {
                state: 0,
                ..good.clone()
            })
            .contains("unspecified")
        );
        assert!(
            invalid(mpb::TabletRecord {
                state: 99,
                ..good.clone()
            })
            .contains("unknown")
        );
        assert!(
            invalid(mpb::TabletRecord {
                end_row: Some(b"g".to_vec()),
                ..good.clone()
            })
            .contains("empty range")
        );
        assert!(
            invalid(mpb::TabletRecord {
                table_id: 0,
                ..good.clone()
            })
            .contains("whole table")
        );
        assert!(
            invalid(mpb::TabletRecord {
                server_id: String::new(),
                ..good.clone()
            })
            .contains("names no server")
        );
        let e = TabletRecord::decode(b"\xff\xff\xff").unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        // An unassigned tablet needs no server; a whole-range root tablet is fine.
        assert!(
            TabletRecord::from_proto(mpb::TabletRecord {
                table_id: 0,
                start_row: vec![],
                end_row: None,
                state: mpb::TabletState::Unassigned as i32,
                server_id: String::new(),
                ..good
            })
            .is_ok()
        );
    }

    #[test]
    fn keys_refs_and_ranges() {
        let r = record();
        assert_eq!(r.meta_key(), meta::row_key(TableId(7), Some(b"p\x00\xff")));
        let last = TabletRecord {
            end_row: None,
            ..record()
        };
        assert_eq!(last.meta_key(), meta::row_key(TableId(7), None));
        assert_eq!(
            r.tablet_ref(),
            tpb::TabletRef {
                table_id: 7,
                tablet_id: 42,
                tablet_epoch: 3
            }
        );
        assert_eq!(r.descriptor().end_row.as_deref(), Some(&b"p\x00\xff"[..]));
        assert!(!r.contains(b"f\xff"));
        assert!(r.contains(b"g"));
        assert!(r.contains(b"p\x00"));
        assert!(!r.contains(b"p\x00\xff"));
        assert!(last.contains(&[0xff; 100]));
    }
}
