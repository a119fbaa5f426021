//! Generates prost messages and tonic clients/servers for the vendored Cloud Bigtable v2
//! data-model protos and for Tabula's own services under `tabula/`.
//!
//! protoc comes from `protoc-bin-vendored` (binary and well-known-type includes), so the
//! build needs no system protoc.

use std::path::PathBuf;

/// Our own services; each entry compiles its imports too.
const PROTOS: &[&str] = &[
    "tabula/tablet.proto",
    "tabula/raft.proto",
    "tabula/lock.proto",
    "tabula/master.proto",
    "tabula/bench.proto",
];

/// Vendored googleapis files compiled even if nothing of ours imports them yet.
const VENDORED_ROOTS: &[&str] = &[
    "vendor/googleapis/google/bigtable/v2/data.proto",
    // The Cloud Bigtable API the gateway serves: data and table admin.
    "vendor/googleapis/google/bigtable/v2/bigtable.proto",
    "vendor/googleapis/google/bigtable/v2/feature_flags.proto",
    "vendor/googleapis/google/bigtable/v2/response_params.proto",
    "vendor/googleapis/google/bigtable/admin/v2/bigtable_table_admin.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let wkt_include = protoc_bin_vendored::include_path()?;

    // Passing the vendored protoc through the prost config instead of the PROTOC environment
    // variable: `std::env::set_var` is `unsafe` in edition 2024 and the workspace denies
    // `unsafe_code`.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);

    let protos: Vec<PathBuf> = PROTOS
        .iter()
        .chain(VENDORED_ROOTS)
        .map(|p| manifest_dir.join(p))
        .collect();
    // Order matters: protoc names each input after the first include that contains it, and
    // the vendored files must be known as `google/...`, the name `tabula/*.proto` import.
    let includes = [
        manifest_dir.join("vendor/googleapis"),
        manifest_dir.clone(),
        wkt_include,
    ];

    // The row data every read returns: `bytes::Bytes` instead of `Vec<u8>`, so a decoded row
    // points into the received buffer and a tablet server encodes its cells' `Bytes` without
    // copying them into vectors first.
    config.bytes([
        ".google.bigtable.v2.Row",
        ".google.bigtable.v2.Column",
        ".google.bigtable.v2.Cell",
        // Encoded rows, sent as a tablet server wrote them and decoded where they point.
        ".tabula.tablet.v1.ReadRowsResponse.rows",
        ".tabula.tablet.v1.EncodedRows.rows",
    ]);

    // Every client and server encodes with `codec::SizedCodec` (see there).
    tonic_prost_build::configure()
        .codec_path("crate::codec::SizedCodec")
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &protos, &includes)?;

    // Each file as well as the directories: a directory's own mtime does not move when a file
    // in it is edited in place.
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    println!("cargo:rerun-if-changed=tabula");
    println!("cargo:rerun-if-changed=vendor");
    Ok(())
}
