//! The pure part of `tabula local`: which processes, on which ports, with which arguments.
//!
//! Port layout from the base port `B`: lock node `n` (1-based) on `B + n - 1`, tablet server
//! `i` on `B + 10 + i - 1` with its metrics on `B + 20 + i - 1`, master `i` on `B + 30 + i - 1`,
//! and the Cloud Bigtable gateway on `B + 39` — the last port of the block, which no role uses
//! (at most nine processes per role leave `B + 9`, `B + 19`, `B + 29` and `B + 39` free) —
//! except with the default base port, where it is 8086, the port the Cloud Bigtable emulator's
//! users expect in `BIGTABLE_EMULATOR_HOST`. Several clusters on different base ports thus never
//! share a gateway port; `--gateway-port` picks another, `--no-gateway` runs none.
//! A restart on the same directory takes `B` and the lock-node count from `cluster.json`, so
//! every lock node comes back with the same id, port and peers (its Raft membership names
//! them). Tablet-server and master ids carry the run's start time and a per-run start counter:
//! an id is never reused, not after a crash and not in a later run (a restarted master with
//! its old id could not announce itself while its dead session's announcement lasted).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most lock nodes, tablet servers or masters: each role has a block of ten ports.
pub(crate) const MAX_PER_ROLE: u32 = 9;
/// Ports used above the base port.
pub(crate) const PORT_SPAN: u16 = 40;
/// The base port when none is given (and none is saved).
pub(crate) const DEFAULT_BASE_PORT: u16 = 7101;
/// The gateway's port with [`DEFAULT_BASE_PORT`]: the Cloud Bigtable emulator's usual port.
pub(crate) const DEFAULT_GATEWAY_PORT: u16 = 8086;
/// The gateway's offset from any other base port: the block's last port, which no role uses.
const GATEWAY_OFFSET: u16 = PORT_SPAN - 1;
/// The lock-service session TTL the tablet servers are started with (a server paused longer
/// than this loses its session and its tablets).
pub(crate) const TABLET_SESSION_TTL: Duration = Duration::from_secs(10);

/// A server role of the cluster, in start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    Lock,
    Tablet,
    Master,
    /// The Cloud Bigtable gateway (`tabula gateway`): no state, never an agitator's victim.
    Gateway,
}

impl Role {
    /// Its name in `cluster.json`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Lock => "lock",
            Role::Tablet => "tablet",
            Role::Master => "master",
            Role::Gateway => "gateway",
        }
    }
}

/// The shape of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) base_port: u16,
    pub(crate) lock_nodes: u32,
    pub(crate) tablet_servers: u32,
    pub(crate) masters: u32,
    /// The gateway's port; `None`: no gateway.
    pub(crate) gateway_port: Option<u16>,
}

/// What the flags say about the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GatewayFlag {
    /// `--no-gateway`.
    Off,
    /// Neither flag: the default port for the base port ([`default_gateway_port`]).
    Default,
    /// `--gateway-port PORT`.
    Port(u16),
}

/// The gateway's port when none is given: 8086 with the default base port, else the last
/// port of the cluster's own block (see the module doc).
pub(crate) fn default_gateway_port(base_port: u16) -> u16 {
    if base_port == DEFAULT_BASE_PORT {
        DEFAULT_GATEWAY_PORT
    } else {
        base_port.saturating_add(GATEWAY_OFFSET)
    }
}

