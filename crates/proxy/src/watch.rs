//! Reload on file change (`watch: true` or `certgate run --watch`): when gateway.yaml or a
//! file it names changes on disk, reload exactly as SIGHUP does ([`reload_from`]: validate
//! everything, keep the running configuration on any error, count the outcome).
//!
//! Directories are watched, not files. Kubernetes updates a ConfigMap or Secret volume by
//! writing a new timestamped directory (`..2026_12_03_08_00_00.123`), pointing a
//! `..data_tmp` symlink at it and renaming that over `..data`, while the file the config
//! names (`tls.crt -> ..data/tls.crt`) never changes itself; an editor writes a temporary
//! file and renames it over the original. A watch on the file follows the old inode and
//! sees neither, so certgate watches the directory of every file (and, for a symlink to
//! another directory, its target's), and decides whether anything changed by comparing a SHA-256 of
//! each file's contents, read through symlinks, before and after. That also makes the
//! other traffic in those directories (other files, certgate's own reads) harmless.
//!
//! Events are debounced ([`QUIET`] after the last one), so cert-manager writing the
//! certificate then the key, or kubelet's three steps, make one reload. A half-written or
//! broken set fails validation and keeps the running configuration; the next change
//! retries. After every check the set of files, and so of directories, is recomputed from
//! the configuration on disk. Where a directory cannot be watched, the files are polled
//! every [`POLL_INTERVAL`] instead.
//!
//! The pure parts ([`watched_files`], [`directories`], [`Fingerprints`], [`Debounce`],
//! [`relevant`]) are separate from the I/O ([`WatchFiles`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use certgate_config::Config;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::reload::reload_from;
use crate::Shared;

/// How long the files must stay quiet after the last event before they are compared.
pub const QUIET: Duration = Duration::from_millis(500);
/// The longest a stream of events can put the comparison off.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// How often the files are compared when some directory cannot be watched.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// gateway.yaml and every file it names: server certificates and keys, session ticket
/// keys, client CAs, trusted CAs, CRLs, upstream TLS files. Not the access log: certgate
/// writes it.
pub fn watched_files(config: &Config) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    files.insert(config.file.clone());
    for server in &config.servers {
        files.insert(server.tls.cert.clone());
        files.insert(server.tls.key.clone());
        files.extend(server.tls.session_ticket_keys.iter().cloned());
        let auth = &server.client_auth;
        files.extend(auth.ca.iter().cloned());
        files.extend(auth.trusted_ca.iter().cloned());
        files.extend(auth.crl.iter().cloned());
        for route in &server.routes {
            if let Some(signed) = &route.signed_urls {
                files.extend(signed.key_files.iter().cloned());
            }
        }
    }
    for upstream in config.upstreams.values() {
        if let Some(tls) = &upstream.tls {
            files.extend(tls.trusted_ca.iter().cloned());
            files.extend(tls.cert.iter().cloned());
            files.extend(tls.key.iter().cloned());
        }
    }
    files
}

/// The directories to watch for `files`: each file's parent (`.` for a bare file name)
/// and, where `resolve` (`canonicalize`) follows a symlink to another directory, the
/// parent of its target (a file edited in place there changes nothing in the first).
/// Not a target below the file's own directory: Kubernetes' `..2026_…/tls.crt` changes
/// only by a rename in the volume directory, and its watch would go (noisily) with it.
pub fn directories(
    files: &BTreeSet<PathBuf>,
    resolve: impl Fn(&Path) -> Option<PathBuf>,
) -> BTreeSet<PathBuf> {
    let parent = |file: &Path| match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = BTreeSet::new();
    for file in files {
        let dir = parent(file);
        if let Some(target) = resolve(file) {
            let home = resolve(&dir).unwrap_or_else(|| dir.clone());
            let target_dir = parent(&target);
            if !target_dir.starts_with(&home) {
                dirs.insert(target_dir);
            }
        }
        dirs.insert(dir);
    }
    dirs
}

