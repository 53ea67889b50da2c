//! A power cut drops every write the kernel was never told to make durable. The test
//! plays one on a sled store: every file the store does not sync (nor sled itself, for
//! its snapshots) loses its content, and the store must reopen cleanly, acknowledged
//! writes intact and without sled's "empty/corrupt configuration file" warning.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use storage::{SledStore, Store, StoreConfig};
use wire::{AssociateId, UserId};

use crate::new_order;

/// Warnings sled logged through the `log` crate, kept for the test to read.
struct Warnings(Mutex<Vec<String>>);

impl log::Log for Warnings {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            self.0.lock().unwrap().push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

static WARNINGS: Warnings = Warnings(Mutex::new(Vec::new()));

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        path: Some(dir.to_path_buf()),
        cache_bytes: 8 * 1024 * 1024,
        ..StoreConfig::default()
    }
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// sled's own snapshots, which it writes with `sync_all` before renaming them.
fn synced_by_sled(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name.starts_with("snap.") && !name.ends_with(".generating")
}

#[test]
fn a_store_whose_unsynced_data_was_dropped_reopens_without_warnings() {
    // Other tests in this binary may log too; only this test's messages are read below.
    let _ = log::set_logger(&WARNINGS).map(|()| log::set_max_level(log::LevelFilter::Warn));
    let dir = tempfile::tempdir().unwrap();
    let order = new_order(UserId::new(), AssociateId::new(), 7);
    let synced = {
        let sled = SledStore::open(&config(dir.path())).unwrap();
        let synced = sled.synced_files();
        let store = Store::new(sled);
        store.create_order_durable(order.clone()).wait().unwrap();
        synced
    };
    assert!(
        synced.iter().any(|p| p.ends_with("conf")),
        "the configuration file is among the synced ones: {synced:?}"
    );
    // The cut: whatever nobody synced is gone.
    let mut dropped = Vec::new();
    for path in files_under(dir.path()) {
        if !synced.contains(&path) && !synced_by_sled(&path) {
            std::fs::File::create(&path).unwrap();
            dropped.push(path);
        }
    }
    let store = Store::open(&config(dir.path())).unwrap();
    let found = store.order(order.order_id).unwrap();
    assert_eq!(found.map(|o| o.order_id), Some(order.order_id));
    let about_config: Vec<String> = WARNINGS
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.contains("configuration"))
        .cloned()
        .collect();
    assert!(
        about_config.is_empty(),
        "warnings after the cut (dropped {dropped:?}): {about_config:?}"
    );
}
