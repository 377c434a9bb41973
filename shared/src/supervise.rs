//! Keeps the process serving through a bug: every panic is logged where it happened and
//! counted, and confined to the one request or job that hit it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Locks `m` even if a panic poisoned it: the panic already failed its own request or job, and
/// the data a lock here guards (queues, caches, maps of due times) stays usable.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Logs every panic through `tracing` (thread, location, message) and counts it, then lets the
/// runtime's own handling go on (a request becomes a 500, a job is retried or skipped). The
/// default hook's stderr text is replaced: JSON logs stay JSON.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            panic.message = %message,
            panic.location = %location,
            thread = thread.name().unwrap_or("?"),
            "panic: a bug; the request or job that hit it failed, the process goes on"
        );
    }));
}

/// Panics since the process started (counted by the hook).
pub fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Runs `job` on the calling task and catches a panic in it: `None` when it panicked (already
/// logged and counted by the hook). [`contained`] without the task, for jobs run many at once
/// (a burst of firings), where a task each costs more than the job's own work.
pub async fn caught<F: Future>(what: &'static str, job: F) -> Option<F::Output> {
    let mut job = std::pin::pin!(job);
    let out = std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Some(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(None),
        }
    })
    .await;
    if out.is_none() {
        tracing::error!(
            job = what,
            "job panicked; it is given up and the loop goes on"
        );
    }
    out
}

/// Runs `job` as its own task so a panic in it ends only it: `None` when it panicked (already
/// logged and counted by the hook; `what` names the job for the log).
pub async fn contained<F>(what: &'static str, job: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match tokio::spawn(job).await {
        Ok(out) => Some(out),
        Err(e) if e.is_panic() => {
            tracing::error!(
                job = what,
                "job panicked; it is given up and the loop goes on"
            );
            None
        }
        // Cancelled: the runtime is shutting down.
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_ends_alone() {
        assert_eq!(contained("ok", async { 7 }).await, Some(7));
        let panicked: Option<()> = contained("boom", async { panic!("boom") }).await;
        assert_eq!(panicked, None);
        assert_eq!(contained("after", async { 8 }).await, Some(8));
    }

    #[tokio::test]
    async fn a_panicking_job_on_the_calling_task_ends_alone() {
        let panicked: Option<()> = caught("boom", async {
            tokio::task::yield_now().await;
            panic!("boom after a yield")
        })
        .await;
        assert_eq!(panicked, None);
        assert_eq!(caught("after", async { 8 }).await, Some(8));
    }
}
