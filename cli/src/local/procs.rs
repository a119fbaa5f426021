//! The child processes of `tabula local`: start one (its own process group, so a terminal's
//! Ctrl-C reaches only `tabula local`, which then stops the children in order; killed by the
//! kernel if `tabula local` dies), notice one that exited, signal one for the agitator, stop
//! them all.
//!
//! Children must be started from the thread that lives as long as `tabula local` (its main
//! thread): `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::control::{ProcView, Signal, SignalError};
use super::plan::{Role, Spec};

/// A running (or exited, not yet restarted) child.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) spec: Spec,
    pub(crate) child: Child,
    /// Which start of this process (0 the first) within this run.
    pub(crate) start: u32,
    /// When it was found to have exited (it awaits a restart).
    pub(crate) down_since: Option<Instant>,
    /// Set when the agitator killed it: how long it stays down before its restart.
    pub(crate) restart_after: Option<Duration>,
}

impl Proc {
    /// Its pid while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.down_since.is_none().then(|| self.child.id())
    }
}

/// Starts `exe` with `spec`'s arguments, stdout and stderr appended to `spec.log`.
pub(crate) fn spawn(exe: &Path, spec: Spec, start: u32) -> anyhow::Result<Proc> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .with_context(|| format!("open the log {}", spec.log.display()))?;
    let err: File = log.try_clone().context("duplicate a log file handle")?;
    let mut cmd = Command::new(exe);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info,openraft=warn");
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("start {} ({})", spec.name, exe.display()))?;
    Ok(Proc {
        spec,
        child,
        start,
        down_since: None,
        restart_after: None,
    })
}

/// How long a process stays down before its restart: longer for one that keeps failing.
fn restart_delay(start: u32) -> Duration {
    Duration::from_secs(u64::from(start.min(29)) + 1)
}

/// How a process's next start is made: `(old spec, next start number) -> spec`.
pub(crate) type Respawn<'a> = &'a dyn Fn(&Spec, u32) -> Spec;

/// Reports every child that exited since the last call (stderr: name, status, log) and, if
/// `restart` is given, starts it again once its restart delay has passed, with the arguments
/// `respawn(old spec, next start number)` answers. A child the agitator killed is restarted
/// after the delay it asked for, even without `restart`. Answers whether any process changed.
pub(crate) fn watch(exe: &Path, procs: &mut [Proc], respawn: Respawn<'_>, restart: bool) -> bool {
    let mut changed = false;
    for p in procs.iter_mut() {
        match p.down_since {
            None => {
                if let Ok(Some(status)) = p.child.try_wait() {
                    match p.restart_after {
                        Some(delay) => eprintln!(
                            "{} ({} {}) killed by the agitator: {status}; restart in {delay:?}",
                            p.spec.name,
                            p.spec.role.name(),
                            p.spec.id
                        ),
                        None => eprintln!(
                            "{} ({} {}) exited unexpectedly: {status}; log {}",
                            p.spec.name,
                            p.spec.role.name(),
                            p.spec.id,
                            p.spec.log.display()
                        ),
                    }
                    p.down_since = Some(Instant::now());
                    changed = true;
                }
            }
            Some(since) => {
                let delay = match p.restart_after {
                    Some(delay) => delay,
                    None if restart => restart_delay(p.start),
                    None => continue,
                };
                if since.elapsed() < delay {
                    continue;
                }
                let next = p.start + 1;
                match spawn(exe, respawn(&p.spec, next), next) {
                    Ok(new) => {
                        eprintln!(
                            "restarted {} as {} (pid {})",
                            new.spec.name,
                            new.spec.id,
                            new.child.id()
                        );
                        *p = new;
                        changed = true;
                    }
                    Err(e) => {
                        eprintln!("restart of {} failed: {e:#}", p.spec.name);
                        p.down_since = Some(Instant::now());
                        p.start = next;
                    }
                }
            }
        }
    }
    changed
}

/// What the agitator sees of the processes.
pub(crate) fn views(procs: &[Proc]) -> Vec<ProcView> {
    procs
        .iter()
        .map(|p| ProcView {
            name: p.spec.name.clone(),
            role: p.spec.role,
            id: p.spec.id.clone(),
            addr: p.spec.addr.clone(),
            pid: p.pid(),
            start: p.start,
        })
        .collect()
}

