//! Metric handles of the process-wide recorder, looked up once per label set instead of on
//! every record.
//!
//! Why: each `metrics::counter!` builds its key, copies it (one allocation) and hashes it into
//! the recorder's registry; on `POST /triggers/{id}/fire` five of them were 4% of the server's
//! CPU. A handle is cached only while the calling thread records to the process-wide recorder:
//! tests set recorders of their own per thread, and those must see what they record.

use std::sync::OnceLock;

use metrics::Recorder;

/// The address of the process-wide recorder, once one is installed (see [`note_installed`]).
static GLOBAL: OnceLock<usize> = OnceLock::new();

fn address(recorder: &dyn Recorder) -> usize {
    recorder as *const dyn Recorder as *const () as usize
}

/// Notes the recorder just installed process-wide, looked up from a new thread (where no
/// per-thread recorder can be set). Should no thread start, nothing is cached, which costs
/// only the lookups.
pub fn note_installed() {
    let looked_up = std::thread::Builder::new()
        .name("etp-metrics-probe".into())
        .spawn(|| metrics::with_recorder(address))
        .ok()
        .and_then(|thread| thread.join().ok());
    if let Some(addr) = looked_up {
        let _ = GLOBAL.set(addr);
    }
}

/// Whether this thread records to the process-wide recorder (it has none of its own).
fn recording_globally() -> bool {
    GLOBAL
        .get()
        .is_some_and(|global| metrics::with_recorder(address) == *global)
}

/// One handle (a counter or histogram with fixed labels), registered on first use.
pub struct Cached<H> {
    handle: OnceLock<H>,
}

impl<H> Cached<H> {
    pub const fn new() -> Self {
        Self {
            handle: OnceLock::new(),
        }
    }

    /// Runs `f` on the handle `register` gives: the cached one when this thread records
    /// process-wide, a fresh lookup otherwise.
    pub fn with(&self, register: impl FnOnce() -> H, f: impl FnOnce(&H)) {
        if recording_globally() {
            f(self.handle.get_or_init(register));
        } else {
            f(&register());
        }
    }
}

impl<H> Default for Cached<H> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, feature = "prometheus"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_with_its_own_recorder_sees_what_it_records() {
        // The process-wide recorder, as the local server installs it.
        let _ = crate::telemetry::prometheus::installed();
        static COUNTER: Cached<metrics::Counter> = Cached::new();
        let register = || metrics::counter!("etp_handles_test_total");
        // Cached from the process-wide recorder first...
        COUNTER.with(register, |c| c.increment(1));
        // ...yet a thread's own recorder is not bypassed.
        let recorder = crate::telemetry::prometheus::recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            COUNTER.with(register, |c| c.increment(2));
        });
        assert!(
            handle.render().contains("etp_handles_test_total 2"),
            "{}",
            handle.render()
        );
        if let Some(global) = crate::telemetry::prometheus::installed() {
            assert!(global.render().contains("etp_handles_test_total 1"));
        }
    }
}
