//! One client of the register workload: random reads, writes and compare-and-sets on a few
//! keys, each recorded in a shared [`Recorder`] around the call, until a time on the
//! recorder's clock or a stop flag.
//!
//! Written values are unique (`<client>-<counter>`), so a read tells which write it saw. A
//! compare-and-set expects the last value this client read from that key (absent if it has
//! read nothing yet) and sets a fresh value, so some succeed and some fail under contention.
//! Between calls the client pauses a random time up to `max_pause`, which sets the load.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::history::{Call, Return};
use super::recorder::Recorder;
use super::row_register::{Outcome, RowRegister};

/// What one client does.
#[derive(Debug, Clone)]
pub struct ClientPlan {
    /// Its id in the history.
    pub client: u32,
    /// The registers' keys (rows).
    pub keys: Vec<Bytes>,
    /// When to stop at the latest, on the recorder's clock (the call in flight then is
    /// finished).
    pub until: Duration,
    /// Set to stop earlier (checked between calls).
    pub stop: Arc<AtomicBool>,
    /// Longest pause between two calls.
    pub max_pause: Duration,
    /// Percent of calls that are reads.
    pub read_percent: u32,
    /// Percent of calls that are writes (the rest are compare-and-sets).
    pub write_percent: u32,
    /// Seeds its random choices.
    pub seed: u64,
}

/// How many error messages a client keeps as examples.
const ERROR_SAMPLES: usize = 5;

/// How one client's calls ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Calls that answered.
    pub ok: u64,
    /// Calls of unknown outcome.
    pub unknown: u64,
    /// Calls that certainly failed (dropped from the history).
    pub failed: u64,
    /// The first few failures, as `call: error`.
    pub error_samples: Vec<String>,
}

impl ClientStats {
    fn sample(&mut self, call: &Call, e: &tabula_common::Error) {
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(format!("{call}: {e}"));
        }
    }
}

/// Runs `plan` against `register`, recording every call in `recorder`.
pub async fn run_client(
    register: RowRegister,
    recorder: Arc<Recorder>,
    plan: ClientPlan,
) -> ClientStats {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut last_read: HashMap<Bytes, Option<Bytes>> = HashMap::new();
    let mut counter = 0u64;
    let mut stats = ClientStats::default();
    let running = || recorder.now() < plan.until && !plan.stop.load(Ordering::Relaxed);
    while running() && !plan.keys.is_empty() {
        let key = plan.keys[rng.random_range(0..plan.keys.len())].clone();
        let dice = rng.random_range(0..100u32);
        let call = if dice < plan.read_percent {
            Call::Read
        } else {
            counter += 1;
            let value = Bytes::from(format!("{}-{counter}", plan.client));
            if dice < plan.read_percent + plan.write_percent {
                Call::Write(value)
            } else {
                Call::CompareAndSet {
                    expect: last_read.get(&key).cloned().flatten(),
                    new: value,
                }
            }
        };
        let Some(inv) = recorder.invoke(plan.client, key.clone(), call.clone()) else {
            break;
        };
        let ended = match &call {
            Call::Read => match register.read(&key).await {
                Outcome::Ok(v) => {
                    last_read.insert(key.clone(), v.clone());
                    Outcome::Ok(Return::Read(v))
                }
                Outcome::Unknown(e) => Outcome::Unknown(e),
                Outcome::Failed(e) => Outcome::Failed(e),
            },
            Call::Write(v) => match register.write(&key, v).await {
                Outcome::Ok(()) => Outcome::Ok(Return::Write),
                Outcome::Unknown(e) => Outcome::Unknown(e),
                Outcome::Failed(e) => Outcome::Failed(e),
            },
            Call::CompareAndSet { expect, new } => {
                match register.compare_and_set(&key, expect.as_ref(), new).await {
                    Outcome::Ok(m) => Outcome::Ok(Return::CompareAndSet(m)),
                    Outcome::Unknown(e) => Outcome::Unknown(e),
                    Outcome::Failed(e) => Outcome::Failed(e),
                }
            }
        };
        match ended {
            Outcome::Ok(ret) => {
                stats.ok += 1;
                recorder.complete(inv, ret);
            }
            Outcome::Unknown(e) => {
                stats.unknown += 1;
                stats.sample(&call, &e);
                recorder.unknown(inv);
            }
            Outcome::Failed(e) => {
                stats.failed += 1;
                stats.sample(&call, &e);
                recorder.fail(inv);
            }
        }
        let pause = rng.random_range(Duration::ZERO..=plan.max_pause);
        tokio::time::sleep(pause).await;
    }
    stats
}
