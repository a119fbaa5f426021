//! `DIR/cluster.json`: what a running `tabula local` is made of, for people and scripts, and
//! the lock cell's shape (base port, node count) for the next start on the same directory.
//!
//! ```json
//! { "base_port": 7101, "lock_nodes": 3, "lock": "127.0.0.1:7101,...", "ready": true,
//!   "gateway": "127.0.0.1:8086",
//!   "processes": [ { "name": "lock-1", "role": "lock", "id": "1", "address": "127.0.0.1:7101",
//!                    "pid": 4242, "metrics": null, "log": "DIR/logs/lock-1.log" }, ... ] }
//! ```
//! `pid` is null while a process is down (between an unexpected exit and its restart);
//! `gateway` (the Cloud Bigtable API, what `BIGTABLE_EMULATOR_HOST` names) is null with
//! `--no-gateway`, and the gateway is also a process of role `gateway`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

use super::plan::{Shape, Spec, gateway_addr, lock_addrs};

/// The file's path in `dir`.
pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join("cluster.json")
}

/// The document for `shape` and its processes (`pid` None while down).
pub(crate) fn document(shape: &Shape, procs: &[(&Spec, Option<u32>)], ready: bool) -> Value {
    let processes: Vec<Value> = procs
        .iter()
        .map(|(spec, pid)| {
            json!({
                "name": spec.name,
                "role": spec.role.name(),
                "id": spec.id,
                "address": spec.addr,
                "pid": pid,
                "metrics": spec.metrics,
                "log": spec.log.display().to_string(),
            })
        })
        .collect();
    json!({
        "base_port": shape.base_port,
        "lock_nodes": shape.lock_nodes,
        "lock": lock_addrs(shape).join(","),
        "ready": ready,
        "gateway": gateway_addr(shape),
        "processes": processes,
    })
}

/// Replaces the file atomically (write a temporary file, rename).
pub(crate) fn write(dir: &Path, doc: &Value) -> anyhow::Result<()> {
    let target = path(dir);
    let tmp = dir.join("cluster.json.tmp");
    let text = serde_json::to_string_pretty(doc).context("encode cluster.json")?;
    std::fs::write(&tmp, text + "\n").with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &target).with_context(|| format!("replace {}", target.display()))
}

/// The lock cell's `(base_port, lock_nodes)` saved by an earlier run, if the directory has been
/// used before.
pub(crate) fn saved_cell(dir: &Path) -> anyhow::Result<Option<(u16, u32)>> {
    let target = path(dir);
    let text = match std::fs::read_to_string(&target) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {}", target.display())),
    };
    let doc: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", target.display()))?;
    let port = doc["base_port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok());
    let nodes = doc["lock_nodes"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok());
    match (port, nodes) {
        (Some(p), Some(n)) => Ok(Some((p, n))),
        _ => anyhow::bail!(
            "{} has no base_port and lock_nodes; remove it only if the directory's lock cell \
             is gone too",
            target.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::plan::processes;
    use super::*;

    #[test]
    fn the_saved_cell_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(saved_cell(dir.path()).unwrap(), None);
        let shape = Shape {
            base_port: 9001,
            lock_nodes: 5,
            tablet_servers: 1,
            masters: 1,
            gateway_port: Some(9039),
        };
        let specs = processes(dir.path(), &shape, 1);
        let procs: Vec<(&Spec, Option<u32>)> = specs.iter().map(|s| (s, Some(7))).collect();
        let doc = document(&shape, &procs, true);
        write(dir.path(), &doc).unwrap();
        assert_eq!(saved_cell(dir.path()).unwrap(), Some((9001, 5)));
        let back: Value =
            serde_json::from_str(&std::fs::read_to_string(path(dir.path())).unwrap()).unwrap();
        assert_eq!(back["processes"].as_array().unwrap().len(), 8);
        assert_eq!(back["gateway"], "127.0.0.1:9039");
        assert_eq!(back["processes"][7]["role"], "gateway");
        assert_eq!(back["processes"][0]["metrics"], Value::Null);
        assert_eq!(back["processes"][5]["role"], "tablet");
        std::fs::write(path(dir.path()), "{}").unwrap();
        assert!(saved_cell(dir.path()).is_err());
    }
}
