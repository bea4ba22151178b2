//! Jobs and events: one long operation at a time, each on its own named thread, with its state queryable
//! and its progress broadcast.
//!
//! A [`Job`] goes `queued` → `running` → `succeeded` | `failed`; the table refuses a second job while one
//! is queued or running ([`AppError::Busy`] names the one that runs), and keeps the last finished ones so
//! a client that polls sees the outcome. Every change is an [`Event`] sent to every subscriber (the API's
//! `/api/events`, later the window), numbered in order. Progress is throttled to about ten events a
//! second per job; phase changes always go through. Each subscriber's queue is bounded
//! ([`SUBSCRIBER_QUEUE`]): one that falls that far behind is dropped, so a client that stops reading
//! cannot grow the owner's memory.
//!
//! Job ids grow with the clock as well as one by one ([`next_job_id`]), so an owner restarted by `exec`
//! after a self-update never hands out the ids of the process before it.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AppError;
use crate::download::CancelToken;

/// How many finished jobs are kept for queries.
const KEPT_JOBS: usize = 32;
/// The shortest gap between two progress events of one job with the same phase.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Events queued for one subscriber (about a minute of progress). One that falls this far behind is
/// dropped: its receiver gets what was queued, then sees the end (an event stream then ends, and its
/// client polls `/api/jobs/{id}` or reconnects).
pub const SUBSCRIBER_QUEUE: usize = 512;

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Check,
    Download,
    Install,
    Rollback,
    BackendStart,
    BackendStop,
    BackendRestart,
    ModelsDownload,
    /// The headless runner's own scheduled round (check, download, install as the settings allow).
    ScheduledUpdate,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Check => "check",
            JobKind::Download => "download",
            JobKind::Install => "install",
            JobKind::Rollback => "rollback",
            JobKind::BackendStart => "backend_start",
            JobKind::BackendStop => "backend_stop",
            JobKind::BackendRestart => "backend_restart",
            JobKind::ModelsDownload => "models_download",
            JobKind::ScheduledUpdate => "scheduled_update",
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

/// How far a running job is: a phase (`checking`, `downloading`, `resuming`, `retrying`, `restarted`,
/// `verifying`, `verified`, `reusing_download`, `installing`, `stopping_backend`, `starting_backend`,
/// `healthy`, `rolling_back`, `checking_model`, `downloading_model`, `model_finished`, …) and, while
/// bytes move, how many and how fast. `detail` is a short text for the phase (a version, a reason).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// The download's speed, averaged by the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<f64>,
    /// The time left at that speed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Progress {
    pub fn phase(phase: &str) -> Self {
        Progress {
            phase: phase.to_owned(),
            done: None,
            total: None,
            bytes_per_sec: None,
            eta_secs: None,
            detail: None,
        }
    }

    /// `phase` with `detail`.
    pub fn with_detail(phase: &str, detail: impl Into<String>) -> Self {
        Progress {
            detail: Some(detail.into()),
            ..Progress::phase(phase)
        }
    }
}

/// One job, as queries and events show it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub kind: JobKind,
    pub state: JobState,
    pub progress: Option<Progress>,
    /// Why it failed (the whole message, naming the next step).
    pub message: Option<String>,
    /// What it produced (the engine's report), once it succeeded.
    pub result: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Something that changed, in the order it happened (`id` counts up from 1).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A job was queued, started or finished (the whole job).
    Job { job: Job },
    /// A running job's progress.
    Progress { job: u64, progress: Progress },
    /// The backend's state changed.
    Backend {
        status: crate::supervisor::BackendStatus,
    },
    /// The settings file was changed through the service.
    Settings,
}

impl EventKind {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Job { .. } => "job",
            EventKind::Progress { .. } => "progress",
            EventKind::Backend { .. } => "backend",
            EventKind::Settings => "settings",
        }
    }
}

#[derive(Default)]
struct Table {
    next_id: u64,
    /// The job queued or running, if any.
    current: Option<u64>,
    cancel: Option<CancelToken>,
    jobs: VecDeque<Job>,
}

#[derive(Default)]
struct Bus {
    next_id: u64,
    subscribers: Vec<mpsc::SyncSender<Event>>,
}

/// The job table and the event bus; shared by the service and its job threads.
#[derive(Clone, Default)]
pub struct Jobs {
    table: Arc<Mutex<Table>>,
    bus: Arc<Mutex<Bus>>,
}

