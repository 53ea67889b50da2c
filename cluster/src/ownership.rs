//! Who owns each shard cell: the `speedy_cells` bucket maps a cell to its owner. A node
//! claims a cell that rendezvous hashing gives it with compare-and-set (create when
//! unclaimed, update at the revision it read when the recorded owner is no longer live),
//! so two nodes can never both win one claim. The revision a claim is written at is the
//! owner's fencing epoch for that cell: revisions only grow, so a newer owner always
//! holds a higher epoch than any former one.

use async_nats::jetstream::{self, kv};

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
        let bucket = js
            .create_key_value(kv::Config {
                bucket: CELLS_BUCKET.into(),
                history: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| nats("the cells bucket", e))?;
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

    /// Claims `cell` for `node`, given the live set: kept if already ours (same epoch),
    /// taken over if its recorded owner is not live (a new, higher epoch), created if
    /// unclaimed. Refused while another live node holds it.
    pub async fn claim(
        &self,
        cell: u64,
        node: &str,
        live: &[String],
    ) -> Result<Claim, ClusterError> {
        let value = bytes::Bytes::from(node.to_owned());
        let revision = match self.owner(cell).await? {
            Some((owner, revision)) if owner == node => revision,
            Some((owner, _)) if live.contains(&owner) => {
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
