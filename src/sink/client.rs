//! The sender: requests on its own tokio runtime, at most `concurrency` in flight, a keyed rate
//! limiter (per dataset) taken on every attempt, retries with full-jitter backoff bounded in
//! count and in total time per batch, a run-wide pause when Meta throttles or usage nears 100 %,
//! and bisection of rejected batches.
//!
//! **Invariant:** every event of every submitted batch comes back in exactly one
//! [`EventOutcome`] — `Sent`, `Failed`, `Unknown` or `NotSent` — with its tag, whatever happens.

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, mpsc, watch};

use super::batch::{Auth, request_body_for};
use super::classify::{
    Action, FatalKind, GraphError, Headers, Transport, classify, classify_oversized,
    classify_transport, run_pause, usage,
};
use super::{Batch, Delivery, Endpoint, EventOutcome, GaveUp, NotSent, PendingEvent};

/// Longest single backoff.
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Longest pause between two probes of an unreachable endpoint.
const OUTAGE_PROBE_CAP: Duration = Duration::from_secs(15);
/// Longest wait Meta may ask for before we give up on a request.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// Everything the sender needs, built complete by `config` (never edited afterwards).
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// e.g. `https://graph.facebook.com` (tests: the emulator on loopback).
    pub endpoint: Endpoint,
    pub api_version: String,
    pub auth: Auth,
    pub partner_agent: Option<String>,
    pub test_event_code: Option<String>,
    pub concurrency: NonZeroUsize,
    /// Requests per second per dataset (every attempt counts).
    pub rate: Option<NonZeroU32>,
    pub timeout: Duration,
    pub max_retries: u32,
    /// First backoff; doubles per retry, full jitter, capped at 60 s.
    pub backoff_base: Duration,
    /// How long the endpoint may stay unreachable before the run stops (`--max-outage`).
    pub max_outage: Duration,
    /// How long a batch may spend retrying, waits included, counted from when it gets a slot
    /// (just before its first attempt): no wait that would end later is started; its rows are
    /// then `Failed` with the last error (`NotAttempted` if none was sent yet).
    pub max_retry_time: Duration,
}

/// What the sink tells the pipeline.
#[derive(Debug)]
pub enum SinkMessage<T> {
    Outcomes(Vec<EventOutcome<T>>),
    /// The run must stop (sent once): Meta refused the token or a permission.
    Fatal {
        kind: FatalKind,
        error: GraphError,
    },
    /// One dataset is cut off (sent once per dataset): a client revoked access, or its
    /// object is gone. Nothing more is sent to it; the run goes on.
    CutOff {
        dataset: String,
        error: GraphError,
    },
}

/// Counters for the progress bar.
#[derive(Clone, Copy, Debug, Default)]
pub struct SinkStats {
    pub in_flight: u64,
    pub requests: u64,
    pub events_sent: u64,
    pub events_failed: u64,
    pub events_unknown: u64,
    /// Requests per second since the previous call.
    pub rate: f64,
    /// The whole run waits: why, and for how much longer.
    pub waiting: Option<(Wait, Duration)>,
}

pub(super) struct Shared<T> {
    pub(super) cfg: SinkConfig,
    pub(super) client: reqwest::Client,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// Run-wide: no request to any dataset before this instant (throttling, usage near 100 %,
    /// an outage), and why. capi-spec.md §4: a throttle slows down the whole run, not just the
    /// request or dataset.
    pause: Mutex<Option<(Instant, Wait)>>,
    /// The endpoint cannot be reached: since when, why, and how many probes failed.
    outage: Mutex<Option<Outage>>,
    /// Datasets cut off by a permission error, with it.
    cut: Mutex<std::collections::HashMap<String, GraphError>>,
    /// No new attempts (Ctrl-C, --max-errors, fatal).
    stopped: AtomicBool,
    /// Turns true with `stopped`: wakes every task waiting out a backoff or a pause, since no
    /// attempt follows anyway (else Ctrl-C would wait up to 15 min for a throttle to end).
    halted: watch::Sender<bool>,
    fatal_sent: AtomicBool,
    /// Fires when the grace period after a stop is over: in-flight requests are abandoned.
    abandon: watch::Receiver<bool>,
    out: std::sync::mpsc::Sender<SinkMessage<T>>,
    in_flight: AtomicU64,
    requests: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    unknown: AtomicU64,
    rate_mark: Mutex<(Instant, u64)>,
}