/// Sends the agitator's `signal` to the process named `name`, if it runs; answers its pid.
/// Once `stopping`, only `Continue` is sent. A kill also sets the process's restart delay.
pub(crate) fn apply(
    procs: &mut [Proc],
    name: &str,
    signal: Signal,
    stopping: bool,
) -> Result<u32, SignalError> {
    if stopping && signal.is_fault() {
        return Err(SignalError::Stopping);
    }
    let p = procs
        .iter_mut()
        .find(|p| p.spec.name == name)
        .ok_or_else(|| SignalError::Unknown(name.to_owned()))?;
    // A child that exited (or was reaped) is never signalled: its pid may be recycled.
    if p.down_since.is_some() || p.child.try_wait().ok().flatten().is_some() {
        return Err(SignalError::NotRunning(name.to_owned()));
    }
    if let Signal::Kill { .. } = signal
        && p.restart_after.is_some()
    {
        return Err(SignalError::NotRunning(name.to_owned()));
    }
    let number = match signal {
        Signal::Kill { .. } => libc::SIGKILL,
        Signal::Stop => libc::SIGSTOP,
        Signal::Continue => libc::SIGCONT,
    };
    send(&mut p.child, number).map_err(|e| SignalError::Os(e.to_string()))?;
    if let Signal::Kill { restart_after } = signal {
        p.restart_after = Some(restart_after);
    }
    Ok(p.child.id())
}

/// Sends signal `number` to `child`, our unreaped child.
#[allow(unsafe_code)]
fn send(child: &mut Child, number: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own unreaped child.
    if unsafe { libc::kill(pid, number) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the kernel SIGKILL the child when the thread that started it exits.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec; prctl(2) is async-signal-safe
    // and touches no memory shared with the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends SIGTERM, then SIGCONT (a stopped child acts on its SIGTERM only once continued), to
/// `child` unless it has exited (and been reaped), so that a recycled pid is never signalled.
fn terminate(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = send(child, libc::SIGTERM);
    let _ = send(child, libc::SIGCONT);
}

/// Waits up to `timeout` for `child` to exit.
async fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a role gets to stop after SIGTERM before SIGKILL: tablet servers flush.
fn stop_timeout(role: Role) -> Duration {
    match role {
        Role::Tablet => Duration::from_secs(60),
        Role::Lock | Role::Master | Role::Gateway => Duration::from_secs(15),
    }
}

/// Stops every process cleanly: the gateway first (its clients see the end before the
/// cluster goes), then masters, then tablet servers (they flush and leave), then lock nodes;
/// each role is sent SIGTERM together and waited for, stragglers SIGKILLed. Answers whether
/// every process stopped on its own.
pub(crate) async fn stop_all(procs: &mut [Proc]) -> bool {
    let mut clean = true;
    for role in [Role::Gateway, Role::Master, Role::Tablet, Role::Lock] {
        let group: Vec<&mut Proc> = procs.iter_mut().filter(|p| p.spec.role == role).collect();
        if group.is_empty() {
            continue;
        }
        eprintln!("stopping the {} processes...", role.name());
        let mut group = group;
        for p in &mut group {
            terminate(&mut p.child);
        }
        for p in &mut group {
            match wait_exit(&mut p.child, stop_timeout(role)).await {
                Some(status) if status.success() => {}
                Some(status) => {
                    eprintln!(
                        "{} stopped with {status}; see {}",
                        p.spec.name,
                        p.spec.log.display()
                    );
                }
                None => {
                    eprintln!(
                        "{} did not stop within {:?}: killing it; see {}",
                        p.spec.name,
                        stop_timeout(role),
                        p.spec.log.display()
                    );
                    clean = false;
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                }
            }
        }
    }
    clean
}

/// SIGKILLs and reaps every process (the error path: nothing is worth waiting for).
pub(crate) fn kill_all(procs: &mut [Proc]) {
    for p in procs {
        if p.child.try_wait().ok().flatten().is_none() {
            let _ = p.child.kill();
        }
        let _ = p.child.wait();
    }
}