/// The SHA-256 of each file's contents; `None` for a file that cannot be read (missing,
/// mid-swap, no permission), so reading it again later counts as a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprints(BTreeMap<PathBuf, Option<[u8; 32]>>);

impl Fingerprints {
    /// Fingerprints `files`, reading each with `read` (`std::fs::read` follows symlinks).
    pub fn take(
        files: &BTreeSet<PathBuf>,
        read: impl Fn(&Path) -> std::io::Result<Vec<u8>>,
    ) -> Fingerprints {
        Fingerprints(
            files
                .iter()
                .map(|file| {
                    let digest = read(file).ok().map(|bytes| Sha256::digest(&bytes).into());
                    (file.clone(), digest)
                })
                .collect(),
        )
    }

    /// Every file of both sets whose contents differ from `before` (or that became
    /// readable or unreadable). A file that only entered or left the set did not change:
    /// gateway.yaml, which names it, did, and is the one to report.
    pub fn changed_since<'a>(&'a self, before: &'a Fingerprints) -> Vec<&'a Path> {
        self.0
            .iter()
            .filter(|(file, digest)| before.0.get(*file).is_some_and(|old| old != *digest))
            .map(|(file, _)| file.as_path())
            .collect()
    }

    /// Whether the two name different sets of files.
    pub fn other_files_than(&self, before: &Fingerprints) -> bool {
        !self.0.keys().eq(before.0.keys())
    }
}

/// When to compare the files: [`QUIET`] after the last event, but no later than
/// [`MAX_DELAY`] after the first of a burst.
#[derive(Debug, Clone)]
pub struct Debounce {
    quiet: Duration,
    max_delay: Duration,
    /// The first and the last event of the burst not yet handled.
    pending: Option<(Instant, Instant)>,
}

impl Debounce {
    pub fn new(quiet: Duration, max_delay: Duration) -> Debounce {
        Debounce {
            quiet,
            max_delay,
            pending: None,
        }
    }

    /// Records an event seen at `now`.
    pub fn event(&mut self, now: Instant) {
        let first = self.pending.map_or(now, |(first, _)| first);
        self.pending = Some((first, now));
    }

    /// When the pending burst is due for a comparison; `None` when nothing is pending.
    pub fn due(&self) -> Option<Instant> {
        self.pending
            .map(|(first, last)| (last + self.quiet).min(first + self.max_delay))
    }

    /// Whether a comparison is due at `now`; if so, the burst counts as handled.
    pub fn fire(&mut self, now: Instant) -> bool {
        match self.due() {
            Some(due) if due <= now => {
                self.pending = None;
                true
            }
            _ => false,
        }
    }
}

/// Whether an event may mean a changed file. Opening and reading (certgate's own reads
/// among them) cannot; a write that finished, a create, rename, delete, attribute change
/// or an overflowed queue can.
pub fn relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Reloads the configuration when gateway.yaml or a file it names changes on disk.
pub struct WatchFiles {
    shared: Arc<Shared>,
    path: PathBuf,
    /// The files of the configuration the process started with, and their contents then.
    files: BTreeSet<PathBuf>,
    baseline: Fingerprints,
}

impl WatchFiles {
    /// Watches the files of `config`, the configuration the process has just loaded, from
    /// their contents now. Blocking (reads every file once).
    pub fn new(shared: Arc<Shared>, config: &Config) -> WatchFiles {
        let files = watched_files(config);
        let baseline = Fingerprints::take(&files, |file| std::fs::read(file));
        WatchFiles {
            shared,
            path: config.file.clone(),
            files,
            baseline,
        }
    }
}

/// What the watcher thread tells the service.
enum Wake {
    Event,
    Error(String),
}

/// The notify watcher and the directories it watches.
struct Directories {
    watcher: Option<RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
    /// Directories that could not be watched (then the files are polled).
    failed: BTreeSet<PathBuf>,
}

