//! Python for end-to-end tests that drive Tabula with Python programs (the official Cloud
//! Bigtable client): a virtualenv made once per requirements file under the cargo target
//! directory, and child processes whose output is kept for the caller to show.
//!
//! The virtualenv is `TARGET/python-venv-<hash>`, the hash over the requirements file and the
//! interpreter's version, so a changed pin or a new Python makes a new one. It counts as made
//! only once `pip install` succeeded and wrote its marker file; a directory without the marker
//! (an install that was interrupted) is removed and made again. A file lock serialises two test
//! processes that want the same virtualenv.
//!
//! A missing `python3` or `venv` module fails the test with a message saying what to install:
//! the test must not pass by skipping what it checks.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::BIN;
use super::local::die_with_test;

/// How long creating the virtualenv and installing the requirements may take (a cold pip
/// cache downloads tens of MB).
pub(crate) const INSTALL_DEADLINE: Duration = Duration::from_secs(900);

/// The file written into a virtualenv once its requirements are installed.
const MARKER: &str = ".tabula-requirements-installed";

/// A virtualenv with a requirements file installed.
pub(crate) struct Venv {
    pub(crate) dir: PathBuf,
    /// How long making it took now, or `None` if it was already there.
    pub(crate) installed_in: Option<Duration>,
}

impl Venv {
    /// The virtualenv for `requirements`, made (and the requirements installed) unless a
    /// complete one is there already.
    pub(crate) fn ensure(requirements: &Path) -> Venv {
        let version = python3_version();
        let wanted = std::fs::read(requirements).unwrap_or_else(|e| {
            panic!("cannot read {}: {e}", requirements.display());
        });
        let hash = fnv1a(&[wanted.as_slice(), version.as_bytes()].concat());
        let dir = target_dir().join(format!("python-venv-{hash:016x}"));
        let _lock = FileLock::take(&dir.with_extension("lock"));
        let marker = dir.join(MARKER);
        if std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == format!("{hash:016x}")) {
            return Venv {
                dir,
                installed_in: None,
            };
        }
        let started = Instant::now();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap_or_else(|e| {
                panic!(
                    "cannot remove the incomplete virtualenv {}: {e}",
                    dir.display()
                )
            });
        }
        let mut venv = Command::new("python3");
        venv.args(["-m", "venv"]).arg(&dir);
        let (status, output) = run_child(venv, "python3 -m venv", INSTALL_DEADLINE);
        assert!(
            status.success(),
            "python3 -m venv {} failed ({status}); on Debian or Ubuntu the venv module is in \
             the python3-venv package:\n{output}",
            dir.display()
        );
        let venv = Venv {
            dir,
            installed_in: None,
        };
        let mut pip = venv.python();
        pip.args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--timeout",
            "60",
            "-r",
        ])
        .arg(requirements);
        let left = INSTALL_DEADLINE.saturating_sub(started.elapsed());
        eprintln!(
            "installing {} into {}",
            requirements.display(),
            venv.dir.display()
        );
        let (status, output) = run_child(pip, "pip install", left);
        assert!(
            status.success(),
            "pip install -r {} failed ({status}) (it needs PyPI):\n{output}",
            requirements.display()
        );
        std::fs::write(venv.dir.join(MARKER), format!("{hash:016x}\n")).unwrap();
        Venv {
            installed_in: Some(started.elapsed()),
            ..venv
        }
    }

    /// A command running the virtualenv's interpreter.
    pub(crate) fn python(&self) -> Command {
        Command::new(self.dir.join("bin").join("python"))
    }
}

/// `python3 --version`'s answer; fails the test clearly if there is no `python3`.
fn python3_version() -> String {
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => {
            // Python 3 prints its version on stdout (Python 2 on stderr).
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
        Ok(out) => panic!(
            "python3 --version failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "python3 is needed to run the official Python Cloud Bigtable client against Tabula, \
             and it could not be started ({e}): install Python 3 with its venv module \
             (Debian/Ubuntu: apt-get install python3 python3-venv)"
        ),
    }
}

/// The cargo target directory: the `tabula` binary is `TARGET/<profile>/tabula`.
pub(crate) fn target_dir() -> PathBuf {
    let bin = Path::new(BIN);
    bin.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{BIN} is not TARGET/<profile>/tabula"))
        .to_owned()
}

/// 64-bit FNV-1a: a stable hash (std's hashers may change between Rust releases, which would
/// make a new virtualenv for nothing).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An exclusive `flock` held until dropped.
struct FileLock(File);

impl FileLock {
    #[allow(unsafe_code)]
    fn take(path: &Path) -> FileLock {
        let file = File::create(path)
            .unwrap_or_else(|e| panic!("cannot create the lock file {}: {e}", path.display()));
        // SAFETY: flock(2) on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        assert_eq!(
            rc,
            0,
            "flock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        FileLock(file)
    }
}

/// Runs `cmd` (no stdin), keeping each line of its stdout and stderr; kills it and fails, with
/// everything it printed, if it runs past `deadline`. Answers the exit status and everything it
/// printed, stdout and stderr interleaved as received. Nothing is printed as it comes: the
/// caller shows what matters first (a failure's summary before pip's download lines or the
/// passing tests), as a truncated CI log keeps the head of a failed test's output.
pub(crate) fn run_child(mut cmd: Command, what: &str, deadline: Duration) -> (ExitStatus, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_test(&mut cmd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
    let output = Arc::new(Mutex::new(String::new()));
    let readers = [
        collect_lines(child.stdout.take().unwrap(), Arc::clone(&output)),
        collect_lines(child.stderr.take().unwrap(), Arc::clone(&output)),
    ];
    let end = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            for r in readers {
                let _ = r.join();
            }
            panic!(
                "{what} did not finish within {deadline:?}; its output:\n{}",
                output.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for r in readers {
        r.join().unwrap();
    }
    let text = output.lock().unwrap().clone();
    (status, text)
}

/// A thread copying `pipe`'s lines to `sink`.
fn collect_lines(
    pipe: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    })
}