/// Why the whole run waits, the lightest cause first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wait {
    /// Usage headers near or at 100 %.
    Usage,
    /// Meta throttled a request (or asked to wait).
    Throttled,
    /// The endpoint cannot be reached: probing with backoff.
    Outage,
}

impl Wait {
    pub fn name(self) -> &'static str {
        match self {
            Wait::Throttled => "throttled",
            Wait::Usage => "usage near the limit",
            Wait::Outage => "endpoint unreachable",
        }
    }
}

struct Outage {
    since: Instant,
    probes: u32,
}

pub struct Sender<T> {
    rt: tokio::runtime::Runtime,
    tx: Option<mpsc::Sender<Batch<T>>>,
    shared: Arc<Shared<T>>,
    abandon_tx: Arc<watch::Sender<bool>>,
    dispatcher: Option<tokio::task::JoinHandle<()>>,
}

/// Installs the TLS crypto provider once per process (reqwest is built without a default one).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client: rustls, gzip, connection reuse; no proxy for loopback endpoints.
pub fn http_client(endpoint: &Endpoint, timeout: Duration) -> Result<reqwest::Client> {
    install_crypto_provider();
    let mut b = reqwest::Client::builder()
        // A request body carries the token: a 3xx would re-post it wherever `Location` says.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .gzip(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("msgcapi/", env!("CARGO_PKG_VERSION")));
    if endpoint.is_loopback() {
        b = b.no_proxy();
    }
    b.build().context("cannot build the HTTP client")
}

impl<T: Send + 'static> Sender<T> {
    pub fn start(
        cfg: SinkConfig,
    ) -> Result<(Sender<T>, std::sync::mpsc::Receiver<SinkMessage<T>>)> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sink")
            .enable_all()
            .build()
            .context("cannot start the sender runtime")?;
        let client = http_client(&cfg.endpoint, cfg.timeout)?;
        let limiter = cfg
            .rate
            .map(|r| RateLimiter::keyed(Quota::per_second(r).allow_burst(NonZeroU32::MIN)));
        let (out, rx) = std::sync::mpsc::channel();
        let (abandon_tx, abandon) = watch::channel(false);
        let concurrency = cfg.concurrency.get();
        let shared = Arc::new(Shared {
            cfg,
            client,
            limiter,
            pause: Mutex::new(None),
            outage: Mutex::new(None),
            cut: Mutex::new(std::collections::HashMap::new()),
            stopped: AtomicBool::new(false),
            halted: watch::Sender::new(false),
            fatal_sent: AtomicBool::new(false),
            abandon,
            out,
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            rate_mark: Mutex::new((Instant::now(), 0)),
        });
        // A hand-off of one batch: the dispatcher takes a concurrency permit *before* it takes
        // the next batch, so at most `concurrency` batches are in flight plus one waiting.
        let (tx, mut brx) = mpsc::channel::<Batch<T>>(1);
        let sem = Arc::new(Semaphore::new(concurrency));
        let sh = shared.clone();
        let dispatcher = rt.spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            while let Some(batch) = brx.recv().await {
                if sh.stopped.load(Ordering::SeqCst) {
                    let not_sent = Delivery::NotSent {
                        why: NotSent::RunStopped,
                        error: None,
                    };
                    sh.emit(outcomes(batch.events, batch.id, 0, &not_sent));
                    continue;
                }
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    break;
                };
                let sh = sh.clone();
                tasks.spawn(async move {
                    // The batch's retry time runs from now, bisection included.
                    let deadline = Instant::now().checked_add(sh.cfg.max_retry_time);
                    let outs =
                        deliver(&sh, &batch.dataset_id, batch.id, batch.events, 0, deadline).await;
                    sh.emit(outs);
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        });
        Ok((
            Sender {
                rt,
                tx: Some(tx),
                shared,
                abandon_tx: Arc::new(abandon_tx),
                dispatcher: Some(dispatcher),
            },
            rx,
        ))
    }

    /// Looks accounts' datasets up with this sender's limiter, retries and pauses.
    pub fn resolver(&self) -> super::dataset::Resolver<T> {
        super::dataset::Resolver::new(self.shared.clone(), self.rt.handle().clone())
    }

    /// Is there room to hand over a batch without blocking?
    pub fn has_room(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.capacity() > 0)
    }

    /// The dispatcher is gone (it only goes when the sender finishes, or on a panic).
    pub fn is_closed(&self) -> bool {
        self.tx.as_ref().is_none_or(|t| t.is_closed())
    }

    /// Hands a batch over if there is room; gives it back otherwise.
    pub fn try_submit(&self, batch: Batch<T>) -> Result<(), Batch<T>> {
        let Some(tx) = &self.tx else {
            return Err(batch);
        };
        tx.try_send(batch).map_err(|e| match e {
            mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
        })
    }

    /// Stop starting requests; in-flight ones may finish within `grace`, then are abandoned.
    pub fn stop(&self, grace: Duration) {
        if self.shared.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.halted.send_replace(true);
        let tx = self.abandon_tx.clone();
        self.rt.spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = tx.send(true);
        });
    }

    /// No more batches: waits for every outcome, then shuts the runtime down.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(d) = self.dispatcher.take() {
            let _ = self.rt.block_on(d);
        }
    }

    pub fn stats(&self) -> SinkStats {
        let s = &self.shared;
        let requests = s.requests.load(Ordering::Relaxed);
        let rate = match s.rate_mark.lock() {
            Ok(mut m) => {
                let dt = m.0.elapsed().as_secs_f64();
                let r = if dt > 0.0 {
                    (requests - m.1) as f64 / dt
                } else {
                    0.0
                };
                if dt > 1.0 {
                    *m = (Instant::now(), requests);
                }
                r
            }
            Err(_) => 0.0,
        };
        SinkStats {
            in_flight: s.in_flight.load(Ordering::Relaxed),
            requests,
            events_sent: s.sent.load(Ordering::Relaxed),
            events_failed: s.failed.load(Ordering::Relaxed),
            events_unknown: s.unknown.load(Ordering::Relaxed),
            rate,
            waiting: s
                .paused()
                .map(|(until, why)| (why, until.saturating_duration_since(Instant::now()))),
        }
    }
}

