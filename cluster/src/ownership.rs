//! Who owns each shard cell: the `speedy_cells` bucket maps a cell to its owner. A node
//! claims a cell that rendezvous hashing gives it with compare-and-set (create when
//! unclaimed, update at the revision it read when the recorded owner is no longer live),
//! so two nodes can never both win one claim. The revision a claim is written at is the
//! owner's fencing epoch for that cell: revisions only grow, so a newer owner always
//! holds a higher epoch than any former one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::error::{ClusterError, nats};

/// The bucket of cell owners.
pub const CELLS_BUCKET: &str = "speedy_cells";

/// A cell this node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The cell.
    pub cell: u64,
    /// The fencing epoch: the revision of the claim.
    pub epoch: u64,
}

/// The cell-ownership bucket.
#[derive(Debug, Clone)]
pub struct Cells {
    bucket: kv::Store,
}

fn key(cell: u64) -> String {
    format!("cell.{cell:016x}")
}

impl Cells {
    /// Opens (or creates) the bucket.
    pub async fn open(js: &jetstream::Context) -> Result<Self, ClusterError> {
        let config = || kv::Config {
            bucket: CELLS_BUCKET.into(),
            history: 1,
            ..Default::default()
        };
        let bucket = crate::bucket::open(js, config, "the cells bucket").await?;
        Ok(Self { bucket })
    }

    /// The cell's recorded owner and the claim's revision, if claimed.
    pub async fn owner(&self, cell: u64) -> Result<Option<(String, u64)>, ClusterError> {
        let entry = self
            .bucket
            .entry(key(cell))
            .await
            .map_err(|e| nats("reading a cell", e))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| (String::from_utf8_lossy(&e.value).into_owned(), e.revision)))
    }

    /// Gives a cell up (a clean hand-over): its record then names nobody, at a new
    /// revision. Fails with [`ClusterError::Lost`] if someone took it meanwhile.
    pub async fn release(&self, claim: Claim) -> Result<(), ClusterError> {
        self.bucket
            .update(key(claim.cell), bytes::Bytes::new(), claim.epoch)
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => ClusterError::Lost {
                    cell: key(claim.cell),
                },
                _ => nats("releasing a cell", e),
            })?;
        Ok(())
    }

    /// Claims `cell` for `node`, given the live set: kept if already ours (same epoch),
    /// taken over if its recorded owner is not live (a new, higher epoch), created if
    /// unclaimed. Refused while another live node holds it.
    pub async fn claim(
        &self,
        cell: u64,
        node: &str,
        live: &[String],
    ) -> Result<Claim, ClusterError> {
        let current = self.owner(cell).await?;
        self.claim_seen(cell, node, live, current).await
    }

    /// Like [`Self::claim`], from a record already read (a [`CellView`]'s): if the
    /// record has moved on since, the compare-and-set fails with [`ClusterError::Lost`].
    pub async fn claim_seen(
        &self,
        cell: u64,
        node: &str,
        live: &[String],
        current: Option<(String, u64)>,
    ) -> Result<Claim, ClusterError> {
        let value = bytes::Bytes::from(node.to_owned());
        let revision = match current {
            Some((owner, revision)) if owner == node => revision,
            Some((owner, _)) if !owner.is_empty() && live.contains(&owner) => {
                return Err(ClusterError::OwnedElsewhere {
                    cell: key(cell),
                    owner,
                });
            }
            Some((_, revision)) => self
                .bucket
                .update(key(cell), value, revision)
                .await
                .map_err(|e| match e.kind() {
                    kv::UpdateErrorKind::WrongLastRevision => {
                        ClusterError::Lost { cell: key(cell) }
                    }
                    _ => nats("taking a cell over", e),
                })?,
            None => self
                .bucket
                .create(key(cell), value)
                .await
                .map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => ClusterError::Lost { cell: key(cell) },
                    _ => nats("claiming a cell", e),
                })?,
        };
        Ok(Claim {
            cell,
            epoch: revision,
        })
    }

    /// Re-asserts a claim at the epoch it was won with: fails with [`ClusterError::Lost`]
    /// once another node has taken the cell (this node was fenced out).
    pub async fn renew(&self, claim: Claim, node: &str) -> Result<Claim, ClusterError> {
        let revision = self
            .bucket
            .update(
                key(claim.cell),
                bytes::Bytes::from(node.to_owned()),
                claim.epoch,
            )
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => ClusterError::Lost {
                    cell: key(claim.cell),
                },
                _ => nats("renewing a cell", e),
            })?;
        Ok(Claim {
            cell: claim.cell,
            epoch: revision,
        })
    }
}

/// Every cell's record as the bucket's watch delivers it: the current state of
/// ownership without a read per cell.
#[derive(Debug)]
pub struct CellView {
    records: Arc<RwLock<HashMap<u64, (String, u64)>>>,
    task: JoinHandle<()>,
}

impl CellView {
    /// The cell's record (owner, revision) as last seen.
    pub fn get(&self, cell: u64) -> Option<(String, u64)> {
        self.records
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cell)
            .cloned()
    }
}

impl Drop for CellView {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cells {
    /// Starts following every record of the bucket: changes from now on (watched first,
    /// so none is missed), and the records already there (read once, kept unless the
    /// watch has already delivered something newer).
    pub async fn view(&self) -> Result<CellView, ClusterError> {
        let mut watch = self
            .bucket
            .watch_all()
            .await
            .map_err(|e| nats("watching cells", e))?;
        let records: Arc<RwLock<HashMap<u64, (String, u64)>>> = Arc::default();
        let filled = records.clone();
        let task = tokio::spawn(async move {
            while let Some(entry) = watch.next().await {
                let Ok(entry) = entry else { continue };
                let Some(cell) = cell_of(&entry.key) else {
                    continue;
                };
                record(&filled, cell, &entry);
            }
        });
        let keys: Vec<String> = self
            .bucket
            .keys()
            .await
            .map_err(|e| nats("listing cells", e))?
            .filter_map(|k| async move { k.ok() })
            .collect()
            .await;
        for key in keys {
            let Some(cell) = cell_of(&key) else { continue };
            if let Some(entry) = self
                .bucket
                .entry(key)
                .await
                .map_err(|e| nats("reading a cell", e))?
            {
                record(&records, cell, &entry);
            }
        }
        Ok(CellView { records, task })
    }
}

/// The cell a bucket key names.
fn cell_of(key: &str) -> Option<u64> {
    key.strip_prefix("cell.")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
}

/// Applies an entry to the view unless the view already holds a newer revision.
fn record(records: &RwLock<HashMap<u64, (String, u64)>>, cell: u64, entry: &kv::Entry) {
    let mut records = records.write().unwrap_or_else(|e| e.into_inner());
    if records
        .get(&cell)
        .is_some_and(|(_, seen)| *seen >= entry.revision)
    {
        return;
    }
    match entry.operation {
        kv::Operation::Put => {
            let owner = String::from_utf8_lossy(&entry.value).into_owned();
            records.insert(cell, (owner, entry.revision));
        }
        kv::Operation::Delete | kv::Operation::Purge => {
            records.remove(&cell);
        }
    }
}