/// The id after `last`: one more, or the microseconds since 1970 if that is more. A process that starts
/// later (the owner after its `exec` restart) thus starts above every id the one before it gave out,
/// unless that one gave out more than a million a second or the clock went back. Below 2^53 until the
/// year 2255, so JavaScript clients read them exactly.
fn next_job_id(last: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    last.saturating_add(1).max(now)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Jobs {
    /// A receiver of every event from now on, as long as it keeps within [`SUBSCRIBER_QUEUE`] events
    /// of the newest; dropping it unsubscribes.
    pub fn subscribe(&self) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::sync_channel(SUBSCRIBER_QUEUE);
        lock(&self.bus).subscribers.push(tx);
        rx
    }

    /// Sends `kind` to every subscriber, numbered; forgets subscribers that went away or fell
    /// [`SUBSCRIBER_QUEUE`] events behind. Never blocks.
    pub fn publish(&self, kind: EventKind) {
        let mut bus = lock(&self.bus);
        bus.next_id += 1;
        let event = Event {
            id: bus.next_id,
            kind,
        };
        bus.subscribers.retain(|tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::TrySendError::Full(_)) => {
                tracing::warn!(
                    "an event subscriber fell {SUBSCRIBER_QUEUE} events behind and was dropped (a client that stopped reading /api/events?)"
                );
                false
            }
            Err(mpsc::TrySendError::Disconnected(_)) => false,
        });
    }

    /// The job `id`, if it is still kept.
    pub fn get(&self, id: u64) -> Option<Job> {
        lock(&self.table).jobs.iter().find(|j| j.id == id).cloned()
    }

    /// The job queued or running, if any.
    pub fn current(&self) -> Option<Job> {
        let table = lock(&self.table);
        let id = table.current?;
        table.jobs.iter().find(|j| j.id == id).cloned()
    }

    /// The jobs kept, newest first.
    pub fn list(&self) -> Vec<Job> {
        lock(&self.table).jobs.iter().rev().cloned().collect()
    }

    /// Asks the running job to stop (downloads stop at the next chunk; an install stops before it
    /// switches). Returns the job asked, if one runs.
    pub fn cancel_current(&self) -> Option<u64> {
        self.cancel_job(None)
    }

    /// Cancels the running job if it is `only` (any, when `None`): a late Ctrl-C of a job that has ended
    /// must not cancel the next one, someone else's. Returns the job cancelled.
    pub fn cancel_job(&self, only: Option<u64>) -> Option<u64> {
        let table = lock(&self.table);
        let id = table.current?;
        if only.is_some_and(|wanted| wanted != id) {
            return None;
        }
        if let Some(token) = &table.cancel {
            token.cancel();
        }
        Some(id)
    }

    /// Queues a job of `kind`, or refuses with [`AppError::Busy`] naming the job that runs.
    fn admit(&self, kind: JobKind, state: JobState) -> Result<(Job, CancelToken), AppError> {
        let job = {
            let mut table = lock(&self.table);
            if let Some(running) = table
                .current
                .and_then(|id| table.jobs.iter().find(|j| j.id == id))
            {
                return Err(AppError::Busy {
                    running: running.kind,
                    job: running.id,
                });
            }
            table.next_id = next_job_id(table.next_id);
            let job = Job {
                id: table.next_id,
                kind,
                state,
                progress: None,
                message: None,
                result: None,
                created_at: Utc::now(),
                finished_at: None,
            };
            let cancel = CancelToken::new();
            table.current = Some(job.id);
            table.cancel = Some(cancel.clone());
            table.jobs.push_back(job.clone());
            while table.jobs.len() > KEPT_JOBS {
                match table.jobs.iter().position(|j| j.state.is_finished()) {
                    Some(i) => {
                        table.jobs.remove(i);
                    }
                    None => break,
                }
            }
            (job, cancel)
        };
        self.publish(EventKind::Job { job: job.0.clone() });
        Ok(job)
    }

    fn change(&self, id: u64, f: impl FnOnce(&mut Job)) -> Option<Job> {
        let mut table = lock(&self.table);
        let job = table.jobs.iter_mut().find(|j| j.id == id)?;
        f(job);
        let job = job.clone();
        if job.state.is_finished() && table.current == Some(id) {
            table.current = None;
            table.cancel = None;
        }
        Some(job)
    }

    fn finish(&self, id: u64, outcome: Result<serde_json::Value, AppError>) {
        let job = self.change(id, |job| {
            job.finished_at = Some(Utc::now());
            match outcome {
                Ok(result) => {
                    job.state = JobState::Succeeded;
                    job.result = Some(result);
                }
                Err(e) => {
                    job.state = JobState::Failed;
                    job.message = Some(e.to_string());
                }
            }
        });
        if let Some(job) = job {
            self.publish(EventKind::Job { job });
        }
    }

    /// Runs `work` on a thread named `job-<kind>` and returns the job's id at once. Refused with
    /// [`AppError::Busy`] while another job is queued or running.
    pub fn spawn(
        &self,
        kind: JobKind,
        work: impl FnOnce(&JobCtx) -> Result<serde_json::Value, AppError> + Send + 'static,
    ) -> Result<u64, AppError> {
        let (job, cancel) = self.admit(kind, JobState::Queued)?;
        let id = job.id;
        let jobs = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("job-{kind}"))
            .spawn(move || {
                if let Some(job) = jobs.change(id, |j| j.state = JobState::Running) {
                    jobs.publish(EventKind::Job { job });
                }
                let ctx = JobCtx {
                    id,
                    jobs: jobs.clone(),
                    cancel,
                    last: Mutex::new(None),
                };
                let outcome = work(&ctx);
                if let Err(e) = &outcome {
                    // Info, not warn: the face that asked reports the failure itself (the CLI prints it once, as its
                    // error line); the owner's log keeps it at its default info level.
                    tracing::info!(job = id, %kind, "job failed: {e}");
                }
                jobs.finish(id, outcome);
            });
        if let Err(e) = spawned {
            self.finish(
                id,
                Err(AppError::Internal(format!(
                    "cannot start a thread for the job: {e}"
                ))),
            );
            return Err(AppError::Internal(format!(
                "cannot start a thread for {kind}: {e}"
            )));
        }
        Ok(id)
    }

    /// Marks a job of `kind` as running for as long as the guard lives, for work that runs on the
    /// caller's own thread (the headless runner's scheduled round): other jobs are refused meanwhile.
    pub fn hold(&self, kind: JobKind) -> Result<JobGuard, AppError> {
        let (job, cancel) = self.admit(kind, JobState::Running)?;
        Ok(JobGuard {
            ctx: JobCtx {
                id: job.id,
                jobs: self.clone(),
                cancel,
                last: Mutex::new(None),
            },
            outcome: None,
        })
    }
}