impl<T> Shared<T> {
    fn emit(&self, outs: Vec<EventOutcome<T>>) {
        for o in &outs {
            match o.delivery {
                Delivery::Sent { .. } => &self.sent,
                Delivery::Failed { .. } => &self.failed,
                Delivery::Unknown { .. } => &self.unknown,
                Delivery::NotSent { .. } => continue,
            }
            .fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.out.send(SinkMessage::Outcomes(outs));
    }

    pub(super) fn fatal(&self, kind: FatalKind, error: &GraphError) {
        self.stopped.store(true, Ordering::SeqCst);
        self.halted.send_replace(true);
        if !self.fatal_sent.swap(true, Ordering::SeqCst) {
            let _ = self.out.send(SinkMessage::Fatal {
                kind,
                error: error.clone(),
            });
        }
    }

    /// Cuts `dataset` off; the pipeline hears of it once.
    fn cut_off(&self, dataset: &str, error: &GraphError) {
        let Ok(mut cut) = self.cut.lock() else { return };
        if cut.contains_key(dataset) {
            return;
        }
        cut.insert(dataset.to_string(), error.clone());
        let _ = self.out.send(SinkMessage::CutOff {
            dataset: dataset.to_string(),
            error: error.clone(),
        });
    }

    /// The error that cut `dataset` off, if it was.
    fn is_cut(&self, dataset: &str) -> Option<GraphError> {
        self.cut.lock().ok()?.get(dataset).cloned()
    }

    /// Holds every request of the run for at least `d` (a longer pause already set stands).
    /// While pauses overlap, the cause shown is the weightiest: an outage, then a throttle, then
    /// usage (a throttled answer also carries usage at 100 %).
    fn pause(&self, d: Duration, why: Wait) {
        if let Ok(mut p) = self.pause.lock() {
            let now = Instant::now();
            let Some(until) = now.checked_add(d) else {
                return;
            };
            let (until, why) = match *p {
                Some((t, w)) if t > now => (t.max(until), w.max(why)),
                _ => (until, why),
            };
            *p = Some((until, why));
        }
    }

    /// The run-wide pause in force, if any.
    fn paused(&self) -> Option<(Instant, Wait)> {
        self.pause
            .lock()
            .ok()
            .and_then(|p| *p)
            .filter(|(t, _)| *t > Instant::now())
    }

    fn pause_until(&self) -> Option<Instant> {
        self.paused().map(|(t, _)| t)
    }

    /// A request could not reach the endpoint: the run is in an outage. It pauses and probes
    /// with backoff (0.5 s, doubling, at most 15 s); once the endpoint has been unreachable for
    /// `--max-outage`, the run stops. Returns true when it has.
    fn unreachable(&self, cause: &str) -> bool {
        let Ok(mut o) = self.outage.lock() else {
            return false;
        };
        let now = Instant::now();
        let outage = o.get_or_insert(Outage {
            since: now,
            probes: 0,
        });
        let lasted = now.saturating_duration_since(outage.since);
        if lasted >= self.cfg.max_outage {
            drop(o);
            let error = GraphError {
                message: cause.to_string(),
                ..Default::default()
            };
            self.fatal(FatalKind::Outage, &error);
            return true;
        }
        let step = Duration::from_millis(500).saturating_mul(1 << outage.probes.min(5));
        outage.probes += 1;
        // The last probe is at the end of `--max-outage`, not after it.
        let left = self.cfg.max_outage - lasted;
        self.pause(step.min(OUTAGE_PROBE_CAP).min(left), Wait::Outage);
        false
    }

    /// An answer came (any answer): the endpoint is reachable again.
    fn reachable(&self) {
        if let Ok(mut o) = self.outage.lock()
            && o.take().is_some()
            && let Ok(mut p) = self.pause.lock()
            && p.is_some_and(|(_, w)| w == Wait::Outage)
        {
            *p = None;
        }
    }

    fn in_outage(&self) -> bool {
        self.outage.lock().is_ok_and(|o| o.is_some())
    }

    /// Sleeps until `until`, or less if the run stops meanwhile.
    async fn sleep_until(&self, until: Instant) {
        let mut halted = self.halted.subscribe();
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = halted.wait_for(|h| *h) => {}
        }
    }

