//! The centre actor: one OS thread owns the [`Centre`] and the [`Store`].
//!
//! SQLite calls block, so they get a thread of their own instead of stalling the async
//! runtime. Requests arrive over a bounded channel (back-pressure instead of unbounded
//! memory when the disk is slow). The thread **group-commits**: it blocks for one
//! request, drains whatever else is already queued (up to [`MAX_BATCH`]; when busy and
//! the batch is small it first lingers [`LINGER`] for more), applies all of
//! it to the core, writes every resulting change in one store transaction, and only then
//! publishes one snapshot and answers everyone. A caller is therefore never told a
//! contact number that a crash could take back. If the write fails, the core is rolled
//! back and every request in the batch that changed something gets
//! [`CentreError::Storage`].
//!
//! One file of ~1,050 production lines on purpose: the handle's requests, the thread's loop
//! that batches them, and the retry of facts after a failed write are one protocol (every
//! `Request` variant is matched in both halves); split, each half would have to be read
//! with the other open. The core it drives lives in `core/`.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::agent::{AgentError, AgentId, AttemptOutcome};
use super::chat::{Author, ChatMessage, PostError, Posted};
use super::command::{CommandError, CommandRequest, Confirmation, Effect};
use super::contact::{ContactId, ContactStatus, EndReason, NewContact, Timestamp};
use super::core::{
    Admit, Admitted, AgentInput, AgentOp, CallLost, Centre, CentreError, Change, ClaimPlace, End,
    FreshNumbers, LostCall, Post, SessionBack, Snapshot, Tick, TransferOutcome,
};
use super::queue::CentreConfig;
use super::queue_log::QueueLogLine;
use super::queue_log_file::QueueLogFile;
use super::storage::{Store, StoreError};
use super::view::ViewHandle;

/// Requests that may wait for the centre thread before senders are made to wait.
pub const REQUEST_CAPACITY: usize = 1024;

/// Most requests folded into one store transaction: bounds the latency one batch adds
/// to the requests at its front.
pub const MAX_BATCH: usize = 256;

/// Group-commit linger: when a batch is small and requests have been arriving steadily,
/// the thread waits this long for more before committing, so one fsync (and one WAL write
/// of the pages every commit touches: the index tails, the event table's last page)
/// covers more calls. At 1,000 calls/s a batch otherwise holds 4-5 requests and 2 ms
/// makes it 10-11: 2.3x fewer fsyncs, ~25% fewer WAL pages written, ~30% fewer context
/// switches. It trades at most this much latency for CPU; replies still go out only
/// after the commit.
pub const LINGER: Duration = Duration::from_millis(2);

/// A batch this big already shares its commit well: commit at once.
const LINGER_BELOW: usize = 16;

/// Linger only when the previous batch was collected this recently: an idle gateway (one
/// call now and then) answers at once instead of waiting for company that is not coming.
const LINGER_IF_BUSY: Duration = Duration::from_millis(5);

/// Effects a slow subscriber may fall behind by before it misses some (it then sees
/// `RecvError::Lagged`).
pub const EFFECT_CAPACITY: usize = 1024;

/// After a failed store write, ticks (which would hit the same failure) wait this long.
const STORAGE_RETRY: Duration = Duration::from_secs(1);

/// Store-checked numbers kept ready beyond a batch's admissions.
const FRESH_SPARE: usize = 16;

impl Timestamp {
    /// The wall clock. Only the actor reads it; the core is handed `now`.
    pub fn now_wall() -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Timestamp(ms)
    }
}

/// Why the centre could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The stored contacts could not be read: fix or move the data directory.
    #[error("cannot load stored contacts: {0}")]
    Load(StoreError),
    /// The post-restart state (calls marked disconnected) could not be written.
    #[error("cannot store the restored state: {0}")]
    Persist(StoreError),
    /// The OS refused a thread or timer.
    #[error("cannot start the centre thread: {0}")]
    Thread(std::io::Error),
    /// The OS has no randomness to give; contact numbers must not be predictable.
    #[error("cannot seed the contact-number generator: {0}")]
    Entropy(String),
    /// The configured queue log file cannot be opened or written: check its path and
    /// permissions, or turn it off.
    #[error("cannot write the queue log {path}: {source}")]
    QueueLog {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// What an admission answers: the contact's committed status, and whether the caller
/// rejoined a contact lost in a restart (then never told its number: see `Admitted`).
#[derive(Debug, Clone)]
pub struct Admission {
    pub status: ContactStatus,
    pub rejoined: bool,
}

enum Request {
    Admit {
        contact: NewContact,
        reply: oneshot::Sender<Result<Admission, CentreError>>,
    },
    End {
        id: ContactId,
        reason: EndReason,
        reply: oneshot::Sender<Result<(), CentreError>>,
    },
    /// A call keyed the number of a kept place (`ClaimPlace`).
    Claim {
        current: ContactId,
        number: ContactId,
        reply: oneshot::Sender<Result<Admission, CentreError>>,
    },
    /// The status of a contact the view does not hold (ended and out of memory).
    Stored {
        id: ContactId,
        reply: oneshot::Sender<Option<ContactStatus>>,
    },
    /// The story of a contact the view does not hold (ended and out of memory).
    Timeline {
        id: ContactId,
        reply: oneshot::Sender<Option<super::timeline::Timeline>>,
    },
    Command {
        request: CommandRequest,
        reply: oneshot::Sender<Result<Confirmation, CommandError>>,
    },
    /// A supervisor moves a waiting contact (answered like a caller's command).
    SupervisorMove {
        input: super::core::SupervisorMove,
        reply: oneshot::Sender<Result<Confirmation, CommandError>>,
    },
    Agent {
        agent: AgentId,
        op: AgentOp,
        reply: oneshot::Sender<Result<(), AgentError>>,
    },
    Transfer {
        id: ContactId,
        ok: bool,
        detail: String,
        reply: oneshot::Sender<Result<(), CentreError>>,
    },
    /// A live call found dead (`CallLost`).
    Lost {
        id: ContactId,
        why: LostCall,
        reply: oneshot::Sender<Result<(), CentreError>>,
    },
    /// A chat or IM message (`Post`).
    Post {
        post: Post,
        reply: oneshot::Sender<Result<Posted, PostError>>,
    },
    /// A chat or IM customer is back (`SessionBack`).
    Back {
        id: ContactId,
        reply: oneshot::Sender<Result<(), CentreError>>,
    },
    /// The transcript of a contact the view does not hold (ended and out of memory).
    Transcript {
        id: ContactId,
        reply: oneshot::Sender<Vec<ChatMessage>>,
    },
}

/// The way into the centre for everyone else. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CentreHandle {
    requests: mpsc::Sender<Request>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    effects: broadcast::Sender<Effect>,
    view: ViewHandle,
}

impl CentreHandle {
    /// Admits a call. Returns once the new contact is committed to the store; the status
    /// is as of the end of its batch (the same as the snapshot published with it).
    pub async fn admit(&self, contact: NewContact) -> Result<ContactStatus, CentreError> {
        self.admit_call(contact).await.map(|a| a.status)
    }