impl Directories {
    fn new(wake: mpsc::Sender<Wake>) -> Directories {
        let handler = move |event: notify::Result<notify::Event>| {
            // A full channel already holds a wake-up: dropping this one loses nothing.
            let _ = match event {
                Ok(event) if relevant(&event.kind) => wake.try_send(Wake::Event),
                Ok(_) => Ok(()),
                Err(e) => wake.try_send(Wake::Error(e.to_string())),
            };
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                tracing::warn!(
                    "cannot watch for file changes ({e}); checking the files every {}s instead",
                    POLL_INTERVAL.as_secs()
                );
                None
            }
        };
        Directories {
            watcher,
            watched: BTreeSet::new(),
            failed: BTreeSet::new(),
        }
    }

    /// Whether the files must be polled: no watcher, or a directory it could not watch.
    fn polling(&self) -> bool {
        self.watcher.is_none() || !self.failed.is_empty()
    }

    /// Watches exactly `dirs`. Directories already watched are added again: a directory
    /// deleted and recreated since needs a new watch, and re-adding one is harmless.
    fn set(&mut self, dirs: BTreeSet<PathBuf>) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for gone in self.watched.difference(&dirs) {
            // Fails when the directory was deleted (its watch went with it): nothing to do.
            let _ = watcher.unwatch(gone);
        }
        let mut failed = BTreeSet::new();
        for dir in &dirs {
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                if !self.failed.contains(dir) {
                    tracing::warn!(
                        "cannot watch {} for changes ({e}); checking its files every {}s instead",
                        dir.display(),
                        POLL_INTERVAL.as_secs()
                    );
                }
                failed.insert(dir.clone());
            }
        }
        self.watched = dirs.difference(&failed).cloned().collect();
        self.failed = failed;
    }
}

/// The result of one comparison: what to watch from now on.
struct Checked {
    files: BTreeSet<PathBuf>,
    baseline: Fingerprints,
    dirs: BTreeSet<PathBuf>,
}

/// Compares the files with `baseline` and reloads if any changed. Blocking. The files are
/// those of the configuration on disk (of the last one that parsed, while the file is
/// broken), fingerprinted before the reload reads them: a change made during the reload
/// differs from the new baseline, so the next event retries.
fn check(
    shared: &Arc<Shared>,
    path: &Path,
    files: BTreeSet<PathBuf>,
    baseline: &Fingerprints,
) -> Checked {
    let files = match Config::load(path) {
        Ok(config) => watched_files(&config),
        Err(_) => files,
    };
    let now = Fingerprints::take(&files, |file| std::fs::read(file));
    let changed = now.changed_since(baseline);
    if !changed.is_empty() || now.other_files_than(baseline) {
        let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
        tracing::info!(
            "configuration changed on disk ({}), reloading",
            names.join(", ")
        );
        match reload_from(shared, path) {
            Ok(generation) => {
                tracing::info!(generation, "configuration reloaded from {}", path.display())
            }
            Err(e) => tracing::error!(
                "reload failed, keeping the running configuration: {}",
                e.one_line()
            ),
        }
    }
    let dirs = directories(&files, |file| std::fs::canonicalize(file).ok());
    Checked {
        files,
        baseline: now,
        dirs,
    }
}