    /// Waits out the run-wide pause, then this dataset's rate limiter; again if a pause began
    /// meanwhile. Does not start waiting out a pause longer than [`MAX_WAIT`] or one that would
    /// end after `deadline`. Returns at once when the run stops (the caller checks `stopped`).
    async fn wait_turn(&self, dataset: &str, deadline: Option<Instant>) -> Result<(), TooLong> {
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                return Ok(());
            }
            if let Some((until, why)) = self.paused() {
                // An outage is bounded by `--max-outage` and is no batch's retry time.
                if why != Wait::Outage {
                    let wait = until.saturating_duration_since(Instant::now());
                    if wait > MAX_WAIT {
                        return Err(TooLong::MetaAsked(wait));
                    }
                    if deadline.is_some_and(|d| until > d) {
                        return Err(TooLong::OutOfTime);
                    }
                }
                self.sleep_until(until).await;
                continue;
            }
            if let Some(l) = &self.limiter {
                l.until_key_ready(&dataset.to_string()).await;
            }
            if self.pause_until().is_none() {
                return Ok(());
            }
        }
    }
}

/// The same outcome for every event of `events`, each with its tag.
fn outcomes<T>(
    events: Vec<PendingEvent<T>>,
    batch: u64,
    attempts: u32,
    delivery: &Delivery,
) -> Vec<EventOutcome<T>> {
    events
        .into_iter()
        .map(|ev| EventOutcome {
            tag: ev.tag,
            batch,
            attempts,
            delivery: delivery.clone(),
        })
        .collect()
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, base·2^attempt)].
pub fn backoff(base: Duration, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(rng.f64())
}