/// Checks a shape; the message is a usage error.
pub(crate) fn validate(shape: &Shape) -> Result<(), String> {
    let n = shape.lock_nodes;
    if n.is_multiple_of(2) || n > MAX_PER_ROLE {
        return Err(format!(
            "--lock-nodes {n}: a lock-service cell needs an odd number of nodes, 1 to \
             {MAX_PER_ROLE} (1, 3 or 5 are usual), so that a majority survives a failure"
        ));
    }
    for (flag, count) in [
        ("--tablet-servers", shape.tablet_servers),
        ("--masters", shape.masters),
    ] {
        if count == 0 || count > MAX_PER_ROLE {
            return Err(format!("{flag} {count}: must be 1 to {MAX_PER_ROLE}"));
        }
    }
    if shape.base_port == 0 || shape.base_port.checked_add(PORT_SPAN).is_none() {
        return Err(format!(
            "--base-port {}: must be 1 to {} (the cluster uses the {PORT_SPAN} ports above it)",
            shape.base_port,
            u16::MAX - PORT_SPAN
        ));
    }
    if let Some(gateway) = shape.gateway_port {
        if gateway == 0 {
            return Err("--gateway-port 0: must be 1 to 65535".to_owned());
        }
        let taken = server_ports(shape).into_iter().find(|(_, p)| *p == gateway);
        if let Some((who, _)) = taken {
            return Err(format!(
                "--gateway-port {gateway}: {who} uses that port (the cluster's block runs from \
                 {} to {}; {} is free)",
                shape.base_port,
                shape.base_port + PORT_SPAN - 1,
                shape.base_port + GATEWAY_OFFSET
            ));
        }
    }
    Ok(())
}

/// Every port the lock nodes, tablet servers (and their metrics) and masters of `shape` use,
/// each with who uses it.
fn server_ports(shape: &Shape) -> Vec<(String, u16)> {
    let base = shape.base_port;
    let role = |count: u32, block: u16, what: &'static str| {
        (0..count).map(move |i| (format!("{what} {}", i + 1), port(base, block, i)))
    };
    role(shape.lock_nodes, 0, "lock node")
        .chain(role(shape.tablet_servers, 1, "tablet server"))
        .chain(role(
            shape.tablet_servers,
            2,
            "the metrics of tablet server",
        ))
        .chain(role(shape.masters, 3, "master"))
        .collect()
}

/// One process to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) role: Role,
    /// Its name among the cluster's processes (`lock-1`, `ts-2`, `m-1`); names its log.
    pub(crate) name: String,
    /// Its number among its role's processes, from 1.
    pub(crate) n: u32,
    /// Its id in the system (lock node id, server id, master id).
    pub(crate) id: String,
    pub(crate) addr: String,
    pub(crate) metrics: Option<String>,
    pub(crate) log: PathBuf,
    /// The arguments of the `tabula` binary.
    pub(crate) args: Vec<String>,
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// `port(base, block, i)`: the `i`-th (0-based) port of ten-port block `block`.
fn port(base: u16, block: u16, i: u32) -> u16 {
    // validate() bounds base + 39 and i < 10.
    base + block * 10 + u16::try_from(i).unwrap_or(0)
}

/// The lock cell's addresses, in node-id order.
pub(crate) fn lock_addrs(shape: &Shape) -> Vec<String> {
    (0..shape.lock_nodes)
        .map(|i| addr(port(shape.base_port, 0, i)))
        .collect()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("logs").join(format!("{name}.log"))
}

/// Lock node `n` (1-based).
pub(crate) fn lock_node(dir: &Path, shape: &Shape, n: u32) -> Spec {
    let addrs = lock_addrs(shape);
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let me = addr(port(shape.base_port, 0, n - 1));
    let name = format!("lock-{n}");
    let data_dir = dir.join(&name).display().to_string();
    Spec {
        role: Role::Lock,
        n,
        id: n.to_string(),
        addr: me.clone(),
        metrics: None,
        log: log_path(dir, &name),
        args: strings(&[
            "lock",
            "serve",
            "--id",
            &n.to_string(),
            "--listen",
            &me,
            "--peers",
            &peers,
            "--data-dir",
            &data_dir,
        ]),
        name,
    }
}

