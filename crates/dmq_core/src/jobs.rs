//! The DMQ workers' job-queue policy: whether a job is admitted, and which
//! worker takes it.

/// Whether one more job may wait when `waiting` already do and at most
/// `limit` may (`job_queue_limit`; beyond it the sender gets 503).
pub fn admit(waiting: usize, limit: usize) -> bool {
    waiting < limit
}

/// The worker for the next job, from each worker's load (its jobs waiting
/// and running): an idle one (the first), else the least loaded one (the
/// first of equals).
/// One pass, no allocation (it runs for every queued KDMQ).
pub fn pick_worker(loads: impl IntoIterator<Item = usize>) -> usize {
    let mut least: Option<(usize, usize)> = None;
    for (i, load) in loads.into_iter().enumerate() {
        if load == 0 {
            return i;
        }
        if least.is_none_or(|(_, l)| load < l) {
            least = Some((i, load));
        }
    }
    least.map(|(i, _)| i).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_worker_first_else_the_least_loaded() {
        assert_eq!(pick_worker([3, 0, 0]), 1);
        assert_eq!(pick_worker([3, 2, 2]), 1);
        assert_eq!(pick_worker([1]), 0);
        assert_eq!(pick_worker([]), 0);
    }

    #[test]
    fn the_limit_counts_waiting_jobs() {
        assert!(admit(0, 1));
        assert!(!admit(1, 1));
        assert!(!admit(0, 0));
    }
}
