//! [`Repoll`]: a future that, when something wakes it while it is being polled, polls it again
//! at once instead of handing the wake to the runtime.
//!
//! Why a connection needs it: hyper runs a request's handler inside its connection's task, and
//! each piece of body the handler waits for wakes that same task while it runs (the body channel
//! tells the connection it wants more). tokio's work-stealing scheduler answers a task woken while
//! it runs by queueing it again *and waking an idle worker to steal it*; that worker finds the
//! task already taken and goes back to sleep. Issue 9 counted ~6,000 such needless wake-ups (an
//! eventfd write, then a sleep) per GiB uploaded on two cores; without them a 1 GiB upload went
//! from 1.31 to 1.18 CPU-s per GiB.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Not being polled.
const IDLE: u8 = 0;
/// Being polled.
const POLLING: u8 = 1;
/// Woken while being polled: to be polled again.
const NOTIFIED: u8 = 2;

/// Polls per wake from the runtime, at most; past that the wake goes to the runtime, as it would
/// without the wrapper, so one busy connection cannot keep its worker.
const MAX_POLLS: u32 = 16;

struct Shared {
    state: AtomicU8,
    /// The runtime's waker for the task, registered at each poll.
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self
            .state
            .compare_exchange(POLLING, NOTIFIED, Ordering::AcqRel, Ordering::Acquire)
        {
            // The poll under way sees it when it ends, and polls again.
            Ok(_) | Err(NOTIFIED) => {}
            // Between polls: the runtime must poll the task.
            Err(_) => self.task.wake(),
        }
    }
}

/// See the module docs.
pub struct Repoll<F> {
    inner: Pin<Box<F>>,
    shared: Arc<Shared>,
    waker: Waker,
}

impl<F: Future> Repoll<F> {
    pub fn new(inner: F) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        Repoll {
            inner: Box::pin(inner),
            waker: Waker::from(shared.clone()),
            shared,
        }
    }
}

impl<F: Future> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.shared.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..MAX_POLLS {
            this.shared.state.store(POLLING, Ordering::Release);
            if let Poll::Ready(out) = this.inner.as_mut().poll(&mut inner_cx) {
                this.shared.state.store(IDLE, Ordering::Release);
                return Poll::Ready(out);
            }
            if this
                .shared
                .state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Poll::Pending;
            }
            // Woken while polled. A resource that found the task's budget spent wakes it only to
            // make it yield: leave that to the runtime.
            if !tokio::task::coop::has_budget_remaining() {
                break;
            }
        }
        this.shared.state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Pending until polled `ready_at` times; wakes itself while polled each time before that.
    struct SelfWaking {
        polls: Arc<AtomicUsize>,
        ready_at: usize,
    }

    impl Future for SelfWaking {
        type Output = usize;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= self.ready_at {
                return Poll::Ready(n);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Counts the wakes the runtime would get.
    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn outer() -> (Arc<CountingWaker>, Waker) {
        let c = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn a_wake_while_polled_is_answered_by_polling_again_not_by_the_runtime() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut f = Repoll::new(SelfWaking {
            polls: polls.clone(),
            ready_at: 5,
        });
        let (count, waker) = outer();
        let out = Pin::new(&mut f).poll(&mut Context::from_waker(&waker));
        assert_eq!(out, Poll::Ready(5));
        assert_eq!(polls.load(Ordering::SeqCst), 5);
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "no wake reached the runtime");
    }

    #[test]
    fn past_the_poll_limit_the_wake_goes_to_the_runtime() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut f = Repoll::new(SelfWaking {
            polls: polls.clone(),
            ready_at: usize::MAX,
        });
        let (count, waker) = outer();
        assert!(Pin::new(&mut f).poll(&mut Context::from_waker(&waker)).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), MAX_POLLS as usize);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the last wake was passed on, not lost"
        );
    }

    #[test]
    fn a_wake_between_polls_reaches_the_runtime() {
        // Pending without waking itself; a wake from elsewhere afterwards must reach the runtime.
        let mut f = Repoll::new(std::future::pending::<()>());
        let (count, waker) = outer();
        assert!(Pin::new(&mut f).poll(&mut Context::from_waker(&waker)).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        f.waker.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_from_other_threads_are_never_lost() {
        // A channel fed from another thread: every message must arrive whatever the timing of
        // the wakes against the polls.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
        let sender = std::thread::spawn(move || {
            for i in 0..20_000 {
                tx.blocking_send(i).unwrap();
            }
        });
        let got = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            Repoll::new(async move {
                let mut n = 0u32;
                while let Some(i) = rx.recv().await {
                    assert_eq!(i, n);
                    n += 1;
                }
                n
            }),
        )
        .await
        .expect("a wake was lost");
        sender.join().unwrap();
        assert_eq!(got, 20_000);
    }
}