#[async_trait]
impl BackgroundService for WatchFiles {
    /// Ready once the directories are watched, so that a change made after the listeners
    /// open is seen.
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let (wake, mut woken) = mpsc::channel(64);
        let mut watching = Directories::new(wake.clone());
        let files = self.files.clone();
        let set_up = tokio::task::spawn_blocking(move || {
            watching.set(directories(&files, |f| std::fs::canonicalize(f).ok()));
            watching
        })
        .await;
        let mut watching = match set_up {
            Ok(watching) => watching,
            Err(e) => {
                tracing::error!("file watch set-up failed, reload on file change disabled: {e}");
                ready.notify_ready();
                return;
            }
        };
        ready.notify_ready();
        // At debug: the start line already says "reloading on file change".
        tracing::debug!(
            "watching {} and the files it names for changes",
            self.path.display()
        );
        let mut files = self.files.clone();
        let mut baseline = self.baseline.clone();
        let mut debounce = Debounce::new(QUIET, MAX_DELAY);
        // A change between loading the configuration and watching its directories made
        // no event: compare once now.
        debounce.event(Instant::now());
        let mut next_poll = Instant::now() + POLL_INTERVAL;
        loop {
            let wake_at = match debounce.due() {
                Some(due) => Some(due),
                None if watching.polling() => Some(next_poll),
                None => None,
            };
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(
                wake_at.unwrap_or_else(Instant::now),
            ));
            tokio::select! {
                received = woken.recv() => match received {
                    Some(Wake::Event) => debounce.event(Instant::now()),
                    Some(Wake::Error(e)) => {
                        tracing::warn!("file watch error ({e}); checking the files");
                        debounce.event(Instant::now());
                    }
                    // `wake` is kept below, so the channel stays open.
                    None => {}
                },
                _ = sleep, if wake_at.is_some() => {
                    let now = Instant::now();
                    if !debounce.fire(now) && now < next_poll {
                        continue;
                    }
                    next_poll = now + POLL_INTERVAL;
                    let shared = self.shared.clone();
                    let path = self.path.clone();
                    let previous = baseline.clone();
                    let checked = tokio::task::spawn_blocking(move || {
                        let checked = check(&shared, &path, files, &previous);
                        watching.set(checked.dirs.clone());
                        (checked, watching)
                    })
                    .await;
                    match checked {
                        Ok((checked, still_watching)) => {
                            files = checked.files;
                            baseline = checked.baseline;
                            watching = still_watching;
                        }
                        Err(e) => {
                            tracing::error!("file watch task failed, reload on file change disabled: {e}");
                            return;
                        }
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        drop(wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        Config::parse(yaml, Path::new("/etc/certgate/gateway.yaml")).unwrap()
    }

    fn set(paths: &[&str]) -> BTreeSet<PathBuf> {
        paths.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn watched_files_are_the_config_and_every_file_it_names_but_the_access_log() {
        let config = config(
            "\
log: { access: /var/log/certgate/access.log }
servers:
  - listen: 127.0.0.1:8443
    tls: { cert: certs/server.crt, key: certs/server.key, session_ticket_keys: [/run/t.key] }
    client_auth: { ca: ca/ca.crt, trusted_ca: [ca/extra.crt], crl: [/crl/a.crl] }
    routes:
      - match: { path_prefix: / }
        upstream: app
      - match: { path_prefix: /b }
        upstream: tls
upstreams:
  app: { servers: [\"127.0.0.1:5000\"] }
  tls:
    servers: [\"127.0.0.1:5001\"]
    protocol: https
    tls: { trusted_ca: up/ca.crt, cert: up/client.crt, key: up/client.key }
",
        );
        assert_eq!(
            watched_files(&config),
            set(&[
                "/crl/a.crl",
                "/etc/certgate/ca/ca.crt",
                "/etc/certgate/ca/extra.crt",
                "/etc/certgate/certs/server.crt",
                "/etc/certgate/certs/server.key",
                "/etc/certgate/gateway.yaml",
                "/etc/certgate/up/ca.crt",
                "/etc/certgate/up/client.crt",
                "/etc/certgate/up/client.key",
                "/run/t.key",
            ])
        );
    }

    #[test]
    fn directories_are_parents_and_parents_of_symlink_targets_elsewhere() {
        let files = set(&[
            "gateway.yaml",
            "/etc/tls/tls.crt",
            "/etc/tls/tls.key",
            "/etc/certgate/ca.crt",
        ]);
        let resolve = |path: &Path| match path.to_str()? {
            "." => Some(PathBuf::from("/etc/certgate")),
            "gateway.yaml" => Some(PathBuf::from("/etc/certgate/gateway.yaml")),
            // Kubernetes: tls.crt -> ..data/tls.crt, ..data -> ..2026_12_03_08_00_00.123
            "/etc/tls/tls.crt" | "/etc/tls/tls.key" => Some(
                Path::new("/etc/tls/..2026_12_03_08_00_00.123").join(path.file_name().unwrap()),
            ),
            "/etc/certgate/ca.crt" => Some(PathBuf::from("/usr/share/ca/example.crt")),
            _ => Some(path.to_path_buf()),
        };
        assert_eq!(
            directories(&files, resolve),
            set(&[".", "/etc/certgate", "/etc/tls", "/usr/share/ca"])
        );
        assert_eq!(
            directories(&files, |_| None),
            set(&[".", "/etc/certgate", "/etc/tls"])
        );
    }

    #[test]
    fn fingerprints_compare_contents_not_events() {
        let files = set(&["/a", "/b"]);
        let disk = std::cell::RefCell::new(BTreeMap::from([
            (PathBuf::from("/a"), b"one".to_vec()),
            (PathBuf::from("/b"), b"two".to_vec()),
        ]));
        let read = |file: &Path| {
            disk.borrow()
                .get(file)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        let before = Fingerprints::take(&files, read);
        // Rewritten with the same bytes (a touch, a kubelet sync with nothing new).
        assert!(Fingerprints::take(&files, read)
            .changed_since(&before)
            .is_empty());

        disk.borrow_mut().insert("/b".into(), b"three".to_vec());
        let after = Fingerprints::take(&files, read);
        assert_eq!(after.changed_since(&before), vec![Path::new("/b")]);

        // Gone mid-swap, then back with the old contents: a change, then another.
        disk.borrow_mut().remove(Path::new("/a"));
        let gone = Fingerprints::take(&files, read);
        assert_eq!(gone.changed_since(&after), vec![Path::new("/a")]);
        disk.borrow_mut().insert("/a".into(), b"one".to_vec());
        assert_eq!(
            Fingerprints::take(&files, read).changed_since(&gone),
            vec![Path::new("/a")]
        );

        // A file added to, or dropped from, the set did not change (gateway.yaml, which
        // names it, did), but the set did.
        disk.borrow_mut().insert("/c".into(), b"new".to_vec());
        let more = Fingerprints::take(&set(&["/a", "/b", "/c"]), read);
        assert!(more.changed_since(&after).is_empty());
        assert!(after.changed_since(&more).is_empty());
        assert!(more.other_files_than(&after) && after.other_files_than(&more));
        assert!(!after.other_files_than(&after));
    }

    #[test]
    fn debounce_waits_for_quiet_but_not_forever() {
        let quiet = Duration::from_millis(500);
        let mut debounce = Debounce::new(quiet, Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(debounce.due(), None);
        assert!(!debounce.fire(t0));

        // cert then key, 100 ms apart: one comparison, 500 ms after the key.
        debounce.event(t0);
        debounce.event(t0 + Duration::from_millis(100));
        assert_eq!(debounce.due(), Some(t0 + Duration::from_millis(600)));
        assert!(!debounce.fire(t0 + Duration::from_millis(599)));
        assert!(debounce.fire(t0 + Duration::from_millis(600)));
        assert_eq!(debounce.due(), None);
        assert!(!debounce.fire(t0 + Duration::from_secs(10)));

        // A file rewritten every 200 ms: compared 5 s after the first event anyway.
        let t1 = t0 + Duration::from_secs(20);
        for i in 0..40 {
            debounce.event(t1 + Duration::from_millis(200 * i));
        }
        assert_eq!(debounce.due(), Some(t1 + Duration::from_secs(5)));
    }

    #[test]
    fn reads_and_opens_are_not_changes() {
        use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};
        assert!(!relevant(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!relevant(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(relevant(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(relevant(&EventKind::Create(CreateKind::File)));
        assert!(relevant(&EventKind::Modify(ModifyKind::Name(
            RenameMode::Both
        ))));
        assert!(relevant(&EventKind::Remove(RemoveKind::Folder)));
        assert!(relevant(&EventKind::Other));
    }
}