    /// [`CentreHandle::admit`], also saying whether the caller rejoined a contact lost in a
    /// restart (matched on the calling number) instead of getting a new one.
    pub async fn admit_call(&self, contact: NewContact) -> Result<Admission, CentreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Admit { contact, reply }).await?;
        answer.await.map_err(|_| CentreError::ShuttingDown)?
    }

    /// The contact's live call is dead (`why`): it becomes disconnected and keeps its place
    /// for `keep_place_secs`, never offered meanwhile. Returns once committed.
    pub async fn call_lost(&self, id: ContactId, why: LostCall) -> Result<(), CentreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Lost { id, why, reply }).await?;
        answer.await.map_err(|_| CentreError::ShuttingDown)?
    }

    /// The live call of contact `current` keyed `number`, the contact number of a place
    /// kept for a dropped call: the call goes on as that contact (`rejoined`), `current`
    /// ends as merged. Any refusal (`NotFound`: no such kept place; `AlreadyEnded`: this
    /// call is no longer just waiting) changes nothing. Returns once committed.
    pub async fn claim_place(
        &self,
        current: ContactId,
        number: ContactId,
    ) -> Result<Admission, CentreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Claim {
            current,
            number,
            reply,
        })
        .await?;
        answer.await.map_err(|_| CentreError::ShuttingDown)?
    }

    /// Ends a contact (caller hung up, call rejected). Returns once committed.
    pub async fn end(&self, id: ContactId, reason: EndReason) -> Result<(), CentreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::End { id, reason, reply }).await?;
        answer.await.map_err(|_| CentreError::ShuttingDown)?
    }

    /// Current committed status, including ended contacts within retention. Read from the
    /// view: never waits for the centre thread (and answers after it stopped).
    /// A contact that ended long ago (out of memory, see `ENDED_VISIBLE_SECS`) is read back
    /// from the store by the centre thread: rare, and never for a live contact.
    pub async fn status(&self, id: ContactId) -> Option<ContactStatus> {
        if let Some(status) = self.view.status(&id) {
            return Some(status);
        }
        let (reply, answer) = oneshot::channel();
        self.send(Request::Stored { id, reply }).await.ok()?;
        answer.await.ok().flatten()
    }

    /// The contact's story for its caller, as committed: from the view, or for a contact
    /// that ended long ago, read back from the store by the centre thread (rare).
    pub async fn timeline(&self, id: ContactId) -> Option<Arc<super::timeline::Timeline>> {
        if let Some(t) = self.view.timeline(&id) {
            return Some(t);
        }
        let (reply, answer) = oneshot::channel();
        self.send(Request::Timeline { id, reply }).await.ok()?;
        answer.await.ok().flatten().map(Arc::new)
    }

    /// Posts a message to a chat or IM contact's transcript (see [`Post`]): answered with
    /// the stored message once the batch is committed; an agent's message then also goes
    /// out as [`Effect::Deliver`].
    pub async fn post(
        &self,
        contact: ContactId,
        author: Author,
        text: String,
    ) -> Result<Posted, PostError> {
        let (reply, answer) = oneshot::channel();
        let post = Post {
            contact,
            author,
            text,
        };
        self.requests
            .send(Request::Post { post, reply })
            .await
            .map_err(|_| PostError::ShuttingDown)?;
        answer.await.map_err(|_| PostError::ShuttingDown)?
    }

    /// The customer of a chat or IM contact away (disconnected with
    /// [`LostCall::Idle`]) is back: queued again in its place. Returns once committed.
    pub async fn session_back(&self, id: ContactId) -> Result<(), CentreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Back { id, reply }).await?;
        answer.await.map_err(|_| CentreError::ShuttingDown)?
    }

    /// Up to `max` messages of a contact's transcript after `seq` `after`, and the latest
    /// `seq`: from the view (never the centre thread) for a remembered contact; for one
    /// that ended long ago, read from the store by the centre thread (rare). `None`: no
    /// such contact in memory and nothing stored.
    pub async fn transcript(
        &self,
        id: ContactId,
        after: u32,
        max: usize,
    ) -> Option<(Vec<ChatMessage>, u32)> {
        if let Some(found) = self.view.messages(&id, after, max) {
            return Some(found);
        }
        let (reply, answer) = oneshot::channel();
        self.send(Request::Transcript { id, reply }).await.ok()?;
        let all = answer.await.ok()?;
        let last = all.last().map_or(0, |m| m.seq);
        (!all.is_empty()).then(|| {
            let t = super::chat::Transcript::from_messages(all);
            (t.after(after, max), last)
        })
    }

    /// The read view: statuses without the centre thread, and per-contact subscriptions.
    pub fn view(&self) -> &ViewHandle {
        &self.view
    }

    /// Carries out a caller's command: validated against the contact's current state
    /// (see [`Centre::command`]), committed, then confirmed; its effects go to
    /// [`subscribe_effects`](Self::subscribe_effects) receivers once committed. If the
    /// write fails nothing was changed and the answer is `Storage`.
    pub async fn command(&self, request: CommandRequest) -> Result<Confirmation, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Command { request, reply })
            .await
            .map_err(|_| CommandError::ShuttingDown)?;
        answer.await.map_err(|_| CommandError::ShuttingDown)?
    }

    /// A supervisor moves a waiting contact to another queue, keeping its seniority (see
    /// `core::supervisor`). Answered like [`command`](Self::command), once committed.
    pub async fn supervisor_move(
        &self,
        input: super::core::SupervisorMove,
    ) -> Result<Confirmation, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::SupervisorMove { input, reply })
            .await
            .map_err(|_| CommandError::ShuttingDown)?;
        answer.await.map_err(|_| CommandError::ShuttingDown)?
    }

    /// Logs an agent in (not ready). Returns once committed.
    pub async fn agent_login(&self, agent: AgentId) -> Result<(), AgentError> {
        self.agent_request(agent, AgentOp::Login).await
    }

    /// The agent is ready; routing may offer them a contact at once (an `Offer` effect).
    pub async fn agent_ready(&self, agent: AgentId) -> Result<(), AgentError> {
        self.agent_request(agent, AgentOp::Ready).await
    }

    pub async fn agent_not_ready(&self, agent: AgentId, reason: String) -> Result<(), AgentError> {
        self.agent_request(agent, AgentOp::NotReady(reason)).await
    }

    pub async fn agent_logout(&self, agent: AgentId) -> Result<(), AgentError> {
        self.agent_request(agent, AgentOp::Logout).await
    }

    /// The agent answered the offered contact.
    pub async fn offer_answered(&self, agent: AgentId) -> Result<(), AgentError> {
        self.agent_request(agent, AgentOp::Answered).await
    }

    /// The offer failed (`why`): the agent goes not ready, the contact back to its place.
    pub async fn offer_failed(&self, agent: AgentId, why: String) -> Result<(), AgentError> {
        self.agent_request(agent, AgentOp::Failed(why)).await
    }

    /// The offer failed on the caller's side (`why`): the agent stays ready, the contact
    /// goes back to its place (no longer offered after repeated failures).
    pub async fn offer_failed_by_caller(
        &self,
        agent: AgentId,
        why: String,
    ) -> Result<(), AgentError> {
        self.agent_request(agent, AgentOp::FailedByCaller(why))
            .await
    }

    /// The agent finished the contact: it ends `Completed`, the agent wraps up.
    pub async fn contact_handled(&self, agent: AgentId) -> Result<(), AgentError> {
        self.agent_request(agent, AgentOp::Handled).await
    }

    /// How a call-back attempt of the agent's call-back went (see
    /// [`Centre::callback_attempt`]). Returns once committed.
    pub async fn callback_attempt(
        &self,
        agent: AgentId,
        outcome: AttemptOutcome,
    ) -> Result<(), AgentError> {
        self.agent_request(agent, AgentOp::Attempt(outcome)).await
    }

    /// The outcome of an [`Effect::Transfer`]: `ok` ends the contact `Transferred`,
    /// otherwise it keeps its place with a notice naming `detail` (see
    /// [`Centre::transfer_result`]). Returns once committed.
    pub async fn transfer_result(
        &self,
        id: ContactId,
        ok: bool,
        detail: String,
    ) -> Result<(), CentreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Transfer {
            id,
            ok,
            detail,
            reply,
        })
        .await?;
        answer.await.map_err(|_| CentreError::ShuttingDown)?
    }

    async fn agent_request(&self, agent: AgentId, op: AgentOp) -> Result<(), AgentError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Agent { agent, op, reply })
            .await
            .map_err(|_| AgentError::ShuttingDown)?;
        answer.await.map_err(|_| AgentError::ShuttingDown)?
    }

    /// Effects of committed commands (end a call, re-announce a position), in commit
    /// order. Only effects committed after this call are received.
    pub fn subscribe_effects(&self) -> broadcast::Receiver<Effect> {
        self.effects.subscribe()
    }

    /// The board (queues, agents and the contacts they hold, counters), one per committed
    /// batch. Readers never wait on the centre thread. A contact's own status is read from
    /// [`view`](Self::view).
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    async fn send(&self, request: Request) -> Result<(), CentreError> {
        self.requests
            .send(request)
            .await
            .map_err(|_| CentreError::ShuttingDown)
    }
}

