//! Location transparency: a typed ref reaches a thing (an associate, a request, an
//! order, a cell) the same way whether it lives on this node or on another one.
//!
//! The actix messages that cross nodes are the wire vocabulary: each implements
//! [`Remote`] (a name, and serde on the message and its answer). A [`Ref`] is either a
//! local endpoint that [`Takes`] the message (an actor's address, or a registry slot
//! looked up at the moment of sending) or the thing's subject on NATS; `tell` and `ask`
//! work alike on both. On the other node one generic server ([`serve`]) reads the
//! message's name, decodes it and hands it to the local endpoint through a table of
//! [`Routes`] built once per kind of thing: nothing is translated by hand.
//!
//! On the wire a message is its name, a space, and its JSON; an answer is
//! `Result<answer, Gone>` as JSON, `Gone` when the thing is not there any more.

use std::collections::HashMap;
use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, Message};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{PeerError, Peers, Served};

/// A message that may cross nodes.
pub(crate) trait Remote: Message + Serialize + DeserializeOwned + Send + 'static {
    /// Its name on the wire (unique among the messages one kind of thing takes).
    const NAME: &'static str;
}

/// What an answer needs to cross nodes.
pub(crate) trait Answer: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Answer for T {}

/// The answer a node gives when the thing a message was for is not there any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Gone;

/// Why a message got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unreached {
    /// The thing is not there (its actor stopped, or no node serves its subject).
    Gone,
    /// Its node did not answer in time, or the answer could not be read.
    Peer(PeerError),
}

impl From<Unreached> for crate::ActorError {
    fn from(e: Unreached) -> Self {
        match e {
            Unreached::Gone => crate::ActorError::Internal("actor unavailable".into()),
            Unreached::Peer(e) => e.into(),
        }
    }
}

/// A local endpoint that takes `M`: it either handles it or says it is gone.
pub(crate) trait Takes<M: Message> {
    /// Sends without waiting for an answer; false if the endpoint is gone.
    fn tell(&self, msg: M) -> bool;
    /// Sends and waits for the answer; none if the endpoint is gone.
    fn ask(&self, msg: M) -> BoxFuture<'static, Option<M::Result>>;
}

impl<A, M> Takes<M> for Addr<A>
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn tell(&self, msg: M) -> bool {
        self.do_send(msg);
        self.connected()
    }

    fn ask(&self, msg: M) -> BoxFuture<'static, Option<M::Result>> {
        let asked = self.send(msg);
        async move { asked.await.ok() }.boxed()
    }
}

/// Where a thing's messages go on NATS: one subject, or one per message name (a cell's
/// index changes, searches and starts go on subjects of their own).
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    base: Arc<str>,
    per_message: bool,
}

impl Subject {
    /// Every message on `base`.
    pub(crate) fn one(base: String) -> Self {
        Self {
            base: base.into(),
            per_message: false,
        }
    }

    /// Each message on `base.<name>`.
    pub(crate) fn per_message(base: String) -> Self {
        Self {
            base: base.into(),
            per_message: true,
        }
    }

    /// The subject a message named `name` goes on.
    pub(crate) fn of(&self, name: &str) -> String {
        match self.per_message {
            true => format!("{}.{name}", self.base),
            false => self.base.to_string(),
        }
    }
}

/// A thing, reached here through `L` or on another node through its subject.
#[derive(Debug, Clone)]
pub(crate) enum Ref<L> {
    /// On this node.
    Here(L),
    /// On another node.
    There {
        /// The link to the others.
        peers: Peers,
        /// Where its messages go.
        subject: Subject,
    },
}

impl<L> Ref<L> {
    /// Sends `msg` without waiting; false if the thing is known to be gone (a message to
    /// another node is sent in order with everything else and not confirmed).
    pub(crate) fn tell<M: Remote>(&self, msg: M) -> bool
    where
        L: Takes<M>,
    {
        match self {
            Ref::Here(local) => local.tell(msg),
            Ref::There { peers, subject } => {
                peers.push_encoded(subject.of(M::NAME), encode(&msg));
                true
            }
        }
    }

    /// Sends `msg` and waits for its answer (on another node, for the call timeout).
    pub(crate) fn ask<M: Remote>(&self, msg: M) -> BoxFuture<'static, Result<M::Result, Unreached>>
    where
        L: Takes<M>,
        M::Result: Answer,
    {
        self.ask_within(msg, std::time::Duration::ZERO)
    }

    /// Like [`Ref::ask`], with `extra` time on top of the call timeout (for answers that
    /// wait on something slow themselves, such as a payment gateway).
    pub(crate) fn ask_within<M: Remote>(
        &self,
        msg: M,
        extra: std::time::Duration,
    ) -> BoxFuture<'static, Result<M::Result, Unreached>>
    where
        L: Takes<M>,
        M::Result: Answer,
    {
        match self {
            Ref::Here(local) => {
                let asked = local.ask(msg);
                async move { asked.await.ok_or(Unreached::Gone) }.boxed()
            }
            Ref::There { peers, subject } => {
                let timeout = peers.call_timeout() + extra;
                let asked = peers.call_encoded(subject.of(M::NAME), encode(&msg), timeout);
                async move {
                    match asked.await {
                        Ok(body) => {
                            match serde_json::from_slice::<Result<M::Result, Gone>>(&body) {
                                Ok(Ok(answer)) => Ok(answer),
                                Ok(Err(Gone)) => Err(Unreached::Gone),
                                Err(e) => Err(Unreached::Peer(PeerError::Failed(format!(
                                    "decoding the answer to {}: {e}",
                                    M::NAME
                                )))),
                            }
                        }
                        Err(PeerError::NoResponders(_)) => Err(Unreached::Gone),
                        Err(e) => Err(Unreached::Peer(e)),
                    }
                }
                .boxed()
            }
        }
    }
}

