//! What dispatch keeps across a restart: open requests (so their offer loop resumes)
//! and whether each associate last asked to take offers.

use wire::{AssociateId, RequestId};

use crate::ack::Ticket;
use crate::embedded::store::SledStore;
use crate::error::StorageError;
use crate::records::{OpenRequest, Presence};

impl SledStore {
    /// Inserts or replaces an open request; the ticket resolves once it is durable.
    pub fn put_request(&self, request: &OpenRequest) -> Result<Ticket, StorageError> {
        self.inner
            .requests
            .put(request.request_id.to_bytes(), request)?;
        Ok(self.commit())
    }

    /// Forgets a request that ended without an order (cancelled, nobody available).
    /// An allotted request is removed by the order's creation itself.
    pub fn remove_request(&self, id: RequestId) -> Result<Ticket, StorageError> {
        match self.inner.requests.tree.remove(id.to_bytes())? {
            Some(_) => Ok(self.commit()),
            None => Ok(Ticket::done()),
        }
    }

    /// The open request.
    pub fn request(&self, id: RequestId) -> Result<Option<OpenRequest>, StorageError> {
        self.inner.requests.get(id.to_bytes())
    }

    /// Every open request, oldest first: what recovery resumes.
    pub fn open_requests(&self) -> Result<Vec<OpenRequest>, StorageError> {
        self.inner.requests.values().collect()
    }

    /// Records whether an associate takes offers.
    pub fn put_presence(
        &self,
        associate: AssociateId,
        presence: &Presence,
    ) -> Result<Ticket, StorageError> {
        self.inner.presence.put(associate.to_bytes(), presence)?;
        Ok(self.commit())
    }

    /// Whether the associate last asked to take offers.
    pub fn presence(&self, associate: AssociateId) -> Result<Option<Presence>, StorageError> {
        self.inner.presence.get(associate.to_bytes())
    }
}