/// Tablet server `n` (1-based), started for the `start`-th time in the run that began at
/// `run_unix_ms`.
pub(crate) fn tablet_server(
    dir: &Path,
    shape: &Shape,
    n: u32,
    run_unix_ms: u64,
    start: u32,
) -> Spec {
    let me = addr(port(shape.base_port, 1, n - 1));
    let metrics = addr(port(shape.base_port, 2, n - 1));
    let name = format!("ts-{n}");
    let id = format!("ts-{n}-{run_unix_ms}-{start}");
    let storage = dir.join("storage").display().to_string();
    Spec {
        role: Role::Tablet,
        n,
        addr: me.clone(),
        metrics: Some(metrics.clone()),
        log: log_path(dir, &name),
        args: strings(&[
            "tablet",
            "serve",
            "--lock",
            &lock_addrs(shape).join(","),
            "--listen",
            &me,
            "--storage-root",
            &storage,
            "--server-id",
            &id,
            "--metrics",
            &metrics,
            "--session-ttl-ms",
            &TABLET_SESSION_TTL.as_millis().to_string(),
        ]),
        id,
        name,
    }
}

/// Master `n` (1-based), started for the `start`-th time in the run that began at
/// `run_unix_ms`.
pub(crate) fn master(dir: &Path, shape: &Shape, n: u32, run_unix_ms: u64, start: u32) -> Spec {
    let me = addr(port(shape.base_port, 3, n - 1));
    let name = format!("m-{n}");
    let id = format!("m-{n}-{run_unix_ms}-{start}");
    let storage = dir.join("storage").display().to_string();
    Spec {
        role: Role::Master,
        n,
        addr: me.clone(),
        metrics: None,
        log: log_path(dir, &name),
        args: strings(&[
            "master",
            "serve",
            "--lock",
            &lock_addrs(shape).join(","),
            "--listen",
            &me,
            "--storage-root",
            &storage,
            "--master-id",
            &id,
        ]),
        id,
        name,
    }
}

/// The gateway's address, if the cluster runs one.
pub(crate) fn gateway_addr(shape: &Shape) -> Option<String> {
    shape.gateway_port.map(addr)
}

/// The Cloud Bigtable gateway on `port`. It keeps no state, so a restart is the same process
/// again (same name, id and address).
pub(crate) fn gateway(dir: &Path, shape: &Shape, port: u16) -> Spec {
    let me = addr(port);
    let name = "gateway".to_owned();
    Spec {
        role: Role::Gateway,
        n: 1,
        id: name.clone(),
        addr: me.clone(),
        metrics: None,
        log: log_path(dir, &name),
        args: strings(&[
            "gateway",
            "--lock",
            &lock_addrs(shape).join(","),
            "--listen",
            &me,
        ]),
        name,
    }
}

/// Every process of a fresh run, in start order: lock nodes, tablet servers, masters, the
/// gateway (if any).
pub(crate) fn processes(dir: &Path, shape: &Shape, run_unix_ms: u64) -> Vec<Spec> {
    let locks = (1..=shape.lock_nodes).map(|n| lock_node(dir, shape, n));
    let tablets = (1..=shape.tablet_servers).map(|n| tablet_server(dir, shape, n, run_unix_ms, 0));
    let masters = (1..=shape.masters).map(|n| master(dir, shape, n, run_unix_ms, 0));
    let gateway = shape.gateway_port.map(|p| gateway(dir, shape, p));
    locks.chain(tablets).chain(masters).chain(gateway).collect()
}

