//! The agitator's loop, an owned task of `tabula local` started once the cluster is ready.
//!
//! Every tick it (1) notices processes that came back (a `restart` entry for each, and the
//! end of a hold), (2) resumes a paused tablet server whose pause is over, (3) fires the
//! faults that are due, longest overdue first: it gathers the facts a kind needs, lets
//! `choose` pick the target and asks the supervisor for the signal; a kind that has to wait
//! keeps its roles from the kinds after it in that look (`choose::Reservations`). Admin operations run as one child task at a time, so a
//! slow split does not delay a kill. A process the agitator took away stays *held* — killed
//! until it is back and has had [`RECOVERY`] to rejoin and its role's quiet time after a kill
//! has passed (`choose::quiet_after_kill`), paused until resumed and then until it restarted
//! or [`SETTLE`] passed — and no other process of its role is taken meanwhile.
//!
//! Stopping ([`Agitation::stop`]) sets the stop flag: the loop fires nothing more, the admin
//! task answers at once (its operation's outcome unknown), the paused server is resumed, and
//! the task ends. The supervisor serves the resume while it waits, and refuses any other
//! signal from then on.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tabula_client::Client;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::super::control::{ProcView, REQUEST_QUEUE, Signal, SignalError, SignalRequest};
use super::super::unix_ms;
use super::choose::{
    Choice, Leases, Picture, Reservations, choose, quiet_after_kill, role_busy, role_of,
};
use super::faults::{admin_fault, cluster_now, lock_leader_now, request_signal, stopped};
use super::log::{self, Entry, FaultLog};
use super::schedule::Schedule;
use super::spec::{AgitateSpec, Kind};

/// How often the loop looks at the cluster.
const TICK: Duration = Duration::from_millis(200);
/// How long a killed process is still held after it is back, to rejoin (a lock node to catch
/// up, a master to campaign, a tablet server to register).
pub(crate) const RECOVERY: Duration = Duration::from_secs(5);
/// How long a resumed tablet server is held at most: it should find its session expired,
/// stop and be restarted meanwhile.
pub(crate) const SETTLE: Duration = Duration::from_secs(20);
/// Longest an admin operation may take before it is logged as unanswered.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What to agitate and how.
#[derive(Debug, Clone)]
pub(crate) struct AgitateConfig {
    pub(crate) spec: AgitateSpec,
    /// Seeds every random choice (jitter, targets, admin operations).
    pub(crate) seed: u64,
    /// How long a killed process stays down before the supervisor starts it again.
    pub(crate) restart_after: Duration,
    /// How long a paused tablet server stays stopped: past its session TTL.
    pub(crate) pause_for: Duration,
    /// The cluster's session lengths (how long it takes to heal after a kill).
    pub(crate) leases: Leases,
}

/// The supervisor's handle on the running agitator.
pub(crate) struct Agitation {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    requests: mpsc::Receiver<SignalRequest>,
    views: watch::Sender<Vec<ProcView>>,
}

impl Agitation {
    /// Starts the agitator on the cluster whose lock cell is `lock_addrs`, logging to
    /// `dir/agitator.jsonl`; `views` are the processes now.
    pub(crate) async fn start(
        config: AgitateConfig,
        dir: &Path,
        lock_addrs: &[String],
        views: Vec<ProcView>,
    ) -> anyhow::Result<Agitation> {
        let log = FaultLog::open(dir)?;
        // Client::connect dials nothing; it only builds the client.
        let client = Client::connect(lock_addrs)
            .await
            .context("a client for the agitator")?;
        let (stop, stop_rx) = watch::channel(false);
        let (views_tx, views_rx) = watch::channel(views);
        let (requests_tx, requests) = mpsc::channel(REQUEST_QUEUE);
        eprintln!(
            "agitator: seed {} (replay with --agitate-seed {}); faults {}; log {}",
            config.seed,
            config.seed,
            config.spec,
            dir.join(log::FILE_NAME).display()
        );
        let mut rng = StdRng::seed_from_u64(config.seed);
        let schedule = Schedule::new(&config.spec, Instant::now(), &mut rng);
        let agitator = Agitator {
            config,
            log,
            rng,
            schedule,
            client,
            views: views_rx,
            requests: requests_tx,
            stop: stop_rx,
            held: Vec::new(),
            starts: HashMap::new(),
            waiting: HashMap::new(),
            admin: None,
        };
        let task = tokio::spawn(agitator.run());
        Ok(Agitation {
            stop,
            task,
            requests,
            views: views_tx,
        })
    }

    /// Publishes the processes as they are now (after every supervisor tick).
    pub(crate) fn publish(&self, views: Vec<ProcView>) {
        self.views.send_if_modified(|old| {
            if *old == views {
                false
            } else {
                *old = views;
                true
            }
        });
    }