/// Loads the store, restores the centre (live calls from before become disconnected),
/// persists that, and starts the centre thread.
///
/// Loading happens on the calling thread so a broken store fails the start instead of
/// the first call. The thread stops once `shutdown` is cancelled and the requests
/// already queued are answered (or once every handle is dropped).
pub fn spawn(
    config: CentreConfig,
    mut store: Box<dyn Store>,
    shutdown: CancellationToken,
) -> Result<(CentreHandle, JoinHandle<()>), StartError> {
    let now = Timestamp::now_wall();
    // Contacts that ended earlier than this stay out of memory (`Centre::restore`).
    let ended_since = Timestamp(now.0.saturating_sub(super::core::ENDED_VISIBLE_SECS * 1000));
    let stored = store.load_since(ended_since).map_err(StartError::Load)?;
    let rng = StdRng::try_from_os_rng().map_err(|e| StartError::Entropy(e.to_string()))?;
    let queue_log = config
        .queue_log
        .as_deref()
        .map(|path| {
            QueueLogFile::open(path)
                .and_then(|mut log| {
                    log.append([&QueueLogLine::queue_start(now)])?;
                    Ok(log)
                })
                .map_err(|source| StartError::QueueLog {
                    path: path.to_path_buf(),
                    source,
                })
        })
        .transpose()?;
    let (mut centre, changes) = Centre::restore(config, rng, stored, now);
    store.apply(&changes).map_err(StartError::Persist)?;
    if !changes.is_empty() {
        tracing::info!(
            changes = changes.len(),
            "restored contacts; calls from before the restart are disconnected"
        );
    }
    // A private single-threaded runtime only for waiting (channel, timer, token); the
    // store work runs between waits on this thread, never on the shared runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(StartError::Thread)?;
    let (requests, inbox) = mpsc::channel(REQUEST_CAPACITY);
    let (publish, snapshots) = watch::channel(Arc::new(centre.board(now)));
    let view = ViewHandle::new(centre.book().clone());
    {
        // Every remembered contact's story from its stored history: one indexed read per
        // contact, once, so no page after a restart waits on the centre thread for it.
        let mut w = view.write();
        let ids: Vec<ContactId> = centre.book().rows.keys().cloned().collect();
        for id in &ids {
            let events = store.events(id).map_err(StartError::Load)?;
            w.seed(id, super::timeline::Timeline::from_events(&events));
            // Transcripts likewise (chat and IM contacts; and any that switched to a
            // call-back or an email, whose page still shows what was said).
            let messages = store.messages(id).map_err(StartError::Load)?;
            centre.seed_transcript(id, &messages);
            w.seed_transcript(id, messages);
        }
    }
    let (effects, _) = broadcast::channel(EFFECT_CAPACITY);
    let actor = Actor {
        centre,
        store,
        queue_log,
        inbox,
        publish,
        effects: effects.clone(),
        view: view.clone(),
        shutdown,
        last_now: now,
        tick_after: None,
        retry: Vec::new(),
        rng: StdRng::try_from_os_rng().map_err(|e| StartError::Entropy(e.to_string()))?,
    };
    let thread = std::thread::Builder::new()
        .name("holdline-centre".into())
        .spawn(move || actor.run(&runtime))
        .map_err(StartError::Thread)?;
    Ok((
        CentreHandle {
            requests,
            snapshots,
            effects,
            view,
        },
        thread,
    ))
}

struct Actor {
    centre: Centre,
    store: Box<dyn Store>,
    /// Where committed queue log lines are appended, if configured.
    queue_log: Option<QueueLogFile>,
    inbox: mpsc::Receiver<Request>,
    publish: watch::Sender<Arc<Snapshot>>,
    effects: broadcast::Sender<Effect>,
    /// Updated with every committed batch's rows before anyone is answered.
    view: ViewHandle,
    shutdown: CancellationToken,
    /// Time never runs backwards for the core, even if the wall clock is stepped back:
    /// seniority must follow admission order.
    last_now: Timestamp,
    /// Set after a failed write so a due tick does not spin on a broken disk.
    tick_after: Option<Instant>,
    /// Facts (a hang-up, a transfer's outcome, what an agent's phone did) whose batch
    /// could not be stored: they happened whatever the disk says, so they are applied
    /// again, in a batch of their own, until stored; their requesters hear only then.
    /// Bounded by the live calls and the agents.
    retry: Vec<Request>,
    /// Draws the numbers offered to the centre once the store says they are unused.
    rng: StdRng,
}

enum Wake {
    Request(Request),
    Deadline,
    Shutdown,
    Closed,
}

/// What a fact's request said, to apply it again.
enum Fact {
    End(ContactId, EndReason),
    Transfer(ContactId, bool, String),
    Lost(ContactId, LostCall),
}

impl Fact {
    fn again(self, reply: oneshot::Sender<Result<(), CentreError>>) -> Request {
        match self {
            Fact::End(id, reason) => Request::End { id, reason, reply },
            Fact::Transfer(id, ok, detail) => Request::Transfer {
                id,
                ok,
                detail,
                reply,
            },
            Fact::Lost(id, why) => Request::Lost { id, why, reply },
        }
    }
}

/// A reply held back until the batch is committed.
enum Pending {
    Admit(
        oneshot::Sender<Result<Admission, CentreError>>,
        Result<Admitted, CentreError>,
    ),
    /// A hang-up or a transfer's outcome, and how to apply it again if the write fails.
    Fact(
        oneshot::Sender<Result<(), CentreError>>,
        Result<(), CentreError>,
        Fact,
    ),
    /// `changed`: the command was new (not a repeat) and so depends on the write.
    Command {
        reply: oneshot::Sender<Result<Confirmation, CommandError>>,
        result: Result<Confirmation, CommandError>,
        changed: bool,
    },
    Post(
        oneshot::Sender<Result<Posted, PostError>>,
        Result<Posted, PostError>,
    ),
    /// A request answered `Ok(())` or refused, whose answer depends on the write when it
    /// `changed` something.
    Plain {
        reply: oneshot::Sender<Result<(), CentreError>>,
        result: Result<(), CentreError>,
        changed: bool,
    },
    Agent {
        reply: oneshot::Sender<Result<(), AgentError>>,
        result: Result<(), AgentError>,
        changed: bool,
        /// What the phone or the dialler reported (answered, failed, finished, an
        /// attempt's outcome): a fact, applied again if the write fails.
        fact: Option<(AgentId, AgentOp)>,
    },
}