/// How one request chain ended; `S` is what a success carries.
pub(super) enum Ended<S> {
    /// Meta answered: a success, or what the classifier made of any other answer.
    Done(Result<S, Action>),
    /// Its dataset was cut off before this request left.
    CutOff(GraphError),
    /// Stopped before the request was (re)sent: certainly not delivered.
    NotSent(Option<GraphError>),
    /// The next wait was too long, so it was not started: the last answer (if any) stands.
    GaveUp {
        last: Option<GraphError>,
        why: TooLong,
    },
}

/// Why a wait before the next attempt was not started.
#[derive(Clone, Copy, Debug)]
pub(super) enum TooLong {
    /// Meta asked for a wait longer than [`MAX_WAIT`] (this long).
    MetaAsked(Duration),
    /// It would end after the batch's `--max-retry-time` is over.
    OutOfTime,
}

/// Does a wait of `wait` from now end by `deadline`?
fn fits(deadline: Option<Instant>, wait: Duration) -> bool {
    deadline.is_none_or(|d| Instant::now().checked_add(wait).is_some_and(|end| end <= d))
}

/// Delivers `events` (a batch or part of one); bisects on rejection. `prior` = requests that
/// already carried these events; no wait ends after `deadline` (the batch's retry time).
fn deliver<'a, T: Send + 'a>(
    sh: &'a Shared<T>,
    dataset: &'a str,
    batch: u64,
    events: Vec<PendingEvent<T>>,
    prior: u32,
    deadline: Option<Instant>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<EventOutcome<T>>> + Send + 'a>> {
    Box::pin(async move {
        let cfg = &sh.cfg;
        let body = request_body_for(
            &events,
            cfg.partner_agent.as_deref(),
            cfg.test_event_code.as_deref(),
            Some(&cfg.auth),
        );
        let url = cfg.endpoint.events_url(&cfg.api_version, dataset);
        let n = events.len();
        let (ended, tries) = with_retries(sh, dataset, deadline, || async {
            match one_request(sh, &url, &body, n).await {
                Action::Success { fbtrace_id } => Ok(fbtrace_id),
                other => Err(other),
            }
        })
        .await;
        let attempts = prior + tries;
        let delivery = match ended {
            Ended::NotSent(error) => Delivery::NotSent {
                why: NotSent::RunStopped,
                error,
            },
            Ended::Done(Ok(fbtrace_id)) => Delivery::Sent { fbtrace_id },
            Ended::Done(Err(Action::Success { fbtrace_id })) => Delivery::Sent { fbtrace_id },
            Ended::Done(Err(Action::Split { error })) if events.len() == 1 => Delivery::Failed {
                error,
                gave_up: None,
            },
            Ended::Done(Err(Action::Split { error })) if sh.stopped.load(Ordering::SeqCst) => {
                Delivery::NotSent {
                    why: NotSent::RunStoppedWhileIsolating,
                    error: Some(error),
                }
            }
            Ended::Done(Err(Action::Split { .. })) => {
                let mut left = events;
                let right = left.split_off(left.len() / 2);
                let mut outs = deliver(sh, dataset, batch, left, attempts, deadline).await;
                outs.extend(deliver(sh, dataset, batch, right, attempts, deadline).await);
                return outs;
            }
            Ended::Done(Err(Action::Fatal { kind, error })) => {
                sh.fatal(kind, &error);
                if kind == FatalKind::Redirect {
                    // Answered, by someone else's address: not delivered, for certain.
                    Delivery::Failed {
                        error,
                        gave_up: None,
                    }
                } else {
                    Delivery::NotSent {
                        why: NotSent::Refused,
                        error: Some(error),
                    }
                }
            }
            Ended::Done(Err(Action::Reject { error })) => Delivery::Failed {
                error,
                gave_up: None,
            },
            Ended::Done(Err(Action::CutOff { error })) => {
                sh.cut_off(dataset, &error);
                Delivery::Failed {
                    error,
                    gave_up: None,
                }
            }
            Ended::CutOff(error) => Delivery::NotSent {
                why: NotSent::CutOff,
                error: Some(error),
            },
            // `with_retries` waits an outage out or stops the run: never the last answer.
            Ended::Done(Err(Action::Unreachable { .. })) => Delivery::NotSent {
                why: NotSent::RunStopped,
                error: None,
            },
            Ended::Done(Err(Action::Unknown { error })) => Delivery::Unknown { error },
            Ended::Done(Err(Action::Retry { error, .. } | Action::Throttle { error, .. })) => {
                Delivery::Failed {
                    error,
                    gave_up: Some(GaveUp::Attempts(tries)),
                }
            }
            Ended::GaveUp { last, why } => {
                let budget = sh.cfg.max_retry_time;
                match (last, why) {
                    (Some(error), TooLong::OutOfTime) => Delivery::Failed {
                        error,
                        gave_up: Some(GaveUp::OutOfTime {
                            attempts: tries,
                            budget,
                        }),
                    },
                    (None, TooLong::OutOfTime) => Delivery::NotSent {
                        why: NotSent::OutOfRetryTime { budget },
                        error: None,
                    },
                    (Some(error), TooLong::MetaAsked(wait)) => Delivery::Failed {
                        error,
                        gave_up: Some(GaveUp::MetaAsked {
                            attempts: tries,
                            wait,
                        }),
                    },
                    // The run goes on: a later batch is sent once Meta's wait is over.
                    (None, TooLong::MetaAsked(wait)) => Delivery::NotSent {
                        why: NotSent::MetaAsked(wait),
                        error: None,
                    },
                }
            }
        };
        outcomes(events, batch, attempts, &delivery)
    })
}