    /// The agitator's next signal request. Cancel-safe; pending forever once it is gone.
    pub(crate) async fn next_request(&mut self) -> SignalRequest {
        match self.requests.recv().await {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }

    /// Stops the agitator and waits for its task to end, answering its last requests (a
    /// resume) with `serve`, which must refuse every fault.
    pub(crate) async fn stop(mut self, mut serve: impl FnMut(SignalRequest)) {
        self.stop.send_replace(true);
        let mut task = self.task;
        loop {
            tokio::select! {
                ended = &mut task => {
                    if let Err(e) = ended {
                        eprintln!("agitator: the task failed: {e}");
                    }
                    break;
                }
                Some(request) = self.requests.recv() => serve(request),
            }
        }
        eprintln!("agitator: stopped");
    }
}

/// A process the agitator took away.
#[derive(Debug, Clone)]
struct Held {
    name: String,
    /// Its start number when it was taken.
    start: u32,
    state: HeldState,
}

#[derive(Debug, Clone, Copy)]
enum HeldState {
    /// SIGKILLed; not back yet; held at least until `quiet_until`.
    Killed { quiet_until: Instant },
    /// Back; held until then to rejoin.
    Recovering { until: Instant },
    /// SIGSTOPped until then.
    Paused { until: Instant },
    /// SIGCONTed; held until it restarts or until then.
    Resumed { until: Instant },
}

/// What became of a due fault.
enum Fired {
    Yes,
    /// It waits (its role busy, a fact missing); retried at the next look.
    Waits,
    /// The supervisor is stopping.
    Stopping,
}

struct Agitator {
    config: AgitateConfig,
    log: FaultLog,
    rng: StdRng,
    schedule: Schedule,
    client: Client,
    views: watch::Receiver<Vec<ProcView>>,
    requests: mpsc::Sender<SignalRequest>,
    stop: watch::Receiver<bool>,
    held: Vec<Held>,
    /// The start number last seen of every process, to notice restarts.
    starts: HashMap<String, u32>,
    /// Kinds that had to wait, with the reason last printed (printed once per reason).
    waiting: HashMap<Kind, String>,
    admin: Option<JoinHandle<Entry>>,
}

/// Awaits the admin task, if there is one; pending otherwise.
async fn admin_done(admin: &mut Option<JoinHandle<Entry>>) -> Entry {
    let Some(task) = admin.as_mut() else {
        return std::future::pending().await;
    };
    let entry = match task.await {
        Ok(entry) => entry,
        Err(e) => Entry::ok(unix_ms(), "admin", "-", None, "choose").failed(e.to_string()),
    };
    *admin = None;
    entry
}

impl Agitator {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for v in self.views.borrow().iter() {
            self.starts.insert(v.name.clone(), v.start);
        }
        loop {
            tokio::select! {
                () = stopped(&mut self.stop) => break,
                entry = admin_done(&mut self.admin) => self.log.record(&entry),
                _ = tick.tick() => {}
            }
            if self.stopping() {
                break;
            }
            if !self.step(Instant::now()).await {
                break;
            }
        }
        self.finish().await;
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// One look at the cluster; answers false once the supervisor is stopping.
    async fn step(&mut self, now: Instant) -> bool {
        self.notice_restarts(now);
        if !self.resume_due(now).await {
            return false;
        }
        let mut kept = Reservations::default();
        for kind in self.schedule.due(now) {
            if self.stopping() {
                return false;
            }
            if let Some(why) = kept.blocks(kind) {
                self.wait(kind, now, why);
                continue;
            }
            match self.fire(kind, now).await {
                Fired::Yes => {}
                Fired::Waits => kept.keep_for(kind),
                Fired::Stopping => return false,
            }
        }
        true
    }

    /// Logs every process that came back since the last look and releases what is held.
    fn notice_restarts(&mut self, now: Instant) {
        let views = self.views.borrow().clone();
        for v in &views {
            let last = self.starts.insert(v.name.clone(), v.start);
            if v.pid.is_some() && last.is_some_and(|s| s < v.start) {
                let entry = Entry::ok(unix_ms(), "restart", &v.name, v.pid, "start")
                    .noted(format!("{} {}", v.role.name(), v.id));
                self.log.record(&entry);
            }
        }
        self.held.retain_mut(|h| {
            let Some(v) = views.iter().find(|v| v.name == h.name) else {
                return false;
            };
            let back = v.pid.is_some() && v.start > h.start;
            match h.state {
                HeldState::Killed { quiet_until } if back => {
                    h.state = HeldState::Recovering {
                        until: quiet_until.max(now + RECOVERY),
                    };
                    true
                }
                HeldState::Killed { .. } | HeldState::Paused { .. } => true,
                HeldState::Recovering { until } => now < until,
                // It exited and is back: it rejoins like a killed process.
                HeldState::Resumed { .. } if back => {
                    h.state = HeldState::Recovering {
                        until: now + RECOVERY,
                    };
                    true
                }
                HeldState::Resumed { until } => now < until,
            }
        });
    }

    /// Resumes the paused server whose pause is over; answers false once stopping.
    async fn resume_due(&mut self, now: Instant) -> bool {
        for i in 0..self.held.len() {
            let HeldState::Paused { until } = self.held[i].state else {
                continue;
            };
            if now < until {
                continue;
            }
            self.held[i].state = HeldState::Resumed {
                until: now + SETTLE,
            };
            let name = self.held[i].name.clone();
            self.resume(&name).await;
        }
        !self.stopping()
    }