/// A message as it goes on the wire: its name, a space, its JSON.
fn encode<M: Remote>(msg: &M) -> Result<Bytes, String> {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(M::NAME.as_bytes());
    body.push(b' ');
    serde_json::to_writer(&mut body, msg).map_err(|e| format!("encoding {}: {e}", M::NAME))?;
    Ok(body.into())
}

/// The name and the JSON of a message off the wire.
fn split(payload: &[u8]) -> Option<(&str, &[u8])> {
    let space = payload.iter().position(|b| *b == b' ')?;
    let name = std::str::from_utf8(&payload[..space]).ok()?;
    Some((name, &payload[space + 1..]))
}

/// How one message reaches a local endpoint of type `L`.
type Route<L> = fn(&L, &Peers, &async_nats::Message, &[u8]);

/// The messages one kind of thing takes from other nodes, by name.
pub(crate) struct Routes<L> {
    table: HashMap<&'static str, Route<L>>,
}

impl<L: 'static> Routes<L> {
    /// No messages yet.
    pub(crate) fn new() -> Self {
        Self {
            table: HashMap::new(),
        }
    }

    /// Takes `M` as well: told if it comes without a reply subject, asked (and
    /// answered) if it comes with one.
    pub(crate) fn with<M: Remote>(mut self) -> Self
    where
        L: Takes<M>,
        M::Result: Answer,
    {
        let earlier = self.table.insert(M::NAME, route::<L, M>);
        debug_assert!(earlier.is_none(), "two messages named {}", M::NAME);
        self
    }

    /// The names of the messages taken.
    pub(crate) fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.table.keys().copied()
    }
}

/// Decodes `M` and hands it to `local`, answering on the reply subject if there is one.
fn route<L: Takes<M>, M: Remote>(
    local: &L,
    peers: &Peers,
    message: &async_nats::Message,
    body: &[u8],
) where
    M::Result: Answer,
{
    let msg: M = match serde_json::from_slice(body) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(subject = %message.subject, name = M::NAME, error = %e, "unreadable peer message");
            return;
        }
    };
    match &message.reply {
        None => {
            local.tell(msg);
        }
        Some(reply) => {
            let asked = local.ask(msg);
            let (peers, reply) = (peers.clone(), reply.to_string());
            tokio::spawn(async move {
                let answer = asked.await.ok_or(Gone);
                match serde_json::to_vec(&answer) {
                    Ok(body) => peers.push_encoded(reply, Ok(body.into())),
                    Err(e) => {
                        tracing::error!(name = M::NAME, error = %e, "could not encode an answer")
                    }
                }
            });
        }
    }
}

/// Serves `what` on the subjects of `subject` (one per message name if it has one each):
/// every message that arrives goes to `local` through `routes`.
pub(crate) fn serve<L: Send + Sync + 'static>(
    peers: &Peers,
    what: Served,
    subject: &Subject,
    local: L,
    routes: &'static Routes<L>,
) {
    let subjects = match subject.per_message {
        true => routes.names().map(|n| subject.of(n)).collect(),
        false => vec![subject.of("")],
    };
    let answer = peers.clone();
    let on = Arc::new(move |m: async_nats::Message| {
        let Some((name, body)) = split(&m.payload) else {
            tracing::warn!(subject = %m.subject, "a peer message without a name");
            return;
        };
        match routes.table.get(name) {
            Some(route) => route(&local, &answer, &m, body),
            None => {
                tracing::warn!(subject = %m.subject, name, "a peer message this node does not take")
            }
        }
    });
    peers.serve(what, subjects, on);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize, Message)]
    #[rtype(result = "Option<u64>")]
    struct Probe {
        n: u64,
    }

    impl Remote for Probe {
        const NAME: &'static str = "probe";
    }

    #[test]
    fn a_message_goes_on_the_wire_as_its_name_and_json() {
        let body = encode(&Probe { n: 7 }).unwrap();
        assert_eq!(&body[..], b"probe {\"n\":7}");
        let (name, json) = split(&body).unwrap();
        assert_eq!(name, "probe");
        assert_eq!(
            serde_json::from_slice::<Probe>(json).unwrap(),
            Probe { n: 7 }
        );
        assert_eq!(split(b"no-name"), None);
    }

    #[test]
    fn an_answer_that_is_itself_empty_stays_apart_from_gone() {
        let none: Result<Option<u64>, Gone> = Ok(None);
        let gone: Result<Option<u64>, Gone> = Err(Gone);
        let (a, b) = (
            serde_json::to_string(&none).unwrap(),
            serde_json::to_string(&gone).unwrap(),
        );
        assert_ne!(a, b);
        assert_eq!(
            serde_json::from_str::<Result<Option<u64>, Gone>>(&a).unwrap(),
            none
        );
        assert_eq!(
            serde_json::from_str::<Result<Option<u64>, Gone>>(&b).unwrap(),
            gone
        );
    }

    #[test]
    fn a_cell_subject_has_one_subject_per_message() {
        let cell = Subject::per_message("speedy.cell.abc".into());
        assert_eq!(cell.of("search"), "speedy.cell.abc.search");
        let one = Subject::one("speedy.associate.x".into());
        assert_eq!(one.of("reserve"), "speedy.associate.x");
    }
}
