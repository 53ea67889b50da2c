//! Acknowledgements: a write is acknowledged only once it is durable. Both backends hand
//! out these: a [`Ticket`] for a write already applied, a [`Durable`] for a write whose
//! outcome arrives with its commit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;

use crate::error::StorageError;

/// Seconds from a write's submission to its acknowledgement after `fdatasync`.
pub const DURABLE_WRITE_SECONDS: &str = "speedy_durable_write_seconds";

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A write that will be durable once the flush it waits for completes.
#[must_use = "a write is only durable once its ticket resolves"]
pub struct Ticket {
    wait: Option<BoxFuture<Result<(), StorageError>>>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("pending", &self.wait.is_some())
            .finish()
    }
}

impl Ticket {
    /// A ticket that resolves when `wait` does.
    pub(crate) fn from_future(wait: BoxFuture<Result<(), StorageError>>) -> Self {
        Self { wait: Some(wait) }
    }

    /// A ticket for a write that needs no flush (nothing was written).
    pub fn done() -> Self {
        Self { wait: None }
    }

    /// Waits until the write is on disk.
    pub async fn durable(self) -> Result<(), StorageError> {
        match self.wait {
            None => Ok(()),
            Some(wait) => wait.await,
        }
    }

    /// Blocks the thread until the write is on disk (not for use inside async code).
    pub fn wait(self) -> Result<(), StorageError> {
        match self.wait {
            None => Ok(()),
            Some(wait) => block_on(wait),
        }
    }
}

/// The outcome of a write run by the committer: resolves once the write is on disk (or
/// failed), with what the write returned.
#[must_use = "a durable write reports its outcome only to whoever awaits it"]
pub struct Durable<T> {
    fut: BoxFuture<Result<T, StorageError>>,
}

impl<T> std::fmt::Debug for Durable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Durable(..)")
    }
}

impl<T> Durable<T> {
    /// A durable write whose outcome `fut` delivers.
    pub(crate) fn from_future(fut: BoxFuture<Result<T, StorageError>>) -> Self {
        Self { fut }
    }

    /// Blocks the thread until the write is on disk (not for use inside async code).
    pub fn wait(self) -> Result<T, StorageError> {
        block_on(self.fut)
    }
}

impl<T> Future for Durable<T> {
    type Output = Result<T, StorageError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}

/// A read whose answer may arrive later: at once on the embedded store, after a round
/// trip on PostgreSQL. Await it instead of blocking a thread.
#[must_use = "a read answers only whoever awaits it"]
pub struct Reading<T> {
    fut: BoxFuture<Result<T, StorageError>>,
}

impl<T> std::fmt::Debug for Reading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reading(..)")
    }
}

impl<T: Send + 'static> Reading<T> {
    /// A read already answered.
    pub fn ready(answer: Result<T, StorageError>) -> Self {
        Self {
            fut: Box::pin(std::future::ready(answer)),
        }
    }
}

impl<T> Reading<T> {
    /// A read whose answer `fut` delivers.
    pub(crate) fn from_future(fut: BoxFuture<Result<T, StorageError>>) -> Self {
        Self { fut }
    }

    /// Blocks the thread until the answer arrives (not for use inside async code).
    pub fn wait(self) -> Result<T, StorageError> {
        block_on(self.fut)
    }
}

impl<T> Future for Reading<T> {
    type Output = Result<T, StorageError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}

/// Runs a future to completion on this thread (the committer's futures need no runtime:
/// they wait only on a `Notify` and a oneshot channel).
pub(crate) fn block_on<T>(fut: impl Future<Output = T>) -> T {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    // Called from inside a tokio task (a blocking read on a runtime thread), the task's
    // cooperative budget would run out and never refill while this thread waits here:
    // every tokio primitive would then answer "pending, poll again" at once, for ever.
    // Unconstrained, the wait is a real wait.
    let mut fut = std::pin::pin!(tokio::task::unconstrained(fut));
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}