impl Actor {
    fn now(&mut self) -> Timestamp {
        self.last_now = self.last_now.max(Timestamp::now_wall());
        self.last_now
    }

    fn run(mut self, runtime: &tokio::runtime::Runtime) {
        let mut draining = false;
        let mut last_batch: Option<Instant> = None;
        loop {
            let wait = self.time_to_next_tick();
            let wake = runtime.block_on(async {
                tokio::select! {
                    biased;
                    _ = self.shutdown.cancelled(), if !draining => Wake::Shutdown,
                    request = self.inbox.recv() => request.map_or(Wake::Closed, Wake::Request),
                    _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                        Wake::Deadline
                    }
                }
            });
            match wake {
                Wake::Shutdown => {
                    // Refuse new requests; those already queued are still answered.
                    draining = true;
                    self.inbox.close();
                }
                Wake::Closed => break,
                Wake::Deadline => self.process(Vec::new()),
                Wake::Request(first) => {
                    let arrived = Instant::now();
                    let busy =
                        last_batch.is_some_and(|t| arrived.duration_since(t) < LINGER_IF_BUSY);
                    let mut batch = vec![first];
                    self.drain_into(&mut batch);
                    if busy && !draining && batch.len() < LINGER_BELOW {
                        // A plain sleep, not a wait on the channel: one wake-up per batch
                        // instead of one per request that arrives meanwhile.
                        std::thread::sleep(LINGER);
                        self.drain_into(&mut batch);
                    }
                    last_batch = Some(Instant::now());
                    self.process(batch);
                }
            }
        }
        tracing::info!("centre stopped");
    }

    /// Moves whatever is already queued into `batch`, up to [`MAX_BATCH`].
    fn drain_into(&mut self, batch: &mut Vec<Request>) {
        while batch.len() < MAX_BATCH {
            match self.inbox.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
    }

    /// The committed batch's queue log lines. The batch stands whatever happens here:
    /// a failed append is logged and the lines are lost, never the contacts.
    fn append_queue_log(&mut self, changes: &[Change]) {
        let Some(log) = &mut self.queue_log else {
            return;
        };
        let lines = changes.iter().filter_map(|c| match c {
            Change::QueueLog(line) => Some(line),
            _ => None,
        });
        if let Err(e) = log.append(lines) {
            tracing::error!(error = %e, path = %log.path().display(), "queue log append failed");
        }
    }

    /// Moves the changes the centre has made so far into the batch's write.
    fn drain_changes(&mut self, changes: &mut Vec<Change>) {
        changes.extend(std::iter::from_fn(|| self.centre.poll_change()));
    }

    fn time_to_next_tick(&mut self) -> Option<Duration> {
        let backoff = self
            .tick_after
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        if !self.retry.is_empty() {
            return Some(backoff);
        }
        let deadline = self.centre.poll_timeout()?;
        let due = Duration::from_millis(deadline.millis_since(self.now()));
        Some(due.max(backoff))
    }

    /// Facts left over from a failed write first, in their own batch (so one that cannot
    /// be stored never takes new requests down with it), then `batch`.
    fn process(&mut self, batch: Vec<Request>) {
        if !self.retry.is_empty() && self.tick_after.is_none_or(|t| Instant::now() >= t) {
            let facts = std::mem::take(&mut self.retry);
            tracing::info!(
                facts = facts.len(),
                "storing again what a failed write left out"
            );
            self.commit_batch(facts);
        }
        if !batch.is_empty() || self.retry.is_empty() {
            self.commit_batch(batch);
        }
    }

    /// Gives the centre store-checked numbers for `admissions` new contacts (and a few
    /// spare): one primary-key lookup per number, so a number is never given out twice
    /// however long ago its contact left memory.
    fn top_up_numbers(&mut self, now: Timestamp, admissions: usize) {
        let have = self.centre.fresh_numbers();
        if have >= admissions {
            return;
        }
        let want = admissions + FRESH_SPARE - have;
        let mut fresh = Vec::with_capacity(want);
        // Collisions are ~1 in 10^5 at 10^6 stored numbers: the bound is for a broken
        // generator or store, not for luck.
        for _ in 0..want * 4 {
            if fresh.len() == want {
                break;
            }
            let id = ContactId::random(&mut self.rng);
            match self.store.number_taken(&id) {
                Ok(false) => fresh.push(id),
                Ok(true) => {}
                Err(e) => {
                    // The batch's write will most likely fail too; its admissions then
                    // get the storage error. Without numbers the centre draws its own,
                    // checked against memory only.
                    tracing::warn!(error = %e, "checking new contact numbers failed");
                    break;
                }
            }
        }
        let Ok(()) = self.centre.handle(now, FreshNumbers(fresh));
    }

    /// One group commit: tick, apply `batch`, write, then publish and reply.
    fn commit_batch(&mut self, batch: Vec<Request>) {
        let now = self.now();
        let admissions = batch
            .iter()
            .filter(|r| matches!(r, Request::Admit { .. }))
            .count();
        self.top_up_numbers(now, admissions);
        self.centre.begin();
        let mut changes = Vec::new();
        if self.tick_after.is_none_or(|t| Instant::now() >= t) {
            let Ok(()) = self.centre.handle(now, Tick);
            self.drain_changes(&mut changes);
        }
        let mut pending = Vec::with_capacity(batch.len());
        for request in batch {
            // Each input's changes are drained at once, so a reply knows whether its own
            // request wrote anything (a no-op stays true even if the batch's write fails).
            let before = changes.len();
            match request {
                Request::Admit { contact, reply } => {
                    let result = self.centre.handle(now, Admit(contact));
                    pending.push(Pending::Admit(reply, result));
                }
                Request::Claim {
                    current,
                    number,
                    reply,
                } => {
                    let result = self.centre.handle(now, ClaimPlace { current, number });
                    pending.push(Pending::Admit(reply, result));
                }
                Request::End { id, reason, reply } => {
                    let fact = Fact::End(id.clone(), reason);
                    let result = self.centre.handle(now, End { id, reason });
                    pending.push(Pending::Fact(reply, result, fact));
                }
                Request::Lost { id, why, reply } => {
                    let fact = Fact::Lost(id.clone(), why);
                    let result = self.centre.handle(now, CallLost { id, why });
                    pending.push(Pending::Fact(reply, result, fact));
                }
                Request::Post { post, reply } => {
                    let result = self.centre.handle(now, post);
                    pending.push(Pending::Post(reply, result));
                }
                Request::Back { id, reply } => {
                    let result = self.centre.handle(now, SessionBack { id });
                    self.drain_changes(&mut changes);
                    pending.push(Pending::Plain {
                        reply,
                        result,
                        changed: changes.len() > before,
                    });
                }
                Request::Transcript { id, reply } => {
                    // Read-only, answered at once: what is committed so far.
                    let messages = self.store.messages(&id).unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "reading a transcript failed");
                        Vec::new()
                    });
                    let _ = reply.send(messages);
                }
                Request::Stored { id, reply } => {
                    // Read-only, so answered at once (not part of the batch's commit).
                    let status = match self.centre.status(&id) {
                        Some(status) => Some(status),
                        // Ended long enough ago to be only in the store (or unknown).
                        None => match self.store.contact(&id) {
                            Ok(row) => row.and_then(|row| self.centre.status_of_stored(&row, now)),
                            Err(e) => {
                                tracing::warn!(error = %e, "reading an ended contact failed");
                                None
                            }
                        },
                    };
                    let _ = reply.send(status);
                }
                Request::SupervisorMove { input, reply } => {
                    let result = self.centre.handle(now, input);
                    self.drain_changes(&mut changes);
                    pending.push(Pending::Command {
                        reply,
                        result,
                        changed: changes.len() > before,
                    });
                }
                Request::Timeline { id, reply } => {
                    // Read-only, answered at once: what is committed so far.
                    let timeline = match self.store.events(&id) {
                        Ok(events) if events.is_empty() => None,
                        Ok(events) => Some(super::timeline::Timeline::from_events(&events)),
                        Err(e) => {
                            tracing::warn!(error = %e, "reading a contact's history failed");
                            None
                        }
                    };
                    let _ = reply.send(timeline);
                }
                Request::Command { request, reply } => {
                    let result = self.centre.handle(now, request);
                    self.drain_changes(&mut changes);
                    pending.push(Pending::Command {
                        reply,
                        result,
                        changed: changes.len() > before,
                    });
                }
                Request::Agent { agent, op, reply } => {
                    let fact = matches!(
                        op,
                        AgentOp::Answered
                            | AgentOp::Failed(_)
                            | AgentOp::FailedByCaller(_)
                            | AgentOp::Handled
                            | AgentOp::Attempt(_)
                    )
                    .then(|| (agent.clone(), op.clone()));
                    let result = self.centre.handle(now, AgentInput { agent, op });
                    self.drain_changes(&mut changes);
                    pending.push(Pending::Agent {
                        reply,
                        result,
                        changed: changes.len() > before,
                        fact,
                    });
                }
                Request::Transfer {
                    id,
                    ok,
                    detail,
                    reply,
                } => {
                    let fact = Fact::Transfer(id.clone(), ok, detail.clone());
                    let result = self.centre.handle(now, TransferOutcome { id, ok, detail });
                    pending.push(Pending::Fact(reply, result, fact));
                }
            }
            self.drain_changes(&mut changes);
        }
        let effects: Vec<Effect> = std::iter::from_fn(|| self.centre.poll_effect()).collect();

        let mut rings = None;
        let failure = if changes.is_empty() {
            None
        } else {
            self.store.apply(&changes).err()
        };
        match &failure {
            None => {
                let touched = self.centre.commit();
                self.tick_after = None;
                if !changes.is_empty() {
                    let book = self.centre.book();
                    let mut view = self.view.write();
                    rings = Some(view.apply(
                        touched.into_iter().map(|id| {
                            let row = book.rows.get(&id).cloned();
                            (id, row)
                        }),
                        book,
                    ));
                    view.record(&changes);
                    drop(view);
                    self.publish.send_replace(Arc::new(self.centre.board(now)));
                }
                // Committed: now the front-end may act. No subscriber is not an error.
                for effect in effects {
                    let _ = self.effects.send(effect);
                }
            }
            Some(e) => {
                tracing::error!(error = %e, changes = changes.len(), "store write failed; batch undone");
                self.centre.rollback();
                self.tick_after = Some(Instant::now() + STORAGE_RETRY);
            }
        }
        let fault = failure
            .as_ref()
            .map_or(super::StorageFault::Failed, StoreError::fault);
        let storage_error = || CentreError::Storage(fault);

        // Replies go out last, so nobody hears of a change that is not on disk.
        for p in pending {
            // A requester that gave up (dropped its future) is not an error here.
            match p {
                Pending::Admit(reply, result) => {
                    let answer = match result {
                        Ok(_) if failure.is_some() => Err(storage_error()),
                        Ok(Admitted { id, rejoined }) => self
                            .centre
                            .status(&id)
                            .map(|status| Admission { status, rejoined })
                            .ok_or(CentreError::NotFound),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                }
                Pending::Post(reply, result) => {
                    let answer = match result {
                        Ok(_) if failure.is_some() => Err(PostError::Storage(fault)),
                        other => other,
                    };
                    let _ = reply.send(answer);
                }
                Pending::Plain {
                    reply,
                    result,
                    changed,
                } => {
                    let answer = match result {
                        Ok(()) if changed && failure.is_some() => Err(storage_error()),
                        other => other,
                    };
                    let _ = reply.send(answer);
                }
                Pending::Fact(reply, Ok(()), fact) if failure.is_some() => {
                    // Not refused: it happened. Applied again until it is stored.
                    self.retry.push(fact.again(reply));
                }
                Pending::Fact(reply, result, _) => {
                    let _ = reply.send(result);
                }
                Pending::Command {
                    reply,
                    result,
                    changed,
                } => {
                    let answer = match result {
                        Ok(_) if changed && failure.is_some() => Err(CommandError::Storage(fault)),
                        other => other,
                    };
                    let _ = reply.send(answer);
                }
                Pending::Agent {
                    reply,
                    result: Ok(()),
                    changed: true,
                    fact: Some((agent, op)),
                } if failure.is_some() => {
                    self.retry.push(Request::Agent { agent, op, reply });
                }
                Pending::Agent {
                    reply,
                    result,
                    changed,
                    fact: _,
                } => {
                    let answer = match result {
                        Ok(()) if changed && failure.is_some() => Err(AgentError::Storage(fault)),
                        other => other,
                    };
                    let _ = reply.send(answer);
                }
            }
        }
        // Live pages and the report file last: the requesters above are not held up by
        // the fan-out nor by the queue log's fsync.
        if let Some(rings) = rings {
            self.view.write().ring(rings);
        }
        if failure.is_none() {
            self.append_queue_log(&changes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centre::contact::{ContactState, MediaType, QueueId};
    use crate::centre::core::StoredContact;
    use crate::centre::testkit;
    use crate::store::tests::TempDir;
    use crate::store::{MemoryStore, SqliteStore};
    use std::collections::{HashMap, HashSet};

    fn config() -> CentreConfig {
        let queues = ["sales", "support"]
            .map(|id| testkit::local_queue(id, 180))
            .into();
        CentreConfig {
            id_retention_secs: 30 * 86_400,
            max_live_contacts: 5000,
            ..testkit::config(queues, Vec::new())
        }
    }

    fn contact(n: usize) -> NewContact {
        NewContact {
            queue: QueueId(
                if n.is_multiple_of(2) {
                    "sales"
                } else {
                    "support"
                }
                .into(),
            ),
            media: MediaType::Voice,
            caller: format!("sip:{n}@example.test"),
            call_ref: format!("call-{n}"),
        }
    }

    async fn stop(token: CancellationToken, thread: JoinHandle<()>) {
        token.cancel();
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("join task")
            .expect("centre thread panicked");
    }

    /// Counts transactions, to see group commit at work.
    struct Counting(SqliteStore, Arc<std::sync::atomic::AtomicUsize>);
    impl Store for Counting {
        fn load_since(&mut self, since: Timestamp) -> Result<crate::centre::Stored, StoreError> {
            self.0.load_since(since)
        }
        fn number_taken(&mut self, id: &ContactId) -> Result<bool, StoreError> {
            self.0.number_taken(id)
        }
        fn events(
            &mut self,
            id: &ContactId,
        ) -> Result<Vec<crate::centre::ContactEvent>, StoreError> {
            self.0.events(id)
        }
        fn messages(&mut self, id: &ContactId) -> Result<Vec<ChatMessage>, StoreError> {
            self.0.messages(id)
        }
        fn apply(&mut self, changes: &[crate::centre::Change]) -> Result<(), StoreError> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.apply(changes)
        }
        fn contact(
            &mut self,
            id: &ContactId,
        ) -> Result<Option<crate::centre::StoredContact>, StoreError> {
            self.0.contact(id)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn five_hundred_concurrent_admits_are_ordered_published_and_stored() {
        let dir = TempDir::new("actor-500");
        let applies = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let store = Counting(
            SqliteStore::open(dir.path()).expect("open"),
            applies.clone(),
        );
        let token = CancellationToken::new();
        let (handle, thread) = spawn(config(), Box::new(store), token.clone()).expect("spawn");

        let tasks: Vec<_> = (0..500)
            .map(|n| {
                let h = handle.clone();
                tokio::spawn(async move { (n, h.admit(contact(n)).await) })
            })
            .collect();
        let mut replies = Vec::new();
        for t in tasks {
            let (n, reply) = t.await.expect("task");
            replies.push((n, reply.expect("admitted")));
        }

        // Each queue hands out positions 1..=250 exactly once.
        let mut by_queue: HashMap<QueueId, Vec<u32>> = HashMap::new();
        for (n, s) in &replies {
            assert_eq!(s.queue, contact(*n).queue);
            assert_eq!(s.state, ContactState::Queued);
            assert_eq!(s.ahead + 1, s.position.expect("queued"));
            by_queue
                .entry(s.queue.clone())
                .or_default()
                .push(s.position.expect("queued"));
        }
        for positions in by_queue.values_mut() {
            positions.sort_unstable();
            assert_eq!(*positions, (1..=250).collect::<Vec<u32>>());
        }

        // The read view agrees with every reply (the last batch's positions: nobody left,
        // so they are the ones first given); the board counts them.
        for (_, s) in &replies {
            let seen = handle.view().status(&s.id).expect("in the view");
            assert_eq!(seen.position, s.position);
        }
        let snap = handle.snapshots().borrow().clone();
        assert!(snap.contacts.is_empty(), "no agent holds a contact");
        assert!(snap.queues.iter().all(|q| q.waiting == 250));
        let asked = handle.status(replies[0].1.id.clone()).await.expect("known");
        assert_eq!(asked.position, replies[0].1.position);

        let ids: HashSet<ContactId> = replies.iter().map(|(_, s)| s.id.clone()).collect();
        assert_eq!(ids.len(), 500);

        stop(token, thread).await;
        // Not asserted (scheduling decides), but worth seeing: far fewer than 500.
        eprintln!(
            "500 admits in {} store transactions",
            applies.load(std::sync::atomic::Ordering::Relaxed)
        );
        assert_eq!(
            handle.admit(contact(0)).await,
            Err(CentreError::ShuttingDown)
        );

        let mut reopened = SqliteStore::open(dir.path()).expect("reopen");
        let rows = reopened.load().expect("load").contacts;
        assert_eq!(rows.len(), 500);
        assert!(rows.iter().all(|r| ids.contains(&r.id)));
        assert!(rows.iter().all(|r| r.state == ContactState::Queued));
        let first = &replies[0].1.id;
        let events = reopened.events_for(first).expect("events");
        assert_eq!(events.len(), 2);
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_and_not_published() {
        let store = MemoryStore::new();
        let token = CancellationToken::new();
        let (handle, thread) =
            spawn(config(), Box::new(store.clone()), token.clone()).expect("spawn");
        let kept = handle.admit(contact(0)).await.expect("admit");

        store.set_failing(true);
        let before = handle.snapshots().borrow().clone();
        assert!(matches!(
            handle.admit(contact(2)).await,
            Err(CentreError::Storage(_))
        ));
        // A hang-up is a fact, not a request: it is neither refused nor forgotten while
        // the disk fails, and nobody hears of it until it is stored.
        let mut end = tokio::spawn({
            let handle = handle.clone();
            let id = kept.id.clone();
            async move { handle.end(id, EndReason::Abandoned).await }
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut end)
                .await
                .is_err(),
            "not answered while the write fails"
        );
        assert_eq!(*handle.snapshots().borrow().clone(), *before);
        assert_eq!(
            handle.status(kept.id.clone()).await.expect("kept").state,
            ContactState::Queued
        );

        store.set_failing(false);
        tokio::time::timeout(Duration::from_secs(10), end)
            .await
            .expect("stored once the disk is back")
            .expect("task")
            .expect("the hang-up is applied");
        assert!(matches!(
            handle.status(kept.id.clone()).await.expect("kept").state,
            ContactState::Ended { .. }
        ));
        let next = handle.admit(contact(4)).await.expect("admit");
        assert_eq!(next.position, Some(1), "the failed admit left no trace");
        assert_eq!(store.rows().len(), 2);
        assert_eq!(
            handle
                .admit(NewContact {
                    queue: QueueId("nope".into()),
                    ..contact(0)
                })
                .await,
            Err(CentreError::UnknownQueue(QueueId("nope".into())))
        );
        assert_eq!(
            handle.end(kept.id.clone(), EndReason::Abandoned).await,
            Err(CentreError::AlreadyEnded)
        );
        assert_eq!(
            handle
                .status(next.id.clone())
                .await
                .expect("known")
                .position,
            Some(1)
        );
        stop(token, thread).await;
        // After shutdown, status still answers from the last snapshot.
        assert_eq!(
            handle.status(next.id).await.expect("in snapshot").position,
            Some(1)
        );
    }

    #[tokio::test]
    async fn restart_disconnects_then_loses_when_the_window_runs_out() {
        let store = MemoryStore::new();
        let token = CancellationToken::new();
        let (handle, thread) =
            spawn(config(), Box::new(store.clone()), token.clone()).expect("spawn");
        let a = handle.admit(contact(0)).await.expect("admit");
        let b = handle.admit(contact(2)).await.expect("admit");
        stop(token, thread).await;

        // Restart with no keep-place window: the restored contacts are due at once.
        let mut cfg = config();
        cfg.keep_place_secs = 0;
        let token = CancellationToken::new();
        let (handle, thread) = spawn(cfg, Box::new(store.clone()), token.clone()).expect("respawn");
        let mut snapshots = handle.snapshots();
        let lost = |rows: &[StoredContact]| {
            rows.iter()
                .filter(|r| {
                    matches!(
                        r.state,
                        ContactState::Ended {
                            reason: EndReason::Lost,
                            ..
                        }
                    )
                })
                .count()
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            while lost(&store.rows()) < 2 {
                snapshots.changed().await.expect("centre alive");
            }
        })
        .await
        .expect("contacts lost in time");
        for id in [&a.id, &b.id] {
            assert_eq!(
                handle.status(id.clone()).await.expect("known").position,
                None
            );
        }
        let kinds: Vec<String> = store
            .events()
            .into_iter()
            .filter(|e| e.contact == a.id)
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["created", "queued", "disconnected", "ended:lost"]);
        stop(token, thread).await;
    }

    fn move_to(contact: &ContactId, id: &str, to: &str) -> CommandRequest {
        CommandRequest {
            id: crate::centre::CommandId(id.into()),
            contact: contact.clone(),
            expected_version: None,
            command: crate::centre::Command::MoveQueue {
                to: QueueId(to.into()),
            },
        }
    }

    /// Records what was durable when each apply happened, so a test can see that a reply
    /// or an effect came after the commit.
    #[tokio::test]
    async fn commands_are_committed_before_the_reply_and_effects_follow_the_commit() {
        let store = MemoryStore::new();
        let token = CancellationToken::new();
        let (handle, thread) =
            spawn(config(), Box::new(store.clone()), token.clone()).expect("spawn");
        let mut effects = handle.subscribe_effects();
        let a = handle.admit(contact(0)).await.expect("admit");
        let b = handle.admit(contact(1)).await.expect("admit");

        let request = CommandRequest {
            id: crate::centre::CommandId("cb-1".into()),
            contact: a.id.clone(),
            expected_version: Some(a.version),
            command: crate::centre::Command::Callback {
                number: "+44 20 7946 0000".into(),
                window: None,
            },
        };
        let confirmation = handle.command(request.clone()).await.expect("callback");
        assert_eq!(
            confirmation,
            Confirmation::CallbackBooked {
                number: "+442079460000".into(),
                window: None,
                position: 1
            }
        );
        // Committed before the reply: the row and the command are in the store.
        let row = store
            .rows()
            .into_iter()
            .find(|r| r.id == a.id)
            .expect("row");
        assert!(row.substitute.is_some());
        assert_eq!(store.commands().len(), 1);
        let effect = tokio::time::timeout(Duration::from_secs(5), effects.recv())
            .await
            .expect("in time")
            .expect("effect");
        assert_eq!(
            effect,
            Effect::EndCall {
                call_ref: "call-0".into(),
                farewell: crate::centre::Farewell::Callback
            }
        );
        // The read view carries the new fields.
        let s = &handle.view().status(&a.id).expect("in the view");
        assert_eq!((s.version, s.live_call), (2, false));
        assert_eq!(
            s.options,
            [
                crate::centre::ActionKind::MoveQueue,
                crate::centre::ActionKind::Note,
                crate::centre::ActionKind::CancelCallback,
                crate::centre::ActionKind::ChangeCallback
            ]
        );
        assert_eq!(
            handle.view().status(&b.id).expect("b").move_targets.len(),
            1
        );

        // A double submit: the same answer, nothing stored, no second effect.
        assert_eq!(handle.command(request).await, Ok(confirmation));
        assert_eq!(store.commands().len(), 1);
        handle
            .command(move_to(&b.id, "mv-1", "sales"))
            .await
            .expect("move");
        let next = effects.recv().await.expect("effect");
        assert_eq!(
            next,
            Effect::Reannounce {
                call_ref: "call-1".into()
            },
            "the repeat produced no effect of its own"
        );
        assert_eq!(
            handle.command(move_to(&a.id, "mv-1", "sales")).await,
            Err(CommandError::IdReused)
        );

        // A failed write: refused as Storage, nothing remembered, no effect.
        store.set_failing(true);
        assert!(matches!(
            handle.command(move_to(&b.id, "mv-2", "support")).await,
            Err(CommandError::Storage(_))
        ));
        store.set_failing(false);
        assert!(matches!(
            effects.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
        assert_eq!(
            handle.status(b.id.clone()).await.expect("known").queue,
            QueueId("sales".into())
        );
        // The id was not remembered, so a retry does the work.
        assert_eq!(
            handle.command(move_to(&b.id, "mv-2", "support")).await,
            Ok(Confirmation::Moved {
                from: QueueId("sales".into()),
                to: QueueId("support".into()),
                position: 1
            })
        );
        stop(token, thread).await;
        assert_eq!(
            handle.command(move_to(&b.id, "mv-3", "sales")).await,
            Err(CommandError::ShuttingDown)
        );

        // After a restart the call-back is still queued in its place and ids are known.
        let token = CancellationToken::new();
        let (handle, thread) =
            spawn(config(), Box::new(store.clone()), token.clone()).expect("respawn");
        let s = handle.status(a.id.clone()).await.expect("kept");
        assert_eq!((s.state, s.position), (ContactState::Queued, Some(1)));
        assert!(matches!(
            handle.status(b.id.clone()).await.expect("kept").state,
            ContactState::Disconnected { .. }
        ));
        assert_eq!(
            handle.command(move_to(&a.id, "mv-2", "sales")).await,
            Err(CommandError::IdReused)
        );
        stop(token, thread).await;
    }

    #[test]
    fn a_broken_store_fails_the_start() {
        let store = MemoryStore::new();
        store.set_failing(true);
        assert!(matches!(
            spawn(config(), Box::new(store), CancellationToken::new()),
            Err(StartError::Load(_))
        ));
    }
}

#[cfg(test)]
mod agent_tests {
    use super::*;
    use crate::centre::agent::{AgentSpec, AgentState};
    use crate::centre::contact::{MediaType, QueueId};
    use crate::centre::queue::QueueSpec;
    use crate::centre::testkit;
    use crate::store::MemoryStore;

    fn config() -> CentreConfig {
        let sales = QueueSpec {
            name: "Sales".into(),
            ..testkit::local_queue("sales", 180)
        };
        let ada = AgentSpec {
            name: "Ada".into(),
            skills: vec![(testkit::q("sales"), 7)],
            ..testkit::agent("ada", &[])
        };
        CentreConfig {
            max_live_contacts: 100,
            wrap_up_secs: 0,
            ..testkit::config(vec![sales], vec![ada])
        }
    }

    fn agent_rows(store: &mut MemoryStore) -> Vec<AgentState> {
        store
            .load()
            .expect("load")
            .agents
            .into_iter()
            .map(|a| a.state)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn agent_requests_are_committed_before_the_reply_and_offers_follow_the_commit() {
        let mut store = MemoryStore::new();
        let token = CancellationToken::new();
        let (handle, thread) =
            spawn(config(), Box::new(store.clone()), token.clone()).expect("spawn");
        let mut effects = handle.subscribe_effects();
        let ada = AgentId("ada".into());
        assert!(matches!(
            handle.agent_ready(ada.clone()).await,
            Err(AgentError::NotAllowed { .. })
        ));
        assert!(matches!(
            handle.agent_login(AgentId("bob".into())).await,
            Err(AgentError::UnknownAgent(_))
        ));
        handle.agent_login(ada.clone()).await.expect("login");
        assert!(matches!(
            agent_rows(&mut store)[..],
            [AgentState::NotReady { .. }]
        ));
        handle.agent_ready(ada.clone()).await.expect("ready");
        let status = handle
            .admit(NewContact {
                queue: QueueId("sales".into()),
                media: MediaType::Voice,
                caller: "sip:c@example.test".into(),
                call_ref: "call-1".into(),
            })
            .await
            .expect("admit");
        // Offered inside the admit's batch: stored, then published, then sent.
        assert_eq!(status.agent.map(|v| v.name), Some("Ada".into()));
        assert!(matches!(
            agent_rows(&mut store)[..],
            [AgentState::Reserved { .. }]
        ));
        match effects.recv().await.expect("effect") {
            Effect::Offer {
                agent, call_ref, ..
            } => {
                assert_eq!(agent, ada);
                assert_eq!(call_ref.as_deref(), Some("call-1"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let snap = handle.snapshots().borrow().clone();
        assert!(matches!(snap.agents[0].state, AgentState::Reserved { .. }));
        handle.offer_answered(ada.clone()).await.expect("answered");
        handle.contact_handled(ada.clone()).await.expect("handled");
        let ended = handle.status(status.id.clone()).await.expect("status");
        assert!(matches!(
            ended.state,
            crate::centre::ContactState::Ended {
                reason: EndReason::Completed,
                ..
            }
        ));
        // A failed write is refused and leaves the agent as it was.
        store.set_failing(true);
        assert!(matches!(
            handle.agent_logout(ada.clone()).await,
            Err(AgentError::Storage(_))
        ));
        store.set_failing(false);
        assert!(matches!(
            handle.agent_not_ready(ada.clone(), "lunch".into()).await,
            Ok(())
        ));
        assert!(matches!(
            handle.snapshots().borrow().agents[0].state,
            AgentState::NotReady { .. }
        ));
        handle.agent_logout(ada.clone()).await.expect("logout");
        assert_eq!(agent_rows(&mut store), [AgentState::LoggedOut]);
        assert!(
            store
                .events()
                .iter()
                .any(|e| e.kind == "ended:completed" && e.contact == status.id)
        );
        token.cancel();
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("join task")
            .expect("centre thread panicked");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_log_lines_are_appended_after_the_commit_and_new_requests_work_through_the_handle()
     {
        let dir = crate::store::tests::TempDir::new("actor-queue-log");
        let path = dir.path().join("queue_log");
        let mut cfg = config();
        cfg.queue_log = Some(path.clone());
        cfg.queues.push(QueueSpec {
            id: QueueId("paris".into()),
            name: "Paris office".into(),
            skillset: "fr".into(),
            default_handle_secs: 180,
            remote: Some("sip:q@paris.example.com".into()),
        });
        let store = MemoryStore::new();
        let token = CancellationToken::new();
        let (handle, thread) = spawn(cfg, Box::new(store.clone()), token.clone()).expect("spawn");
        // The log is appended after the replies: a round trip through the centre thread
        // (a status it must answer itself) waits for the batch before to finish.
        let unknown: ContactId = "000000000000".parse().expect("number");
        let settled = || handle.status(unknown.clone());
        let read = || std::fs::read_to_string(&path).expect("queue log");
        let events = |text: String| -> Vec<String> {
            text.lines()
                .map(|l| l.split('|').skip(4).collect::<Vec<_>>().join("|"))
                .collect()
        };
        assert_eq!(events(read()), ["QUEUESTART|"]);
        let ada = AgentId("ada".into());
        handle.agent_login(ada.clone()).await.expect("login");
        settled().await;
        assert_eq!(
            events(read()),
            [
                "QUEUESTART|",
                "AGENTLOGIN|PJSIP/ada",
                "PAUSEALL|logged in",
                "PAUSE|logged in"
            ]
        );
        // A failed write appends nothing.
        store.set_failing(true);
        assert!(handle.agent_ready(ada.clone()).await.is_err());
        store.set_failing(false);
        settled().await;
        assert_eq!(read().lines().count(), 4);

        // A remote move and its result.
        let contact = |n: u32| NewContact {
            queue: QueueId("sales".into()),
            media: MediaType::Voice,
            caller: format!("<tel:+4420794600{n:02}>"),
            call_ref: format!("call-{n}"),
        };
        let moving = handle.admit(contact(1)).await.expect("admit");
        let mut effects = handle.subscribe_effects();
        handle
            .command(CommandRequest {
                id: crate::centre::CommandId("mv".into()),
                contact: moving.id.clone(),
                expected_version: None,
                command: crate::centre::Command::MoveQueue {
                    to: QueueId("paris".into()),
                },
            })
            .await
            .expect("move");
        assert!(matches!(
            effects.recv().await.expect("effect"),
            Effect::Transfer { target, .. } if target == "sip:q@paris.example.com"
        ));
        handle
            .transfer_result(moving.id.clone(), false, "busy".into())
            .await
            .expect("result");
        let s = handle.status(moving.id.clone()).await.expect("status");
        assert!(matches!(
            s.notice,
            Some(crate::centre::Notice::TransferFailed { ref detail, .. }) if detail == "busy"
        ));
        handle
            .end(moving.id.clone(), EndReason::Abandoned)
            .await
            .expect("end");

        // A call-back attempt.
        let cb = handle.admit(contact(2)).await.expect("admit");
        handle
            .command(CommandRequest {
                id: crate::centre::CommandId("cb".into()),
                contact: cb.id.clone(),
                expected_version: None,
                command: crate::centre::Command::Callback {
                    number: "+44 20 7946 0002".into(),
                    window: None,
                },
            })
            .await
            .expect("callback");
        handle.agent_ready(ada.clone()).await.expect("ready");
        handle
            .callback_attempt(ada.clone(), AttemptOutcome::Failed("busy".into()))
            .await
            .expect("attempt");
        let s = handle.status(cb.id.clone()).await.expect("status");
        assert_eq!(s.attempts.len(), 1);
        assert!(s.next_attempt.is_some());
        assert!(matches!(
            handle
                .callback_attempt(ada.clone(), AttemptOutcome::Connected)
                .await,
            Err(AgentError::NotAllowed { .. })
        ));
        let counters = handle.snapshots().borrow().counters.clone();
        assert_eq!(counters.transfers.get("failed"), Some(&1));
        assert_eq!(counters.callback_attempts.get("busy"), Some(&1));
        settled().await;
        assert!(events(read()).contains(&"ENTERQUEUE||+442079460002|1".to_owned()));
        token.cancel();
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("join task")
            .expect("centre thread panicked");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chat_messages_are_stored_before_anyone_hears_and_survive_a_restart() {
        let store = MemoryStore::new();
        let token = CancellationToken::new();
        let (handle, thread) =
            spawn(config(), Box::new(store.clone()), token.clone()).expect("spawn");
        let mut effects = handle.subscribe_effects();
        let chat = NewContact {
            queue: QueueId("sales".into()),
            media: MediaType::Chat,
            caller: "Visitor".into(),
            call_ref: "web-chat-1".into(),
        };
        let id = handle.admit(chat).await.expect("admit").id;
        let mut bell = handle.view().subscribe(&id).expect("bell");
        bell.borrow_and_update();
        let said = handle
            .post(id.clone(), Author::Customer, "hello".into())
            .await
            .expect("posted");
        assert_eq!(said.seq, 1);
        // Rung just after the replies (live pages last).
        tokio::time::timeout(Duration::from_secs(5), bell.changed())
            .await
            .expect("the page is woken")
            .expect("bell");
        let (seen, last) = handle.view().messages(&id, 0, 10).expect("held");
        assert_eq!((seen, last), (vec![said.clone()], 1));
        // Not stored, not said: refused, and the number is given again.
        store.set_failing(true);
        assert!(matches!(
            handle
                .post(id.clone(), Author::Customer, "lost".into())
                .await,
            Err(PostError::Storage(_))
        ));
        store.set_failing(false);
        assert_eq!(handle.view().messages(&id, 1, 10), Some((Vec::new(), 1)));
        // Ada takes it at once and replies: stored, then carried out.
        let ada = AgentId("ada".into());
        handle.agent_login(ada.clone()).await.expect("login");
        handle.agent_ready(ada.clone()).await.expect("ready");
        let reply = handle
            .post(
                id.clone(),
                Author::Agent { id: ada.clone() },
                "Hi, Ada here".into(),
            )
            .await
            .expect("reply");
        assert_eq!(reply.seq, 2);
        loop {
            match effects.recv().await.expect("effect") {
                Effect::Deliver {
                    message, call_ref, ..
                } => {
                    assert_eq!((message, call_ref.as_str()), (reply.clone(), "web-chat-1"));
                    break;
                }
                Effect::Offer { call_ref, .. } => assert_eq!(call_ref, None),
                other => panic!("unexpected {other:?}"),
            }
        }
        token.cancel();
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("join task")
            .expect("centre thread panicked");

        // Restarted on the same store: the transcript is there, numbering goes on, and
        // the visitor's page (back) puts the chat in its place.
        let token = CancellationToken::new();
        let (handle, thread) =
            spawn(config(), Box::new(store.clone()), token.clone()).expect("respawn");
        let (seen, last) = handle.transcript(id.clone(), 0, 10).await.expect("held");
        assert_eq!((seen, last), (vec![said, reply], 2));
        handle.session_back(id.clone()).await.expect("back");
        let next = handle
            .post(id.clone(), Author::Customer, "still there?".into())
            .await
            .expect("posted");
        assert_eq!(next.seq, 3);
        token.cancel();
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("join task")
            .expect("centre thread panicked");
    }
}
