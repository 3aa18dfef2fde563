//! The bounded worker pool inference runs on.
//!
//! Inference is CPU-bound, so it runs on blocking threads, at most `workers` at a time (by
//! default one per core). Up to `queue_depth` more requests may wait for a worker; a request
//! arriving when all workers are busy and the queue is full is refused at once
//! ([`PoolError::Busy`], HTTP 503) instead of queueing without bound.
//!
//! Two semaphores implement this. `admission` holds `workers + queue_depth` permits and is only
//! ever *tried*, never awaited, so admission cannot block; `running` holds `workers` permits and
//! is awaited in FIFO order by admitted requests. A job keeps both permits until it returns, so
//! a request abandoned by its client while queued gives its place back without running, and a
//! running job is never cut short.

use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::sync::Semaphore;

/// Sizes of the worker pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Inference jobs running at once; defaults to the number of cores.
    pub workers: usize,
    /// Jobs allowed to wait for a worker before requests are refused with 503.
    pub queue_depth: usize,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        let workers = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        PoolConfig {
            workers,
            queue_depth: 4 * workers,
        }
    }
}

/// Why the pool did not run a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every worker is busy and the queue is full.
    #[error(
        "all {workers} inference workers are busy and {queue_depth} requests are already waiting"
    )]
    Busy {
        /// The pool's worker count.
        workers: usize,
        /// The pool's queue depth.
        queue_depth: usize,
    },
    /// The job panicked or its thread was cancelled at shutdown.
    #[error("the inference job did not complete: {0}")]
    Failed(String),
}

/// A bounded pool of blocking inference workers. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct InferencePool {
    config: PoolConfig,
    admission: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

impl InferencePool {
    /// A pool with `config.workers` workers (at least one) and `config.queue_depth` queue
    /// places.
    pub fn new(config: PoolConfig) -> InferencePool {
        let config = PoolConfig {
            workers: config.workers.max(1),
            queue_depth: config.queue_depth,
        };
        let capacity = config.workers.saturating_add(config.queue_depth);
        InferencePool {
            admission: Arc::new(Semaphore::new(capacity.min(Semaphore::MAX_PERMITS))),
            running: Arc::new(Semaphore::new(config.workers.min(Semaphore::MAX_PERMITS))),
            config,
        }
    }

    /// The sizes in effect.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Runs `job` on a worker thread and returns its result; refuses at once with
    /// [`PoolError::Busy`] when the workers and the queue are all taken.
    ///
    /// Must be called from within a Tokio runtime.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let admitted = Arc::clone(&self.admission)
            .try_acquire_owned()
            .map_err(|_| PoolError::Busy {
                workers: self.config.workers,
                queue_depth: self.config.queue_depth,
            })?;
        let worker = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|e| PoolError::Failed(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            // Both permits live until the job returns, even if the caller stops waiting.
            let _permits = (admitted, worker);
            job()
        })
        .await
        .map_err(|e| PoolError::Failed(e.to_string()))
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.config.workers - self.running.available_permits().min(self.config.workers)
    }

    /// Jobs admitted and waiting for a worker now.
    pub fn queued(&self) -> usize {
        let capacity = self.config.workers.saturating_add(self.config.queue_depth);
        let admitted = capacity - self.admission.available_permits().min(capacity);
        admitted.saturating_sub(self.running())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_returns_their_results() {
        let pool = InferencePool::new(PoolConfig {
            workers: 2,
            queue_depth: 2,
        });
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
        assert_eq!((pool.running(), pool.queued()), (0, 0));
    }

    #[tokio::test]
    async fn refuses_when_workers_and_queue_are_full_and_recovers() {
        let pool = Arc::new(InferencePool::new(PoolConfig {
            workers: 1,
            queue_depth: 1,
        }));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                pool.run(move || {
                    started_tx.send(()).unwrap();
                    gate_rx.recv().unwrap();
                    1
                })
                .await
            })
        };
        started_rx.await.unwrap();
        // The worker is taken; polling this once takes the only queue place.
        let queued = pool.run(|| 2);
        tokio::pin!(queued);
        assert!(futures_util::poll!(&mut queued).is_pending());
        assert_eq!((pool.running(), pool.queued()), (1, 1));
        assert_eq!(
            pool.run(|| 3).await,
            Err(PoolError::Busy {
                workers: 1,
                queue_depth: 1
            })
        );
        gate_tx.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(1));
        assert_eq!(queued.await, Ok(2));
        assert_eq!(pool.run(|| 4).await, Ok(4));
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_crash() {
        let pool = InferencePool::new(PoolConfig::default());
        #[allow(clippy::panic)]
        let result = pool.run(|| -> u8 { panic!("boom") }).await;
        assert!(matches!(result, Err(PoolError::Failed(_))), "{result:?}");
        assert_eq!(pool.run(|| 5).await, Ok(5));
    }

    #[test]
    fn at_least_one_worker() {
        let pool = InferencePool::new(PoolConfig {
            workers: 0,
            queue_depth: 0,
        });
        assert_eq!(pool.config().workers, 1);
    }
}