/// What a job's work gets: its id, its cancel token, and a way to report progress.
pub struct JobCtx {
    pub id: u64,
    jobs: Jobs,
    pub cancel: CancelToken,
    last: Mutex<Option<(Instant, String)>>,
}

impl JobCtx {
    /// Records and broadcasts progress, at most about ten times a second per phase.
    pub fn progress(&self, progress: Progress) {
        {
            let mut last = lock(&self.last);
            let same_phase_soon = last
                .as_ref()
                .is_some_and(|(at, phase)| *phase == progress.phase && at.elapsed() < PROGRESS_INTERVAL);
            let complete = progress.total.is_some() && progress.done == progress.total;
            if same_phase_soon && !complete {
                return;
            }
            *last = Some((Instant::now(), progress.phase.clone()));
        }
        let p = progress.clone();
        self.jobs.change(self.id, |j| j.progress = Some(p));
        self.jobs.publish(EventKind::Progress {
            job: self.id,
            progress,
        });
    }
}

/// A job held by [`Jobs::hold`]; it finishes when dropped: succeeded (with what [`JobGuard::succeed`]
/// recorded, or null), unless [`JobGuard::fail`] said otherwise.
pub struct JobGuard {
    ctx: JobCtx,
    outcome: Option<Result<serde_json::Value, String>>,
}

impl JobGuard {
    pub fn ctx(&self) -> &JobCtx {
        &self.ctx
    }

    /// Records that the held work failed, with `message`.
    pub fn fail(&mut self, message: String) {
        self.outcome = Some(Err(message));
    }