/// The shape to run: the flags, except that a directory used before keeps its base port and
/// lock-node count (`saved`, from its `cluster.json`). A lock-node count given on the command
/// line that differs from the saved one is an error. The gateway's default port follows the
/// base port, so a restart on the same directory brings the gateway back on its port.
pub(crate) fn resolve(
    base_port: Option<u16>,
    lock_nodes: Option<u32>,
    tablet_servers: u32,
    masters: u32,
    gateway: GatewayFlag,
    saved: Option<(u16, u32)>,
) -> Result<Shape, String> {
    let (base_port, lock_nodes) = match saved {
        Some((saved_port, saved_nodes)) => {
            if let Some(n) = lock_nodes
                && n != saved_nodes
            {
                return Err(format!(
                    "--lock-nodes {n}: this directory holds a cell of {saved_nodes} lock nodes"
                ));
            }
            if let Some(p) = base_port
                && p != saved_port
            {
                return Err(format!(
                    "--base-port {p}: this directory's lock cell runs from port {saved_port} \
                     (its nodes' addresses are part of its membership)"
                ));
            }
            (saved_port, saved_nodes)
        }
        None => (
            base_port.unwrap_or(DEFAULT_BASE_PORT),
            lock_nodes.unwrap_or(3),
        ),
    };
    let gateway_port = match gateway {
        GatewayFlag::Off => None,
        GatewayFlag::Default => Some(default_gateway_port(base_port)),
        GatewayFlag::Port(p) => Some(p),
    };
    let shape = Shape {
        base_port,
        lock_nodes,
        tablet_servers,
        masters,
        gateway_port,
    };
    validate(&shape)?;
    Ok(shape)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn shape() -> Shape {
        Shape {
            base_port: 7101,
            lock_nodes: 3,
            tablet_servers: 3,
            masters: 2,
            gateway_port: Some(8086),
        }
    }

    #[test]
    fn the_default_cluster_has_fixed_ports_and_peers() {
        let dir = Path::new("/d");
        let procs = processes(dir, &shape(), 1234);
        let names: Vec<&str> = procs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "lock-1", "lock-2", "lock-3", "ts-1", "ts-2", "ts-3", "m-1", "m-2", "gateway"
            ]
        );
        assert_eq!(
            lock_addrs(&shape()),
            ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]
        );
        assert_eq!(
            procs[1].args,
            [
                "lock",
                "serve",
                "--id",
                "2",
                "--listen",
                "127.0.0.1:7102",
                "--peers",
                "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103",
                "--data-dir",
                "/d/lock-2"
            ]
        );
        assert_eq!(procs[4].addr, "127.0.0.1:7112");
        assert_eq!(procs[4].metrics.as_deref(), Some("127.0.0.1:7122"));
        assert_eq!(procs[4].id, "ts-2-1234-0");
        assert_eq!(procs[4].log, Path::new("/d/logs/ts-2.log"));
        assert!(
            procs[4]
                .args
                .windows(2)
                .any(|w| w == ["--session-ttl-ms", "10000"])
        );
        assert!(
            procs[4]
                .args
                .windows(2)
                .any(|w| w == ["--storage-root", "/d/storage"])
        );
        assert_eq!(procs[7].addr, "127.0.0.1:7132");
        assert_eq!(procs[7].id, "m-2-1234-0");
        assert!(procs[7].args.windows(2).any(|w| w[0] == "--lock"
            && w[1] == "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"));
        assert_eq!(procs[8].role, Role::Gateway);
        assert_eq!(procs[8].addr, "127.0.0.1:8086");
        assert_eq!(
            procs[8].args,
            [
                "gateway",
                "--lock",
                "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103",
                "--listen",
                "127.0.0.1:8086"
            ]
        );
        let mut addrs: Vec<&str> = procs.iter().map(|p| p.addr.as_str()).collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), procs.len(), "two processes share a port");
    }

    #[test]
    fn a_restarted_tablet_server_or_master_never_reuses_an_id() {
        let dir = Path::new("/d");
        let a = tablet_server(dir, &shape(), 1, 1000, 0);
        let b = tablet_server(dir, &shape(), 1, 1000, 1);
        let c = tablet_server(dir, &shape(), 1, 2000, 0);
        assert_ne!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(a.addr, b.addr);
        let a = master(dir, &shape(), 2, 1000, 0);
        let b = master(dir, &shape(), 2, 1000, 1);
        let c = master(dir, &shape(), 2, 2000, 0);
        assert_ne!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!((a.addr.as_str(), a.name.as_str()), (b.addr.as_str(), "m-2"));
        assert!(
            b.args
                .windows(2)
                .any(|w| w == ["--master-id", "m-2-1000-1"])
        );
    }

    #[test]
    fn a_cell_needs_an_odd_number_of_nodes() {
        for n in [1, 3, 5, 9] {
            validate(&Shape {
                lock_nodes: n,
                ..shape()
            })
            .unwrap();
        }
        for n in [0, 2, 4, 11] {
            let err = validate(&Shape {
                lock_nodes: n,
                ..shape()
            })
            .unwrap_err();
            assert!(err.contains("odd number"), "{err}");
        }
        assert!(
            validate(&Shape {
                masters: 0,
                ..shape()
            })
            .is_err()
        );
        assert!(
            validate(&Shape {
                base_port: 65_500,
                ..shape()
            })
            .is_err()
        );
    }

    #[test]
    fn a_used_directory_keeps_its_cell() {
        let on = GatewayFlag::Default;
        let s = resolve(None, None, 2, 1, on, Some((9000, 5))).unwrap();
        assert_eq!((s.base_port, s.lock_nodes, s.tablet_servers), (9000, 5, 2));
        assert!(resolve(None, Some(3), 2, 1, on, Some((9000, 5))).is_err());
        assert!(resolve(Some(7101), None, 2, 1, on, Some((9000, 5))).is_err());
        assert_eq!(
            resolve(Some(9000), Some(5), 3, 2, on, Some((9000, 5))).unwrap(),
            Shape {
                base_port: 9000,
                lock_nodes: 5,
                tablet_servers: 3,
                masters: 2,
                gateway_port: Some(9039),
            }
        );
        let fresh = resolve(None, None, 3, 2, on, None).unwrap();
        assert_eq!(fresh, shape());
        // A restart of the default directory brings the gateway back on 8086.
        let again = resolve(None, None, 3, 2, on, Some((7101, 3))).unwrap();
        assert_eq!(again.gateway_port, Some(8086));
    }

    #[test]
    fn the_gateway_port_follows_the_base_port_and_never_collides() {
        assert_eq!(default_gateway_port(DEFAULT_BASE_PORT), 8086);
        assert_eq!(default_gateway_port(12_000), 12_039);
        // The largest cluster at any base port leaves the gateway's port free.
        for base in [1, 7101, 12_000, u16::MAX - PORT_SPAN] {
            let shape = Shape {
                base_port: base,
                lock_nodes: MAX_PER_ROLE,
                tablet_servers: MAX_PER_ROLE,
                masters: MAX_PER_ROLE,
                gateway_port: Some(default_gateway_port(base)),
            };
            validate(&shape).unwrap();
            let procs = processes(Path::new("/d"), &shape, 1);
            let mut ports: Vec<&str> = procs
                .iter()
                .flat_map(|p| std::iter::once(p.addr.as_str()).chain(p.metrics.as_deref()))
                .collect();
            let n = ports.len();
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(ports.len(), n, "two processes share a port at base {base}");
            let gateway = procs.iter().find(|p| p.role == Role::Gateway).unwrap();
            if base != DEFAULT_BASE_PORT {
                let port: u16 = gateway.addr.rsplit(':').next().unwrap().parse().unwrap();
                assert!(
                    (base..base + PORT_SPAN).contains(&port),
                    "{port} outside the block"
                );
            }
        }
        // Two clusters on neighbouring blocks get different gateways.
        assert_ne!(default_gateway_port(12_000), default_gateway_port(12_040));
        let off = resolve(Some(12_000), None, 3, 2, GatewayFlag::Off, None).unwrap();
        assert_eq!(off.gateway_port, None);
        assert!(
            processes(Path::new("/d"), &off, 1)
                .iter()
                .all(|p| p.role != Role::Gateway)
        );
        let chosen = resolve(Some(12_000), None, 3, 2, GatewayFlag::Port(9999), None).unwrap();
        assert_eq!(gateway_addr(&chosen).as_deref(), Some("127.0.0.1:9999"));
        let clash = resolve(Some(12_000), None, 3, 2, GatewayFlag::Port(12_031), None);
        assert!(clash.unwrap_err().contains("master 2"));
        let clash = resolve(Some(12_000), None, 3, 2, GatewayFlag::Port(12_021), None);
        assert!(clash.unwrap_err().contains("metrics"));
        assert!(resolve(Some(12_000), None, 3, 2, GatewayFlag::Port(0), None).is_err());
    }
}
