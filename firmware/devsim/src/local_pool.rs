//! Worker threads for device futures that are not `Send`: embedded-tls keeps a raw pointer
//! range across an await, so a device running the core's TLS connector cannot move between
//! threads. Each worker is a single-threaded tokio runtime; devices are dealt out round-robin
//! and report back over a oneshot channel.

use std::future::Future;
use std::pin::Pin;
use tokio::sync::{mpsc, oneshot};

/// Builds a device future on its worker thread.
type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Threads with deep stacks, like the main runtime's (rings are built before they are boxed).
const STACK_BYTES: usize = 32 << 20;

/// One single-threaded runtime per core.
#[derive(Debug)]
pub struct LocalPool {
    workers: Vec<mpsc::UnboundedSender<Job>>,
    next: usize,
}

impl LocalPool {
    /// Starts one worker per available core.
    pub fn new() -> std::io::Result<Self> {
        let count = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            let (tx, rx) = mpsc::unbounded_channel::<Job>();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("devsim-tls-{i}"))
                .stack_size(STACK_BYTES)
                .spawn(move || work(runtime, rx))?;
            workers.push(tx);
        }
        Ok(Self { workers, next: 0 })
    }

    /// Runs the future `make` builds on the next worker; the receiver gets its output (or is
    /// closed if the worker died).
    pub fn spawn<T, F, M>(&mut self, make: M) -> oneshot::Receiver<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + 'static,
        M: FnOnce() -> F + Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _ = done.send(make().await);
            })
        });
        let worker = self.next % self.workers.len();
        self.next = self.next.wrapping_add(1);
        // A closed worker drops the job, and with it `done`: the caller sees the error.
        let _ = self.workers[worker].send(job);
        result
    }
}

/// A worker: takes jobs until the pool is dropped, then finishes the devices it runs.
fn work(runtime: tokio::runtime::Runtime, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        while let Some(job) = jobs.recv().await {
            tokio::task::spawn_local(job());
        }
    });
    runtime.block_on(local);
}