    /// Records what the held work produced (the job's `result`).
    pub fn succeed(&mut self, result: serde_json::Value) {
        self.outcome = Some(Ok(result));
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        let outcome = match self.outcome.take() {
            Some(Err(message)) => Err(AppError::Failed(message)),
            Some(Ok(value)) => Ok(value),
            None => Ok(serde_json::Value::Null),
        };
        self.ctx.jobs.finish(self.ctx.id, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_finished(jobs: &Jobs, id: u64) -> Job {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let job = jobs.get(id).unwrap();
            if job.state.is_finished() {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} never finished");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_second_job_is_refused_while_one_runs_and_the_refusal_names_it() {
        let jobs = Jobs::default();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let first = jobs
            .spawn(JobKind::Install, move |_| {
                release_rx.recv().ok();
                Ok(serde_json::json!({"installed": true}))
            })
            .unwrap();
        let refused = jobs.spawn(JobKind::Download, |_| Ok(serde_json::Value::Null));
        match refused {
            Err(AppError::Busy { running, job }) => {
                assert_eq!(running, JobKind::Install);
                assert_eq!(job, first);
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        assert!(jobs.hold(JobKind::ScheduledUpdate).is_err(), "a held job too");
        release_tx.send(()).unwrap();
        let done = wait_finished(&jobs, first);
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(done.result.unwrap()["installed"], true);
        let second = jobs.spawn(JobKind::Download, |_| Ok(serde_json::Value::Null));
        assert!(second.is_ok(), "a job is admitted once the first finished");
    }

    #[test]
    fn cancelling_reaches_the_running_job_and_it_fails_with_its_message() {
        let jobs = Jobs::default();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let id = jobs
            .spawn(JobKind::Download, move |ctx| {
                started_tx.send(()).unwrap();
                while !ctx.cancel.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(AppError::Cancelled)
            })
            .unwrap();
        started_rx.recv().unwrap();
        assert_eq!(jobs.cancel_current(), Some(id));
        let done = wait_finished(&jobs, id);
        assert_eq!(done.state, JobState::Failed);
        assert!(done.message.unwrap().contains("cancelled"));
        assert_eq!(jobs.cancel_current(), None, "nothing runs any more");
    }

    #[test]
    fn events_arrive_in_order_queued_running_progress_finished() {
        let jobs = Jobs::default();
        let events = jobs.subscribe();
        let id = jobs
            .spawn(JobKind::Check, |ctx| {
                ctx.progress(Progress::phase("checking"));
                // Throttled: the same phase again at once is dropped...
                ctx.progress(Progress::phase("checking"));
                // ...a new phase is not.
                ctx.progress(Progress::phase("done"));
                Ok(serde_json::json!({"update_available": false}))
            })
            .unwrap();
        wait_finished(&jobs, id);
        let seen: Vec<Event> = events.try_iter().collect();
        let names: Vec<String> = seen
            .iter()
            .map(|e| match &e.kind {
                EventKind::Job { job } => format!("job:{:?}", job.state),
                EventKind::Progress { progress, .. } => format!("progress:{}", progress.phase),
                other => other.name().to_owned(),
            })
            .collect();
        assert_eq!(
            names,
            [
                "job:Queued",
                "job:Running",
                "progress:checking",
                "progress:done",
                "job:Succeeded"
            ]
        );
        assert!(seen.windows(2).all(|w| w[0].id < w[1].id), "numbered in order");
    }

    #[test]
    fn a_held_job_blocks_others_and_finishes_when_dropped() {
        let jobs = Jobs::default();
        let guard = jobs.hold(JobKind::ScheduledUpdate).unwrap();
        let id = guard.ctx().id;
        assert!(matches!(
            jobs.spawn(JobKind::Install, |_| Ok(serde_json::Value::Null)),
            Err(AppError::Busy {
                running: JobKind::ScheduledUpdate,
                ..
            })
        ));
        drop(guard);
        assert_eq!(jobs.get(id).unwrap().state, JobState::Succeeded);
        assert!(jobs.current().is_none());
    }

    #[test]
    fn a_subscriber_that_stops_reading_is_dropped_once_its_queue_is_full_and_the_others_go_on() {
        let jobs = Jobs::default();
        let stalled = jobs.subscribe();
        let reader = jobs.subscribe();
        let mut read = 0;
        for _ in 0..SUBSCRIBER_QUEUE + 100 {
            jobs.publish(EventKind::Settings);
            // The reader keeps up.
            while reader.try_recv().is_ok() {
                read += 1;
            }
        }
        assert_eq!(
            read,
            SUBSCRIBER_QUEUE + 100,
            "a reader that keeps up misses nothing"
        );
        assert_eq!(
            stalled.try_iter().count(),
            SUBSCRIBER_QUEUE,
            "what was queued is still delivered"
        );
        assert!(
            matches!(stalled.try_recv(), Err(mpsc::TryRecvError::Disconnected)),
            "then the stalled subscriber sees the end, so its event stream ends and its client polls"
        );
        assert_eq!(lock(&jobs.bus).subscribers.len(), 1, "only the reader is kept");
    }

    #[test]
    fn job_ids_do_not_repeat_across_two_job_tables_as_after_an_exec_restart() {
        let before = Jobs::default();
        let first = before
            .spawn(JobKind::Check, |_| Ok(serde_json::Value::Null))
            .unwrap();
        wait_finished(&before, first);
        let second_in_same = before
            .spawn(JobKind::Check, |_| Ok(serde_json::Value::Null))
            .unwrap();
        assert!(second_in_same > first, "ids grow within one table");
        wait_finished(&before, second_in_same);
        // A new process (here: a new table) starts above every id the old one gave out.
        let after = Jobs::default();
        let restarted = after
            .spawn(JobKind::Check, |_| Ok(serde_json::Value::Null))
            .unwrap();
        assert!(
            restarted > second_in_same,
            "{restarted} after a restart must not repeat an id of the process before ({first}, {second_in_same})"
        );
        assert!(restarted < 1 << 53, "JavaScript reads {restarted} exactly");
    }
}