/// One request (`request` makes it, as often as needed), retried while transient or throttled,
/// at most `max_retries` times and with no wait that ends after `deadline`; `key` is its rate
/// limiter key (a dataset, or an account for the Dataset API). Returns how it ended and the
/// attempts made.
pub(super) async fn with_retries<S, F, Fut>(
    sh: &Shared<impl Sized>,
    key: &str,
    deadline: Option<Instant>,
    mut request: F,
) -> (Ended<S>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<S, Action>>,
{
    let cfg = &sh.cfg;
    let mut rng = fastrand::Rng::new();
    let mut last: Option<GraphError> = None;
    let mut deadline = deadline;
    // Requests that reached the endpoint (a request that could not connect carried nothing,
    // and is no retry of the batch: the run's outage handling waits it out).
    let mut tries = 0u32;
    loop {
        let attempt = tries;
        // The run-wide pause and the rate limiter, before every attempt.
        let (outage, waited) = (sh.in_outage(), Instant::now());
        if let Err(why) = sh.wait_turn(key, deadline).await {
            return (Ended::GaveUp { last, why }, tries);
        }
        if outage {
            // Time waiting out an outage is not the batch's retry time.
            deadline = deadline.and_then(|d| d.checked_add(waited.elapsed()));
        }
        if sh.stopped.load(Ordering::SeqCst) {
            return (Ended::NotSent(last), tries);
        }
        if let Some(error) = sh.is_cut(key) {
            return (Ended::CutOff(error), tries);
        }
        sh.requests.fetch_add(1, Ordering::Relaxed);
        sh.in_flight.fetch_add(1, Ordering::Relaxed);
        let answer = request().await;
        sh.in_flight.fetch_sub(1, Ordering::Relaxed);
        let action = match answer {
            Ok(done) => {
                sh.reachable();
                return (Ended::Done(Ok(done)), tries + 1);
            }
            Err(action) => action,
        };
        if let Action::Unreachable { cause } = &action {
            if sh.unreachable(cause) {
                return (Ended::NotSent(last), tries);
            }
            continue;
        }
        sh.reachable();
        tries += 1;
        let is_last = attempt == cfg.max_retries;
        match action {
            Action::Retry { after, error } => {
                if is_last {
                    return (Ended::Done(Err(Action::Retry { after, error })), tries);
                }
                let wait = after.unwrap_or_else(|| backoff(cfg.backoff_base, attempt, &mut rng));
                let why = if wait > MAX_WAIT {
                    TooLong::MetaAsked(wait)
                } else if !fits(deadline, wait) {
                    TooLong::OutOfTime
                } else {
                    last = Some(error);
                    sh.sleep_until(Instant::now() + wait).await;
                    continue;
                };
                let last = Some(error);
                return (Ended::GaveUp { last, why }, tries);
            }
            Action::Throttle { after, error } => {
                // The whole run slows down, every dataset, not just this request; the next
                // `wait_turn` waits it out, or gives up if it is too long.
                let wait = after.unwrap_or_else(|| {
                    backoff(cfg.backoff_base, attempt + 1, &mut rng).max(cfg.backoff_base)
                });
                sh.pause(wait, Wait::Throttled);
                if is_last {
                    return (Ended::Done(Err(Action::Throttle { after, error })), tries);
                }
                last = Some(error);
            }
            other => return (Ended::Done(Err(other)), tries),
        }
    }
}

/// Sends once and classifies; races the abandon signal (end of the grace period).
async fn one_request<T>(sh: &Shared<T>, url: &str, body: &str, sent: usize) -> Action {
    let mut abandon = sh.abandon.clone();
    let req = sh
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send();
    let resp = tokio::select! {
        r = req => r,
        _ = abandon.wait_for(|a| *a) => {
            return classify_transport(Transport::NoAnswer, "abandoned after the grace period");
        }
    };
    match resp {
        Err(e) => {
            let connect = e.is_connect();
            let detail = transport_detail(e);
            if connect {
                classify_transport(Transport::ConnectFailed, &detail)
            } else {
                classify_transport(Transport::NoAnswer, &detail)
            }
        }
        Ok(r) => {
            let status = r.status().as_u16();
            let headers = response_headers(&r);
            let bytes = match read_bounded(r, MAX_ANSWER_BYTES).await {
                Ok(Some(b)) => b,
                Ok(None) => return classify_oversized(status, MAX_ANSWER_BYTES),
                Err(e) => return classify_transport(Transport::NoAnswer, &transport_detail(e)),
            };
            let mut action = classify(status, &headers, &bytes, sent, chrono::Utc::now());
            // Text from the endpoint can echo the request, token included.
            action.scrub();
            // Whatever the answer, a success too: wait out the time Meta says access comes back
            // (`estimated_time_to_regain_access`, an ad account at 100 %), and pace down as usage
            // nears 100 %. The whole run holds, every dataset.
            if let Some(d) = run_pause(&usage(&headers)) {
                sh.pause(d, Wait::Usage);
            }
            action
        }
    }
}

/// The most of an answer's body msgcapi reads: Meta's answers are a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// An answer's body, read as it comes (decompressed), unless it is longer than `max` bytes
/// (`None`: the rest is never read, and never held).
pub async fn read_bounded(
    mut r: reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if r.content_length().is_some_and(|n| n > max as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The headers the classifier reads, from a response.
pub fn response_headers(r: &reqwest::Response) -> Headers {
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    Headers {
        retry_after: h("retry-after"),
        date: h("date"),
        business_use_case_usage: h("x-business-use-case-usage"),
        app_usage: h("x-app-usage"),
        ad_account_usage: h("x-ad-account-usage"),
    }
}

/// Why a request failed, for a message: "timed out" or the innermost cause, **never the URL**.
/// reqwest's `Display` prints the request URL, and a Graph GET carries `appsecret_proof` in its
/// query string (capi-spec.md §6: no secret in logs or URLs), so the URL is stripped first.
pub fn transport_detail(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_string();
    }
    root_cause(&e.without_url())
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_fit_the_deadline() {
        let soon = Instant::now() + Duration::from_secs(60);
        assert!(fits(None, Duration::from_secs(3600)));
        assert!(fits(Some(soon), Duration::from_secs(30)));
        assert!(!fits(Some(soon), Duration::from_secs(90)));
        assert!(!fits(Some(Instant::now()), Duration::from_millis(5)));
    }

    #[test]
    fn backoff_is_full_jitter_within_the_cap() {
        let mut rng = fastrand::Rng::with_seed(1);
        for attempt in 0..20 {
            let d = backoff(Duration::from_millis(500), attempt, &mut rng);
            assert!(d <= BACKOFF_CAP);
            assert!(d <= Duration::from_millis(500).saturating_mul(1 << attempt.min(16)));
        }
        let spread: Vec<Duration> = (0..50)
            .map(|_| backoff(Duration::from_millis(500), 3, &mut rng))
            .collect();
        assert!(
            spread.iter().any(|d| *d < Duration::from_secs(1))
                && spread.iter().any(|d| *d > Duration::from_secs(2))
        );
    }
}
