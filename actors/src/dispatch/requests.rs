//! The request lifecycle beyond the first start: handing a stored request to its
//! cell's owner, resuming open requests after a restart or with gained cells, and
//! forgetting them when they end.

use geo::ShardId;
use wire::{PartyId, RequestId, RequestReceived, UserId};

use crate::dispatch::messages;
use crate::dispatch::request::RequestSpec;
use crate::error::ActorError;
use crate::peers::messages::ToParty;
use crate::peers::remote::Unreached;
use crate::peers::{Place, Served, subjects};

use super::handle::Dispatch;

impl Dispatch {
    /// Retries handing a stored request to its cell's owner every third of the call
    /// timeout until one takes it, the request ends, or its deadline passes.
    pub(super) fn keep_starting(&self, stored: storage::OpenRequest) {
        let Some(peers) = self.peers() else {
            return;
        };
        let every = (peers.call_timeout() / 3).max(std::time::Duration::from_millis(50));
        let dispatch = self.clone();
        // Called from socket sessions (tokio tasks), not only from actors.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let still_open = matches!(
                    dispatch.shared.store.request_async(stored.request_id).await,
                    Ok(Some(_))
                );
                if !still_open || dispatch.now_ms() >= stored.deadline_at_ms {
                    return;
                }
                match dispatch
                    .start_request(stored.clone(), Provenance::Handed)
                    .await
                {
                    Err(ActorError::PeerUnavailable(_)) => {}
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(request = %stored.request_id, error = %e, "a waiting request could not be handed over");
                        return;
                    }
                }
            }
        });
    }

    /// In cluster mode the request a user was last told of may have ended on another
    /// node while they were away: forget it if the store no longer has it.
    pub(super) fn forget_stale_request(&self, user: UserId) {
        if self.peers().is_none() {
            return;
        }
        let Some(open) = self.shared.user_requests.get(&user).map(|r| r.request_id) else {
            return;
        };
        if matches!(self.shared.store.request(open), Ok(None)) {
            self.forget_user_request(user, open);
        }
    }

    /// Forgets that `user`'s open request is `request` (it ended on another node).
    pub(crate) fn forget_user_request(&self, user: UserId, request: RequestId) {
        self.shared
            .user_requests
            .remove_if(&user, |_, r| r.request_id == request);
    }

    /// Starts a stored request's offer loop on the supervisor of its pickup's shard,
    /// wherever that shard is served.
    pub(super) async fn start_request(
        &self,
        stored: storage::OpenRequest,
        provenance: Provenance,
    ) -> Result<(), ActorError> {
        let shard = self.shared.map.shard_of(stored.pickup);
        let cell = self.cell(shard).ok_or_else(|| {
            ActorError::InvalidState("the pickup is outside the market this cluster serves".into())
        })?;
        let start = messages::StartStored { stored, provenance };
        match cell.ask(start).await {
            Ok(started) => started,
            Err(Unreached::Gone) => Err(ActorError::PeerUnavailable(format!(
                "cell {shard} has no owner now"
            ))),
            Err(Unreached::Peer(e)) => Err(e.into()),
        }
    }

    /// Starts a stored request's offer loop here (once: a request already running here
    /// is left alone).
    pub(crate) async fn start_stored(
        &self,
        stored: storage::OpenRequest,
        provenance: Provenance,
    ) -> Result<(), ActorError> {
        let task = self
            .shared
            .catalog
            .get(&stored.task)
            .ok_or(ActorError::UnknownTaskType)?;
        let pickup = stored.pickup;
        let shard = self.shared.map.shard_of(pickup);
        if self.place(shard) != Place::Here {
            return Err(ActorError::PeerUnavailable(format!(
                "cell {shard} is not served by this node any more"
            )));
        }
        if self.shared.requests.contains_key(&stored.request_id) {
            return Ok(());
        }
        // Handed over again after it ended here (allotted, cancelled, expired): done. A
        // request this node has just stored cannot have ended: nothing to read back.
        if provenance == Provenance::Handed
            && self
                .shared
                .store
                .request_async(stored.request_id)
                .await?
                .is_none()
        {
            return Ok(());
        }
        let spec = RequestSpec::resumed(&stored, task, pickup, &self.shared.clock);
        self.ask_supervisor(shard, messages::StartRequest { spec })
            .await?;
        Ok(())
    }

    /// Resumes the requests that were open when the engine stopped, with their deadlines
    /// and the associates who already refused them; drops those whose deadline passed
    /// while it was down. Returns how many resumed and how many expired.
    pub async fn recover_requests(&self) -> Result<(usize, usize), ActorError> {
        self.resume_requests(|_| true).await
    }

    /// Resumes the stored open requests whose pickup shard `wanted` accepts and that do
    /// not run here yet.
    pub(super) async fn resume_requests(
        &self,
        wanted: impl Fn(ShardId) -> bool,
    ) -> Result<(usize, usize), ActorError> {
        let mut resumed = 0;
        let mut expired = 0;
        for stored in self.shared.store.open_requests()? {
            let shard = self.shared.map.shard_of(stored.pickup);
            if !wanted(shard) || self.shared.requests.contains_key(&stored.request_id) {
                continue;
            }
            let pickup = stored.pickup;
            let Some(task) = self.shared.catalog.get(&stored.task) else {
                tracing::warn!(request = %stored.request_id, task = %stored.task, "dropping a stored request this configuration cannot serve");
                crate::disk::write(self.shared.store.remove_request(stored.request_id)).await?;
                expired += 1;
                continue;
            };
            if stored.deadline_at_ms <= self.now_ms() {
                crate::disk::write(self.shared.store.remove_request(stored.request_id)).await?;
                expired += 1;
                continue;
            }
            self.shared.user_requests.insert(
                stored.user_id,
                RequestReceived {
                    client_ref: stored.client_ref.clone(),
                    request_id: stored.request_id,
                    expires_at_ms: stored.deadline_at_ms,
                },
            );
            let spec = RequestSpec::resumed(&stored, task, pickup, &self.shared.clock);
            let shard = self.shared.map.shard_of(pickup);
            self.ask_supervisor(shard, messages::StartRequest { spec })
                .await?;
            resumed += 1;
        }
        Ok((resumed, expired))
    }

    /// This node now serves `shards`: resume their open requests (their former owner
    /// is gone or handed them over).
    pub(crate) async fn cells_gained(&self, shards: &[ShardId]) {
        match self.resume_requests(|s| shards.contains(&s)).await {
            Ok((0, 0)) => {}
            Ok((resumed, expired)) => {
                tracing::info!(
                    resumed,
                    expired,
                    cells = shards.len(),
                    "open requests taken over with cells"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "could not resume the open requests of gained cells")
            }
        }
    }

    /// This node no longer serves `shard`: stop the offer loops it ran there (their new
    /// owner resumes them from the store) without ending the requests; resolves once
    /// they are out of the address book.
    pub(crate) async fn cell_lost(&self, shard: ShardId) {
        crate::peers::relinquish_all(&self.shared.requests, shard).await;
    }

    /// Forgets a finished request (telling the user's node, in cluster mode).
    pub(crate) fn request_finished(&self, request: RequestId, user: UserId) {
        self.request_stopped(request);
        self.forget_user_request(user, request);
        if let Some(peers) = self.peers() {
            peers.publish(
                subjects::party(PartyId::User(user)),
                &ToParty::RequestEnded { request },
            );
        }
    }

    /// A request's offer loop stopped here (ended, or handed over with its cell).
    pub(crate) fn request_stopped(&self, request: RequestId) {
        self.shared.requests.remove(&request);
        self.shared.trails.remove(&request);
        if let Some(peers) = self.peers() {
            peers.unserve(Served::Request(request));
        }
    }
}

/// Where a stored request being started comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Provenance {
    /// Stored just now by the caller, which still holds the user's open request: it
    /// cannot have ended.
    JustStored,
    /// Handed over by another node, or a retry: it may have ended meanwhile.
    Handed,
}