    /// SIGCONTs `name` and logs it.
    async fn resume(&mut self, name: &str) {
        let entry = match request_signal(&self.requests, name, Signal::Continue).await {
            Ok(pid) => Entry::ok(unix_ms(), "resume", name, Some(pid), "cont"),
            Err(e) => Entry::ok(unix_ms(), "resume", name, None, "cont").failed(e.to_string()),
        };
        self.log.record(&entry);
    }

    /// Fires (or defers) a fault of `kind` that is due.
    async fn fire(&mut self, kind: Kind, now: Instant) -> Fired {
        if kind == Kind::Admin {
            if self.admin.is_some() {
                self.wait(
                    kind,
                    now,
                    "the previous admin operation still runs".to_owned(),
                );
            } else {
                let seed = self.rng.random();
                let task = admin_fault(self.client.clone(), seed, ADMIN_TIMEOUT, self.stop.clone());
                self.admin = Some(tokio::spawn(task));
                self.fired(kind, now);
                return Fired::Yes;
            }
            return Fired::Waits;
        }
        let views = self.views.borrow().clone();
        let held: Vec<String> = self.held.iter().map(|h| h.name.clone()).collect();
        // Asked before the facts, which cost RPCs: a busy role waits at once.
        if let Some(why) = role_of(kind).and_then(|r| role_busy(&views, &held, r)) {
            self.wait(kind, now, why);
            return Fired::Waits;
        }
        let cluster = match kind {
            Kind::Master | Kind::Tablet | Kind::Pause => cluster_now(&self.client).await,
            Kind::Lock | Kind::Admin => None,
        };
        let lock_leader = match kind {
            Kind::Lock => lock_leader_now(self.client.lock()).await,
            _ => None,
        };
        let paused = self.paused();
        let picture = Picture {
            procs: &views,
            held: &held,
            paused: &paused,
            active_master: cluster
                .as_ref()
                .map(|c| (c.master.0.as_str(), c.master.1.as_str())),
            unserved: cluster.as_ref().map(|c| c.unserved),
            lock_leader: lock_leader.as_ref().map(|(id, addr)| (*id, addr.as_str())),
        };
        let (target, signal, state) = match choose(kind, &picture, &mut self.rng) {
            Choice::Wait(why) => {
                self.wait(kind, now, why);
                return Fired::Waits;
            }
            Choice::Kill(t) => (
                t,
                Signal::Kill {
                    restart_after: self.config.restart_after,
                },
                HeldState::Killed {
                    quiet_until: now
                        + role_of(kind)
                            .map_or(Duration::ZERO, |r| quiet_after_kill(r, self.config.leases)),
                },
            ),
            Choice::Pause(t) => (
                t,
                Signal::Stop,
                HeldState::Paused {
                    until: now + self.config.pause_for,
                },
            ),
        };
        let start = views
            .iter()
            .find(|v| v.name == target.name)
            .map_or(0, |v| v.start);
        let action = if signal == Signal::Stop {
            "stop"
        } else {
            "kill"
        };
        let entry = Entry::ok(
            unix_ms(),
            kind.name(),
            &target.name,
            Some(target.pid),
            action,
        );
        let entry = match request_signal(&self.requests, &target.name, signal).await {
            Ok(_) => {
                self.held.push(Held {
                    name: target.name.clone(),
                    start,
                    state,
                });
                let role = role_of(kind).map_or("", |r| r.name());
                entry.noted(format!(
                    "{role}; next {kind} in about {:?}",
                    self.period(kind)
                ))
            }
            Err(SignalError::Stopping) => return Fired::Stopping,
            Err(e) => entry.failed(e.to_string()),
        };
        self.log.record(&entry);
        self.fired(kind, now);
        Fired::Yes
    }

    /// The tablet servers stopped by a pause now.
    fn paused(&self) -> Vec<String> {
        self.held
            .iter()
            .filter(|h| matches!(h.state, HeldState::Paused { .. }))
            .map(|h| h.name.clone())
            .collect()
    }

    fn period(&self, kind: Kind) -> Duration {
        self.config
            .spec
            .periods
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(Duration::ZERO, |(_, p)| *p)
    }

    fn fired(&mut self, kind: Kind, now: Instant) {
        self.waiting.remove(&kind);
        self.schedule.fired(kind, now, &mut self.rng);
    }

    /// `kind` could not fire now: retried soon; the reason is printed when it changes.
    fn wait(&mut self, kind: Kind, now: Instant, why: String) {
        if self.waiting.get(&kind) != Some(&why) {
            eprintln!("agitator: {kind} waits: {why}");
            self.waiting.insert(kind, why);
        }
        self.schedule.wait(kind, now);
    }

    /// After the stop: the admin task's entry, then the paused server resumed.
    async fn finish(&mut self) {
        // admin_done is pending without a task: only await it when there is one.
        if self.admin.is_some() {
            let entry = admin_done(&mut self.admin).await;
            self.log.record(&entry);
        }
        for name in self.paused() {
            self.resume(&name).await;
        }
    }
}
