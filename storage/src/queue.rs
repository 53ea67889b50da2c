//! A group committer's bounded mailbox, shared by both backends: writers queue in call
//! order and wait for room when it is full; the committer takes everything queued as
//! one batch, so writes arriving together share one commit.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A committer's bounded mailbox: writers queue items in call order, the committer takes
/// them in batches.
pub(crate) struct Queue<T> {
    state: Mutex<QueueState<T>>,
    /// Wakes the committer when items arrive.
    arrived: Condvar,
    /// Wakes writers waiting for room.
    room: Notify,
    pub(crate) capacity: usize,
    /// Items the committer has finished with, counted in queue order.
    finished: AtomicU64,
    /// Wakes those waiting for the committer to finish with earlier items.
    progress: Notify,
    /// The committer has stopped: nothing more will finish.
    stopped: AtomicBool,
}

struct QueueState<T> {
    items: Vec<T>,
    closed: bool,
    /// Items ever queued: the mark of the next one.
    pushed: u64,
}

impl<T: Send + 'static> Queue<T> {
    /// An empty queue that holds at most `capacity` items.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(QueueState {
                items: Vec::new(),
                closed: false,
                pushed: 0,
            }),
            arrived: Condvar::new(),
            room: Notify::new(),
            capacity: capacity.max(1),
            finished: AtomicU64::new(0),
            progress: Notify::new(),
            stopped: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        // A panic while holding the lock leaves at worst a queue without the item being
        // pushed; its writer sees the ticket fail.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` now if there is room (or drops it if the queue is closed); gives it
    /// back if the queue is full.
    fn try_push(&self, item: T) -> Option<T> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        if state.items.len() >= self.capacity {
            return Some(item);
        }
        state.items.push(item);
        state.pushed += 1;
        self.arrived.notify_one();
        None
    }

    /// Queues `item` now if there is room, else once there is (the future waits).
    pub(crate) fn enqueue(self: &Arc<Self>, item: T) -> impl Future<Output = ()> + Send + 'static {
        let queue = self.clone();
        let waiting = self.try_push(item);
        async move {
            if let Some(item) = waiting {
                queue.push(item).await;
            }
        }
    }

    /// Queues `item`, waiting while the queue is full. After close the item is dropped,
    /// which its waiter sees as [`StorageError::Closed`].
    async fn push(&self, item: T) {
        let mut item = Some(item);
        loop {
            let notified = self.room.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a drain between the check and the await
            // still wakes this writer.
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed {
                    return;
                }
                if state.items.len() < self.capacity {
                    if let Some(item) = item.take() {
                        state.items.push(item);
                        state.pushed += 1;
                    }
                    self.arrived.notify_one();
                    return;
                }
            }
            notified.await;
        }
    }

    /// How many items have been queued so far: once [`Self::caught_up`] with this mark,
    /// the committer has finished every one of them.
    pub(crate) fn mark(&self) -> u64 {
        self.lock().pushed
    }

    /// Records that the committer finished with `n` more items (the oldest it had).
    pub(crate) fn finished(&self, n: usize) {
        self.finished.fetch_add(n as u64, Ordering::AcqRel);
        self.progress.notify_waiters();
    }

    /// Records that the committer has stopped for good.
    pub(crate) fn stopped(&self) {
        self.stopped.store(true, Ordering::Release);
        self.progress.notify_waiters();
    }

    /// Resolves once the committer has finished every item queued before `mark` was
    /// taken, or has stopped.
    pub(crate) async fn caught_up(&self, mark: u64) {
        loop {
            let notified = self.progress.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.finished.load(Ordering::Acquire) >= mark || self.stopped.load(Ordering::Acquire)
            {
                return;
            }
            notified.await;
        }
    }

    /// Items waiting now.
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Refuses new items and wakes everyone: the committer drains what is queued, then
    /// stops; items pushed later are dropped.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
        self.room.notify_waiters();
    }

    /// Tells writers waiting for room that a batch was taken.
    pub(crate) fn drained(&self) {
        self.room.notify_waiters();
    }

    /// Takes the next batch: blocks for a first item, then (with `max_wait`) lets more
    /// join. None once the queue is closed and drained.
    pub(crate) fn next_batch(&self, max_wait: Duration) -> Option<Vec<T>> {
        let queue = self;
        let mut state = queue.lock();
        while state.items.is_empty() {
            if state.closed {
                return None;
            }
            state = queue.arrived.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if max_wait > Duration::ZERO {
            let deadline = Instant::now() + max_wait;
            while !state.closed && state.items.len() < queue.capacity {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                state = queue
                    .arrived
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        Some(std::mem::take(&mut state.items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_mark_is_caught_up_only_once_every_item_queued_before_it_is_finished() {
        let queue = Arc::new(Queue::new(8));
        queue.enqueue(1).await;
        queue.enqueue(2).await;
        let mark = queue.mark();
        queue.enqueue(3).await;
        let first = queue.next_batch(Duration::ZERO).unwrap();
        assert_eq!(first, vec![1, 2, 3]);
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.caught_up(mark).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        queue.finished(first.len());
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("caught up once finished")
            .unwrap();
        // A later mark waits for later items; a stopped committer releases it.
        queue.enqueue(4).await;
        let later = queue.mark();
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.caught_up(later).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        queue.stopped();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released when the committer stops")
            .unwrap();
    }
}
