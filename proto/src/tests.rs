use prost::Message;

use crate::google::bigtable::v2::{Mutation, mutation};
use crate::tabula::tablet::v1::{MutateRowRequest, TabletRef};

fn set_cell() -> Mutation {
    Mutation {
        mutation: Some(mutation::Mutation::SetCell(mutation::SetCell {
            family_name: "cf".to_owned(),
            column_qualifier: b"q\x00\xff".to_vec(),
            timestamp_micros: 1_700_000_000_000_000,
            value: b"value".to_vec(),
        })),
    }
}

#[test]
fn set_cell_mutation_round_trips_through_prost() {
    let original = set_cell();
    let bytes = original.encode_to_vec();
    let decoded = Mutation::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded, original);
    let Some(mutation::Mutation::SetCell(cell)) = decoded.mutation else {
        panic!("decoded mutation is not a SetCell: {decoded:?}");
    };
    assert_eq!(cell.family_name, "cf");
    assert_eq!(cell.value, b"value");
}

#[test]
fn tablet_request_carries_bigtable_mutations() {
    let original = MutateRowRequest {
        tablet: Some(TabletRef {
            table_id: 2,
            tablet_id: 7,
            tablet_epoch: 3,
        }),
        row_key: b"row-1".to_vec(),
        mutations: vec![set_cell(), set_cell()],
    };
    let decoded = MutateRowRequest::decode(original.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded, original);
}

#[test]
fn raft_envelope_round_trips_and_keeps_its_outcome() {
    use crate::tabula::raft::v1::{RaftReply, RaftRequest, raft_reply};

    let request = RaftRequest {
        cluster_id: "cell-a".to_owned(),
        target_node: 3,
        payload: vec![0, 1, 2, 255],
    };
    let decoded = RaftRequest::decode(request.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded, request);

    let reply = RaftReply {
        outcome: Some(raft_reply::Outcome::RaftError(b"boom".to_vec())),
    };
    let decoded = RaftReply::decode(reply.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded, reply);
    // An empty reply decodes to no outcome, which the client treats as a protocol error.
    assert_eq!(RaftReply::decode(&[][..]).unwrap().outcome, None);
}
