//! The pid file (`certgate run --pid-file`, or `pid_file:` in gateway.yaml) and, next to it,
//! the reload status file through which the running gateway tells `certgate reload` what it
//! did with the configuration: a signal carries no answer, and without one `reload` could
//! only say "signalled" while the gateway kept the old configuration.
//!
//! There is no default pid file: one fixed path (`/tmp/certgate.pid`) was shared by every
//! certgate on the machine, so `reload` and `kill $(cat …)` hit whichever wrote it last.
//! Nothing is written unless a path is given, as nginx's `pid` directive names one; systemd
//! and Kubernetes find the process without a file.
//!
//! The status file (`<pid file>.reload`) is rewritten atomically (a temporary file renamed
//! over it) at start, when a SIGHUP is taken up and when its reload is done. Each SIGHUP
//! taken up gets the next sequence number, so `reload` reads the number before signalling
//! and waits for a finished reload with a higher one: a reload already running when it read
//! has its number, and one not yet taken up reads the files after `reload` did.
//! Both files are removed when the process exits cleanly (SIGTERM, SIGINT), if they still
//! name it.

use std::path::{Path, PathBuf};

/// Writes this process's id to `path`, atomically (a reader never sees a half-written
/// number). A status file left by an earlier process is removed.
pub fn write(path: &Path) -> std::io::Result<()> {
    write_atomically(path, &format!("{}\n", std::process::id()))?;
    // Left by a process that did not exit cleanly: its sequence numbers mean nothing now.
    let _ = std::fs::remove_file(status_path(path));
    Ok(())
}

/// Removes the pid file at `path` and its status file, unless another process has written
/// its own id there since (two instances given the same path: the survivor keeps it).
pub fn remove(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .is_ok_and(|text| text.trim().parse::<u32>().ok() == Some(std::process::id()));
    if ours {
        let _ = std::fs::remove_file(status_path(path));
        let _ = std::fs::remove_file(path);
    }
}

/// The status file that goes with `pid_file`: the same name with `.reload` added.
pub fn status_path(pid_file: &Path) -> PathBuf {
    let mut name = pid_file.as_os_str().to_owned();
    name.push(".reload");
    PathBuf::from(name)
}

/// What happened to the last SIGHUP the gateway took up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No SIGHUP yet (sequence 0).
    Started,
    /// Taken up; the files are being read and checked.
    Running,
    /// The new configuration is in force.
    Reloaded { generation: u64 },
    /// The running configuration was kept, for `reason` (one line).
    Refused { reason: String },
}

/// The contents of the status file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// The gateway that wrote it: a status of another process says nothing about this one.
    pub pid: u32,
    /// How many SIGHUPs this process has taken up, this one included.
    pub sequence: u64,
    pub outcome: Outcome,
}

impl ReloadStatus {
    /// `key value` lines, readable by people and scripts:
    /// `pid 1234`, `sequence 3`, `result refused`, `reason listen addresses changed …`.
    pub fn render(&self) -> String {
        let mut text = format!("pid {}\nsequence {}\n", self.pid, self.sequence);
        match &self.outcome {
            Outcome::Started => text.push_str("result started\n"),
            Outcome::Running => text.push_str("result running\n"),
            Outcome::Reloaded { generation } => {
                text.push_str(&format!("result reloaded\ngeneration {generation}\n"))
            }
            Outcome::Refused { reason } => {
                let reason = reason.lines().collect::<Vec<_>>().join("; ");
                text.push_str(&format!("result refused\nreason {reason}\n"));
            }
        }
        text
    }

    /// Reads what [`ReloadStatus::render`] wrote; `None` for anything else.
    pub fn parse(text: &str) -> Option<ReloadStatus> {
        let field = |key: &str| {
            text.lines().find_map(|line| {
                let (k, v) = line.split_once(' ').unwrap_or((line, ""));
                (k == key).then_some(v)
            })
        };
        let pid = field("pid")?.parse().ok()?;
        let sequence = field("sequence")?.parse().ok()?;
        let outcome = match field("result")? {
            "started" => Outcome::Started,
            "running" => Outcome::Running,
            "reloaded" => Outcome::Reloaded {
                generation: field("generation")?.parse().ok()?,
            },
            "refused" => Outcome::Refused {
                reason: field("reason").unwrap_or_default().to_string(),
            },
            _ => return None,
        };
        Some(ReloadStatus {
            pid,
            sequence,
            outcome,
        })
    }

    /// The status in the file at `path`; `None` when there is none (or it is not one).
    pub fn read(path: &Path) -> Option<ReloadStatus> {
        ReloadStatus::parse(&std::fs::read_to_string(path).ok()?)
    }

    /// Replaces the file at `path` with this status, atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_atomically(path, &self.render())
    }
}

/// Writes `contents` to a temporary file beside `path` and renames it over `path`.
fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_and_stays_one_line_per_field() {
        for outcome in [
            Outcome::Started,
            Outcome::Running,
            Outcome::Reloaded { generation: 7 },
            Outcome::Refused {
                reason: "gateway.yaml:3:5: a: x\ngateway.yaml:9:1: b: y".into(),
            },
        ] {
            let status = ReloadStatus {
                pid: 42,
                sequence: 3,
                outcome,
            };
            let text = status.render();
            let back = ReloadStatus::parse(&text).unwrap();
            assert_eq!(back.pid, 42);
            assert_eq!(back.sequence, 3);
            match (&status.outcome, &back.outcome) {
                (Outcome::Refused { .. }, Outcome::Refused { reason }) => {
                    assert_eq!(reason, "gateway.yaml:3:5: a: x; gateway.yaml:9:1: b: y")
                }
                (sent, got) => assert_eq!(sent, got),
            }
        }
        assert_eq!(ReloadStatus::parse("pid x\n"), None);
        assert_eq!(ReloadStatus::parse(""), None);
    }

    #[test]
    fn the_pid_file_is_removed_only_while_it_names_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certgate.pid");
        write(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        ReloadStatus {
            pid: std::process::id(),
            sequence: 0,
            outcome: Outcome::Started,
        }
        .write(&status_path(&path))
        .unwrap();
        remove(&path);
        assert!(!path.exists() && !status_path(&path).exists());

        // Another instance wrote its id since: its file stays.
        write(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        remove(&path);
        assert!(path.exists());
        assert_eq!(
            status_path(Path::new("/run/certgate/certgate.pid")),
            Path::new("/run/certgate/certgate.pid.reload")
        );
    }
}
