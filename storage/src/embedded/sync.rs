//! What makes a flushed write survive power loss: `fdatasync` on sled's files.
//!
//! sled 0.34.7's `flush` ends in `sync_file_range` on Linux, which neither flushes the
//! drive's write cache nor the file's metadata, and it writes large values to blob files
//! without syncing them at all. The committer therefore calls [`Syncer::sync`] after
//! every flush and before acknowledging anything that flush covered: `fdatasync` on the
//! log file, on every blob file it has not synced yet, and on the blob directory when
//! blobs appeared. sled writes its `conf` file once, when it creates the directory,
//! without syncing it either; [`Syncer::open`] syncs it and the directory naming it.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Called after every sync, before any write it covers is acknowledged: a seam for
/// tests that check the order of sync and acknowledgement.
#[derive(Clone)]
pub struct SyncHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for SyncHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncHook(..)")
    }
}

/// Syncs one sled directory's files.
pub(crate) struct Syncer {
    /// None for a temporary store, which sled itself never syncs.
    files: Option<Files>,
    hook: Option<SyncHook>,
}

/// The files of a sled directory that the syncer keeps durable (blobs aside).
pub(crate) fn synced_files(dir: &Path) -> Vec<PathBuf> {
    vec![dir.join("conf"), dir.join("db")]
}

struct Files {
    log: File,
    blobs: PathBuf,
    synced_blobs: HashSet<OsString>,
}

impl Syncer {
    /// A syncer for the sled directory `dir` (none: a temporary store).
    pub(crate) fn open(dir: Option<&Path>, hook: Option<SyncHook>) -> std::io::Result<Self> {
        let files = match dir {
            Some(dir) => {
                // sled's log: the file `flush` writes with `sync_file_range`.
                let log = File::options()
                    .read(true)
                    .write(true)
                    .open(dir.join("db"))?;
                // sled's configuration, written once at creation and never synced by
                // sled: without it a store reopened after power loss warns that it
                // found an empty configuration file.
                File::open(dir.join("conf"))?.sync_all()?;
                // The directory entries of the log, the configuration and the blob
                // directory, once.
                sync_dir(dir)?;
                Some(Files {
                    log,
                    blobs: dir.join("blobs"),
                    synced_blobs: HashSet::new(),
                })
            }
            None => None,
        };
        Ok(Self { files, hook })
    }

    /// Makes everything sled has flushed so far durable.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        if let Some(files) = &mut self.files {
            files.log.sync_data()?;
            files.sync_new_blobs()?;
        }
        if let Some(hook) = &self.hook {
            (hook.0)();
        }
        Ok(())
    }
}

impl Files {
    /// Syncs blob files written since the last call, then the directory naming them.
    fn sync_new_blobs(&mut self) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut present = HashSet::new();
        let mut fresh = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data()?,
                    // Garbage-collected by sled between the listing and the open.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                fresh = true;
            }
            present.insert(name);
        }
        self.synced_blobs = present;
        if fresh {
            sync_dir(&self.blobs)?;
        }
        Ok(())
    }
}

/// Syncs a directory, so the files it names survive power loss.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
