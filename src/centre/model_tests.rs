//! Property tests of the centre against a reference model: the same random sequence of
//! operations drives the real [`Centre`] and an obvious O(n) model (a plain `Vec` of
//! contacts, positions by counting), and after every operation every contact's status,
//! every agent's state, every offer and every effect must agree.
//!
//! The file has three parts:
//! * **Adapter**: the only code that calls the `Centre`. The core is being rebuilt toward
//!   one input/output contract; when its shapes change, only these functions change.
//! * **Model**: what the module docs of `centre` and `centre::agent` say, written the
//!   slow, direct way. Positions are `1 + in-line contacts of the same queue with a smaller
//!   (seniority, admission) key`; routing runs after every operation (each ready agent,
//!   longest idle first, gets the most senior routable contact of its queues).
//! * **Harness and properties**: resolves each generated operation against the model
//!   (which contact, which agent), runs it on both, compares, and keeps a readable trace
//!   that a failure prints along with proptest's minimal operation sequence.
//!
//! Test code only, and long on purpose: the model is written out in full in one place so
//! it can be read top to bottom and checked against the docs, not derived from the core.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::testkit;
use super::*;

// ---------------------------------------------------------------------------------------
// Adapter: every call into the Centre goes through these functions.
// ---------------------------------------------------------------------------------------

/// An offer as the routing rule sees it: to whom, which contact, which call-back attempt
/// (0 for other media).
type Offer = (AgentId, ContactId, u32);

/// What the front-end is told to do, other than offers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    EndCall(String, Farewell),
    Reannounce(String),
    /// Contact, call ref, target URI.
    Transfer(ContactId, String, String),
}

/// Why an operation was refused, by kind only (the wording is not the model's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    UnknownQueue,
    Full,
    NotFound,
    AlreadyEnded,
    NotAllowed,
    Invalid,
    IdReused,
    Other,
}

/// Everything one operation yields.
#[derive(Debug)]
struct Out<T> {
    result: Result<T, Refusal>,
    offers: Vec<Offer>,
    told: Vec<Told>,
}

#[derive(Debug, Clone, Copy)]
enum AgentStep {
    Login,
    Ready,
    NotReady,
    Logout,
    Answer,
    Fail,
    Handled,
    /// A call-back attempt: connected or failed.
    Attempt(bool),
    /// Whatever the agent would naturally do next in its state (log in, get ready, answer,
    /// finish...), the number choosing among the likely ones. Resolved by the harness
    /// against the model, so random sequences get agents through whole days instead of
    /// mostly being refused.
    Next(u8),
}

/// What a store would hold, built only from the changes the centre hands out (the
/// columns SQLite keeps: no agent, connection or offer time on a contact row).
#[derive(Debug, Clone, Default)]
struct Rows {
    contacts: HashMap<ContactId, StoredContact>,
    commands: Vec<StoredCommand>,
    agents: HashMap<AgentId, StoredAgent>,
}

struct Sut {
    centre: Centre,
    config: CentreConfig,
    rows: Rows,
    /// Changes of the open batch; stored at commit, dropped at rollback.
    pending: Option<Vec<Change>>,
}

fn open(config: CentreConfig, seed: u64) -> Sut {
    Sut {
        centre: Centre::new(config.clone(), StdRng::seed_from_u64(seed)),
        config,
        rows: Rows::default(),
        pending: None,
    }
}

fn store(rows: &mut Rows, changes: Vec<Change>) {
    for change in changes {
        match change {
            Change::Contact(mut row) => {
                row.agent = None;
                row.connected = false;
                row.offered_at = None;
                rows.contacts.insert(row.id.clone(), row);
            }
            Change::Command(command) => rows.commands.push(command),
            Change::Agent(agent) => {
                rows.agents.insert(agent.id.clone(), agent);
            }
            // The model admits calls only: no transcript.
            Change::Event(_) | Change::QueueLog(_) | Change::Message(_) => {}
        }
    }
}

fn persist(s: &mut Sut, changes: Vec<Change>) {
    match &mut s.pending {
        Some(pending) => pending.extend(changes),
        None => store(&mut s.rows, changes),
    }
}

/// What one operation stored and made happen: everything it put in the centre's outboxes.
fn drain(s: &mut Sut) -> (Vec<Offer>, Vec<Told>) {
    let changes: Vec<Change> = std::iter::from_fn(|| s.centre.poll_change()).collect();
    persist(s, changes);
    let mut offers = Vec::new();
    let mut told = Vec::new();
    while let Some(e) = s.centre.poll_effect() {
        match e {
            Effect::Offer {
                agent,
                contact,
                attempt,
                ..
            } => offers.push((agent, contact, attempt)),
            Effect::EndCall { call_ref, farewell } => told.push(Told::EndCall(call_ref, farewell)),
            Effect::Reannounce { call_ref } => told.push(Told::Reannounce(call_ref)),
            Effect::Transfer {
                contact,
                call_ref,
                target,
            } => told.push(Told::Transfer(contact, call_ref, target)),
            Effect::Deliver { .. } => unreachable!("the model admits calls only"),
        }
    }
    (offers, told)
}

fn out<T>(s: &mut Sut, result: Result<T, Refusal>) -> Out<T> {
    let (offers, told) = drain(s);
    Out {
        result,
        offers,
        told,
    }
}

fn centre_refusal(e: CentreError) -> Refusal {
    match e {
        CentreError::UnknownQueue(_) => Refusal::UnknownQueue,
        CentreError::Full => Refusal::Full,
        CentreError::NotFound => Refusal::NotFound,
        CentreError::AlreadyEnded => Refusal::AlreadyEnded,
        _ => Refusal::Other,
    }
}

/// Admits a call; the contact's id and the position it was told.
fn admit(
    s: &mut Sut,
    now: Timestamp,
    queue: &QueueId,
    media: MediaType,
    caller: &str,
    call_ref: &str,
) -> Out<(ContactId, Option<u32>)> {
    let new = NewContact {
        queue: queue.clone(),
        media,
        caller: caller.to_owned(),
        call_ref: call_ref.to_owned(),
    };
    let result = s
        .centre
        .handle(now, Admit(new))
        .map(|admitted| {
            let id = admitted.id;
            let position = s.centre.status(&id).and_then(|st| st.position);
            (id, position)
        })
        .map_err(centre_refusal);
    out(s, result)
}

/// The caller hangs up.
fn hang_up(s: &mut Sut, now: Timestamp, id: &ContactId) -> Out<()> {
    let end = End {
        id: id.clone(),
        reason: EndReason::Abandoned,
    };
    let result = s.centre.handle(now, end).map_err(centre_refusal);
    out(s, result)
}

fn tick(s: &mut Sut, now: Timestamp) -> Out<()> {
    let Ok(()) = s.centre.handle(now, Tick);
    out(s, Ok(()))
}

fn command(
    s: &mut Sut,
    now: Timestamp,
    id: &CommandId,
    contact: &ContactId,
    expected_version: Option<u64>,
    command: Command,
) -> Out<Confirmation> {
    let request = CommandRequest {
        id: id.clone(),
        contact: contact.clone(),
        expected_version,
        command,
    };
    let result = s.centre.handle(now, request).map_err(|e| match e {
        CommandError::NotFound => Refusal::NotFound,
        CommandError::NotAllowed { .. } => Refusal::NotAllowed,
        CommandError::Invalid { .. } => Refusal::Invalid,
        CommandError::IdReused => Refusal::IdReused,
        _ => Refusal::Other,
    });
    out(s, result)
}

fn agent_op(s: &mut Sut, now: Timestamp, agent: &AgentId, op: AgentStep) -> Out<()> {
    let op = match op {
        AgentStep::Login => super::AgentOp::Login,
        AgentStep::Ready => super::AgentOp::Ready,
        AgentStep::NotReady => super::AgentOp::NotReady("break".into()),
        AgentStep::Logout => super::AgentOp::Logout,
        AgentStep::Answer => super::AgentOp::Answered,
        AgentStep::Fail => super::AgentOp::Failed("declined".into()),
        AgentStep::Handled => super::AgentOp::Handled,
        AgentStep::Attempt(true) => super::AgentOp::Attempt(AttemptOutcome::Connected),
        AgentStep::Attempt(false) => super::AgentOp::Attempt(AttemptOutcome::Failed("busy".into())),
        AgentStep::Next(_) => unreachable!("resolved by the harness"),
    };
    let input = AgentInput {
        agent: agent.clone(),
        op,
    };
    let result = s.centre.handle(now, input).map_err(|e| match e {
        AgentError::NotAllowed { .. } => Refusal::NotAllowed,
        _ => Refusal::Other,
    });
    out(s, result)
}

fn transfer_result(s: &mut Sut, now: Timestamp, id: &ContactId, ok: bool) -> Out<()> {
    let input = TransferOutcome {
        id: id.clone(),
        ok,
        detail: "busy".into(),
    };
    let result = s.centre.handle(now, input).map_err(centre_refusal);
    out(s, result)
}

fn status(s: &Sut, id: &ContactId) -> Option<ContactStatus> {
    s.centre.status(id)
}

fn agent_states(s: &Sut) -> Vec<(AgentId, AgentState)> {
    s.centre
        .agent_statuses()
        .into_iter()
        .map(|a| (a.id, a.state))
        .collect()
}

/// The full view readers get, if the core still offers one.
fn snapshot(s: &Sut, now: Timestamp) -> Option<Snapshot> {
    Some(s.centre.snapshot(now))
}

fn live_count(s: &Sut) -> usize {
    s.centre.live_count()
}

/// When the centre wants its next tick.
fn next_deadline(s: &Sut) -> Option<Timestamp> {
    s.centre.poll_timeout()
}

fn begin(s: &mut Sut) {
    s.centre.begin();
    s.pending = Some(Vec::new());
}

fn commit(s: &mut Sut) {
    s.centre.commit();
    if let Some(changes) = s.pending.take() {
        store(&mut s.rows, changes);
    }
}

/// The batch's write failed: undo it.
fn rollback(s: &mut Sut) {
    s.centre.rollback();
    s.pending = None;
}

/// The process restarts: a new centre from what the store holds.
fn restart(s: &mut Sut, now: Timestamp, seed: u64) {
    let mut contacts: Vec<StoredContact> = s.rows.contacts.values().cloned().collect();
    contacts.sort_by_key(|r| r.seq);
    let mut agents: Vec<StoredAgent> = s.rows.agents.values().cloned().collect();
    agents.sort_by(|a, b| a.id.cmp(&b.id));
    let stored = Stored {
        contacts,
        commands: s.rows.commands.clone(),
        agents,
    };
    let (centre, changes) =
        Centre::restore(s.config.clone(), StdRng::seed_from_u64(seed), stored, now);
    s.centre = centre;
    s.pending = None;
    store(&mut s.rows, changes);
}

/// A contact status reduced to what the model predicts.
fn view_of(s: &ContactStatus) -> View {
    normalise(View {
        state: s.state,
        queue: s.queue.clone(),
        media: s.media,
        position: s.position,
        ahead: s.ahead,
        estimate: shape(s.estimate),
        live_call: s.live_call,
        sub: s.substitute.as_ref().map(|sub| match sub {
            Substitute::Callback { window, .. } => Sub::Callback(*window),
            Substitute::Email { .. } => Sub::Email,
            Substitute::WebForm { .. } => Sub::WebForm,
        }),
        agent: s.agent.as_ref().map(|a| a.id.clone()),
        connected: s.connected,
        transferring: s.transferring.clone(),
        notice: s.notice.is_some(),
        attempts: s.attempts.len(),
        next_attempt: s.next_attempt,
        rise: s.position_rise.as_ref().map(|r| (r.from, r.to)),
        options: s.options.clone(),
        targets: s
            .move_targets
            .iter()
            .map(|t| (t.queue.clone(), t.position, shape(t.estimate), t.remote))
            .collect(),
    })
}

/// What the model checks of an estimate: whether there is one (a working agent can serve
/// the contact). Its figures come from learnt occupancies and agents' elapsed times, which
/// `estimate.rs`'s own tests and the `ewt_sim` simulator check.
fn shape(e: WaitEstimate) -> WaitEstimate {
    match e {
        WaitEstimate::NoAgents => WaitEstimate::NoAgents,
        WaitEstimate::Range { .. } => WaitEstimate::Range {
            low_secs: 0,
            high_secs: 0,
            expected_secs: 0,
            learning: false,
        },
    }
}

// ---------------------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sub {
    Callback(Option<Window>),
    Email,
    WebForm,
}

/// What is compared for each contact.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    state: ContactState,
    queue: QueueId,
    media: MediaType,
    position: Option<u32>,
    ahead: u32,
    estimate: WaitEstimate,
    live_call: bool,
    sub: Option<Sub>,
    agent: Option<AgentId>,
    connected: bool,
    /// The remote queue's name.
    transferring: Option<String>,
    notice: bool,
    attempts: usize,
    next_attempt: Option<Timestamp>,
    rise: Option<(u32, u32)>,
    options: Vec<ActionKind>,
    /// Queue, position there, estimate there, remote.
    targets: Vec<(QueueId, u32, WaitEstimate, bool)>,
}

/// Ended contacts: only what the page shows about an ended contact is compared (what is
/// left of call-back retries, notices and rises on an ended row is the core's business).
fn normalise(mut v: View) -> View {
    if !v.state.is_live() {
        v.notice = false;
        v.attempts = 0;
        v.next_attempt = None;
        v.rise = None;
    }
    v
}

/// The fields stored with the contact's row: any change to them must bump `version`.
fn rowish(v: &View) -> View {
    View {
        position: None,
        ahead: 0,
        estimate: WaitEstimate::NoAgents,
        options: Vec::new(),
        targets: Vec::new(),
        // Derived from the queue's marks, like the position: not stored with the row.
        rise: None,
        ..v.clone()
    }
}

/// A call-back window a caller may ask for at `now`: it ends after it starts, has not
/// ended yet and starts within a week. (Windows are drawn valid; a resent command may
/// carry one that has passed since.)
fn window_ok(w: &Window, now: Timestamp) -> bool {
    w.not_before < w.not_after && now < w.not_after && w.not_before < now.plus_secs(7 * 86_400)
}

#[derive(Debug, Clone)]
struct MContact {
    id: ContactId,
    queue: usize,
    media: MediaType,
    state: ContactState,
    /// (seniority, admission order).
    key: (Timestamp, u64),
    caller: u32,
    call_ref: String,
    sub: Option<Sub>,
    agent: Option<usize>,
    connected: bool,
    transferring: Option<usize>,
    notice: bool,
    attempts: usize,
    next_attempt: Option<Timestamp>,
    /// When it entered its current line (`None`: before the last restart).
    entered: Option<Timestamp>,
    /// Past retention after it ended: the centre no longer knows it.
    forgotten: bool,
}

impl MContact {
    fn live(&self) -> bool {
        self.state.is_live()
    }

    /// Holds a place in its queue's line.
    fn in_line(&self) -> bool {
        self.live() && self.agent.is_none()
    }

    fn live_call(&self) -> bool {
        self.state == ContactState::Queued
            && matches!(self.media, MediaType::Voice | MediaType::Video)
            && self.sub.is_none()
    }

    fn routable(&self, now: Timestamp) -> bool {
        if self.state != ContactState::Queued || self.agent.is_some() || self.transferring.is_some()
        {
            return false;
        }
        if let Some(Sub::Callback(window)) = &self.sub {
            if let Some(w) = window
                && (now < w.not_before || now > w.not_after)
            {
                return false;
            }
            if self.next_attempt.is_some_and(|t| t > now) {
                return false;
            }
        }
        true
    }
}

#[derive(Debug, Clone)]
struct MAgent {
    state: AgentState,
    /// The `since` they had when last offered something: where they go back to among
    /// idle agents when an offer ends through no fault of theirs.
    idle_since: Option<Timestamp>,
}

/// How an admission goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    New,
    Rejoin(usize),
}

#[derive(Debug, Clone)]
struct Model {
    cfg: CentreConfig,
    /// Per agent, the local queues it takes contacts from.
    skills: Vec<Vec<usize>>,
    contacts: Vec<MContact>,
    agents: Vec<MAgent>,
    commands: HashMap<CommandId, (ContactId, Command, Confirmation)>,
    next_seq: u64,
    /// Totals since the (last) start.
    counters: Counters,
    /// Per queue, the last senior joins (a move keeps seniority): when, and the mover's
    /// key; at most `RISE_MARKS`, in memory only (a restart clears them).
    marks: Vec<std::collections::VecDeque<(Timestamp, (Timestamp, u64))>>,
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    *map.entry(key.to_owned()).or_default() += 1;
}

impl Model {
    fn new(cfg: CentreConfig) -> Model {
        let skills = cfg
            .agents
            .iter()
            .map(|a| {
                a.skills
                    .iter()
                    .filter_map(|(q, _)| cfg.queues.iter().position(|s| &s.id == q))
                    .filter(|&q| cfg.queues[q].remote.is_none())
                    .collect()
            })
            .collect();
        Model {
            skills,
            contacts: Vec::new(),
            agents: cfg
                .agents
                .iter()
                .map(|_| MAgent {
                    state: AgentState::LoggedOut,
                    idle_since: None,
                })
                .collect(),
            commands: HashMap::new(),
            next_seq: 0,
            counters: Counters::default(),
            marks: vec![std::collections::VecDeque::new(); cfg.queues.len()],
            cfg,
        }
    }

    fn find(&self, id: &ContactId) -> Option<usize> {
        self.contacts
            .iter()
            .position(|c| &c.id == id && !c.forgotten)
    }

    fn remote(&self, q: usize) -> bool {
        self.cfg.queues[q].remote.is_some()
    }

    fn staffed(&self, q: usize) -> u32 {
        let n = self
            .agents
            .iter()
            .zip(&self.skills)
            .filter(|(a, s)| a.state.is_logged_in() && s.contains(&q))
            .count();
        u32::try_from(n).expect("few agents")
    }

    /// Ready, ringing, busy or wrapping up with a skill for `q`: such an agent makes an
    /// estimate possible (see [`shape`]).
    fn estimate_at(&self, q: usize, _position: u32) -> WaitEstimate {
        let working = self.agents.iter().zip(&self.skills).any(|(a, s)| {
            s.contains(&q)
                && matches!(
                    a.state,
                    AgentState::Ready { .. }
                        | AgentState::Reserved { .. }
                        | AgentState::Busy { .. }
                        | AgentState::WrapUp { .. }
                )
        });
        shape(if working {
            WaitEstimate::Range {
                low_secs: 0,
                high_secs: 0,
                expected_secs: 0,
                learning: false,
            }
        } else {
            WaitEstimate::NoAgents
        })
    }

    fn ahead_in(&self, q: usize, key: (Timestamp, u64)) -> u32 {
        let n = self
            .contacts
            .iter()
            .filter(|c| c.queue == q && c.in_line() && c.key < key)
            .count();
        u32::try_from(n).expect("few contacts")
    }

    fn position(&self, k: usize) -> Option<u32> {
        let c = &self.contacts[k];
        c.in_line().then(|| self.ahead_in(c.queue, c.key) + 1)
    }

    fn live_count(&self) -> usize {
        self.contacts.iter().filter(|c| c.live()).count()
    }

    fn view(&self, k: usize) -> Option<View> {
        let c = &self.contacts[k];
        if c.forgotten {
            return None;
        }
        let position = self.position(k);
        let targets: Vec<_> = if c.in_line() && c.transferring.is_none() {
            (0..self.cfg.queues.len())
                .filter(|&q| q != c.queue && (!self.remote(q) || c.live_call()))
                .map(|q| {
                    let id = self.cfg.queues[q].id.clone();
                    if self.remote(q) {
                        (id, 0, WaitEstimate::NoAgents, true)
                    } else {
                        let p = self.ahead_in(q, c.key) + 1;
                        (id, p, self.estimate_at(q, p), false)
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut options = Vec::new();
        if c.in_line() && c.transferring.is_none() {
            if !targets.is_empty() {
                options.push(ActionKind::MoveQueue);
            }
            options.push(ActionKind::Note);
            match c.sub {
                None => {
                    options.extend([ActionKind::Callback, ActionKind::Email, ActionKind::WebForm])
                }
                Some(Sub::Callback(_)) => {
                    options.extend([ActionKind::CancelCallback, ActionKind::ChangeCallback]);
                }
                Some(_) => {}
            }
        }
        Some(normalise(View {
            state: c.state,
            queue: self.cfg.queues[c.queue].id.clone(),
            media: c.media,
            position,
            ahead: position.map_or(0, |p| p - 1),
            estimate: position.map_or(WaitEstimate::NoAgents, |p| self.estimate_at(c.queue, p)),
            live_call: c.live_call(),
            sub: c.sub.clone(),
            agent: c.agent.map(|a| self.cfg.agents[a].id.clone()),
            connected: c.connected,
            transferring: c.transferring.map(|t| self.cfg.queues[t].name.clone()),
            notice: c.notice,
            attempts: c.attempts,
            next_attempt: c.next_attempt,
            rise: position.and_then(|p| {
                // Seniors who joined ahead since this contact entered its line.
                let n = self.marks[c.queue]
                    .iter()
                    .filter(|(at, key)| *key < c.key && c.entered.is_none_or(|t| *at >= t))
                    .count();
                let n = u32::try_from(n).expect("few marks");
                (n > 0).then(|| ((p.saturating_sub(n)).max(1), p))
            }),
            options,
            targets,
        }))
    }

    fn end(&mut self, k: usize, now: Timestamp, reason: EndReason) {
        let queue = self.cfg.queues[self.contacts[k].queue].id.0.clone();
        *self
            .counters
            .ended
            .entry((queue, reason.as_str().to_owned()))
            .or_default() += 1;
        let c = &mut self.contacts[k];
        c.state = ContactState::Ended { at: now, reason };
        c.agent = None;
        c.connected = false;
        c.transferring = None;
    }

    /// Occupancies are learnt by the core; the model checks only whether an estimate
    /// exists (see [`shape`]).
    fn record_handle(&mut self, _q: usize, _now: Timestamp, _since: Timestamp) {}

    /// Agent `i` is connected with the contact it holds.
    fn connect(&mut self, now: Timestamp, i: usize) {
        let Some(contact) = self.agents[i].state.contact().cloned() else {
            return;
        };
        let k = self.find(&contact).expect("an agent holds a known contact");
        self.agents[i].state = AgentState::Busy {
            contact,
            since: now,
        };
        self.contacts[k].connected = true;
        bump(&mut self.counters.offers, "answered");
    }

    /// Agent `i`'s offer failed: not ready, the contact back in its place.
    fn fail_offer(&mut self, i: usize) {
        let Some(contact) = self.agents[i].state.contact().cloned() else {
            return;
        };
        self.agents[i].state = AgentState::NotReady {
            reason: "no answer".into(),
        };
        let k = self.find(&contact).expect("an agent holds a known contact");
        self.contacts[k].agent = None;
        self.contacts[k].connected = false;
        bump(&mut self.counters.offers, "failed");
    }

    /// The routing rule: ready agents, longest idle first (then configuration order), each
    /// get the most senior routable contact of the queues they have a skill for.
    fn route(&mut self, now: Timestamp) -> Vec<Offer> {
        let mut ready: Vec<(Timestamp, usize)> = self
            .agents
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a.state {
                AgentState::Ready { since } => Some((since, i)),
                _ => None,
            })
            .collect();
        ready.sort();
        let mut offers = Vec::new();
        for (since, i) in ready {
            let best = (0..self.contacts.len())
                .filter(|&k| {
                    let c = &self.contacts[k];
                    c.routable(now) && self.skills[i].contains(&c.queue)
                })
                .min_by_key(|&k| self.contacts[k].key);
            let Some(k) = best else { continue };
            let contact = self.contacts[k].id.clone();
            self.agents[i].idle_since = Some(since);
            self.agents[i].state = AgentState::Reserved {
                contact: contact.clone(),
                until: now.plus_secs(u64::from(self.cfg.offer_timeout_secs)),
            };
            let c = &mut self.contacts[k];
            c.agent = Some(i);
            c.connected = false;
            let attempt = if c.media == MediaType::Callback {
                u32::try_from(c.attempts).expect("few attempts") + 1
            } else {
                0
            };
            offers.push((self.cfg.agents[i].id.clone(), contact, attempt));
            let at_once = match c.sub {
                Some(Sub::Email | Sub::WebForm) => true,
                Some(Sub::Callback(_)) => !self.cfg.dial_callbacks,
                None => false,
            };
            if at_once {
                self.connect(now, i);
            }
        }
        offers
    }

    fn admission(&self, q: usize, media: MediaType, caller: u32) -> Result<Admission, Refusal> {
        if self.remote(q) {
            return Err(Refusal::UnknownQueue);
        }
        // A caller whose call was lost in a restart and who rings the same queue from the
        // same number gets that contact back (the oldest such).
        if matches!(media, MediaType::Voice | MediaType::Video)
            && let Some(k) = (0..self.contacts.len())
                .filter(|&k| {
                    let c = &self.contacts[k];
                    c.queue == q
                        && matches!(c.state, ContactState::Disconnected { .. })
                        && c.sub.is_none()
                        && c.caller == caller
                })
                .min_by_key(|&k| self.contacts[k].key)
        {
            return Ok(Admission::Rejoin(k));
        }
        if self.live_count() >= self.cfg.max_live_contacts {
            return Err(Refusal::Full);
        }
        Ok(Admission::New)
    }

    fn rejoin(&mut self, k: usize, media: MediaType, call_ref: &str) {
        let c = &mut self.contacts[k];
        c.state = ContactState::Queued;
        c.media = media;
        c.call_ref = call_ref.to_owned();
        c.transferring = None;
    }

    fn admit_new(
        &mut self,
        id: ContactId,
        now: Timestamp,
        q: usize,
        media: MediaType,
        caller: u32,
        call_ref: &str,
    ) -> usize {
        self.next_seq += 1;
        bump(&mut self.counters.admitted, self.cfg.queues[q].id.as_str());
        bump(&mut self.counters.admitted_media, media.as_str());
        self.contacts.push(MContact {
            id,
            queue: q,
            media,
            state: ContactState::Queued,
            key: (now, self.next_seq),
            caller,
            call_ref: call_ref.to_owned(),
            sub: None,
            agent: None,
            connected: false,
            transferring: None,
            notice: false,
            attempts: 0,
            next_attempt: None,
            entered: Some(now),
            forgotten: false,
        });
        self.contacts.len() - 1
    }

    fn hang_up(&mut self, now: Timestamp, k: usize) -> Result<(), Refusal> {
        let c = &self.contacts[k];
        if c.forgotten {
            return Err(Refusal::NotFound);
        }
        if !c.live() {
            return Err(Refusal::AlreadyEnded);
        }
        // The call of a contact replaced by a substitute ends by design: the contact
        // goes on.
        if c.sub.is_some() {
            return Ok(());
        }
        if let Some(a) = c.agent {
            let q = c.queue;
            match self.agents[a].state.clone() {
                AgentState::Busy { since, .. } => {
                    self.record_handle(q, now, since);
                    self.agents[a].state = AgentState::WrapUp {
                        until: now.plus_secs(u64::from(self.cfg.wrap_up_secs)),
                    };
                }
                _ => {
                    self.agents[a].state = AgentState::Ready {
                        since: self.agents[a].idle_since.unwrap_or(now),
                    };
                }
            }
        }
        self.end(k, now, EndReason::Abandoned);
        Ok(())
    }

    fn tick(&mut self, now: Timestamp) {
        for k in 0..self.contacts.len() {
            let c = &self.contacts[k];
            if c.forgotten {
                continue;
            }
            match c.state {
                ContactState::Disconnected { until, .. } if until <= now => {
                    self.end(k, now, EndReason::Lost);
                }
                ContactState::Ended { at, .. } if at.plus_secs(self.in_memory_secs()) <= now => {
                    self.contacts[k].forgotten = true;
                    let id = self.contacts[k].id.clone();
                    self.commands.retain(|_, (contact, _, _)| *contact != id);
                }
                ContactState::Queued
                    if c.agent.is_none()
                        && matches!(&c.sub, Some(Sub::Callback(Some(w))) if now > w.not_after) =>
                {
                    self.end(k, now, EndReason::Expired);
                }
                _ => {}
            }
        }
        for i in 0..self.agents.len() {
            match self.agents[i].state {
                AgentState::Reserved { until, .. } if until <= now => self.fail_offer(i),
                AgentState::WrapUp { until } if until <= now => {
                    self.agents[i].state = AgentState::Ready { since: now };
                }
                _ => {}
            }
        }
    }

    fn command(
        &mut self,
        now: Timestamp,
        cmd_id: &CommandId,
        k: usize,
        command: &Command,
        stale: bool,
    ) -> (Result<Confirmation, Refusal>, Vec<Told>) {
        let id = self.contacts[k].id.clone();
        if let Some((contact, cmd, confirmation)) = self.commands.get(cmd_id) {
            return if *contact == id && cmd == command {
                (Ok(confirmation.clone()), Vec::new())
            } else {
                (Err(Refusal::IdReused), Vec::new())
            };
        }
        let c = &self.contacts[k];
        if c.forgotten {
            return (Err(Refusal::NotFound), Vec::new());
        }
        // `stale`: the page showed an older version of the contact than there is now.
        if stale || !c.live() || c.agent.is_some() || c.transferring.is_some() {
            return (Err(Refusal::NotAllowed), Vec::new());
        }
        let mut told = Vec::new();
        let live_call = c.live_call();
        let call_ref = c.call_ref.clone();
        let confirmation = match command {
            Command::MoveQueue { to } => {
                let t = self
                    .cfg
                    .queues
                    .iter()
                    .position(|q| &q.id == to)
                    .expect("moves go to configured queues");
                if t == c.queue {
                    return (Err(Refusal::Invalid), Vec::new());
                }
                if let Some(uri) = self.cfg.queues[t].remote.clone() {
                    if !live_call {
                        return (Err(Refusal::NotAllowed), Vec::new());
                    }
                    told.push(Told::Transfer(id.clone(), call_ref, uri));
                    let c = &mut self.contacts[k];
                    c.transferring = Some(t);
                    c.notice = false;
                    Confirmation::Transferring {
                        to: to.clone(),
                        name: self.cfg.queues[t].name.clone(),
                    }
                } else {
                    if live_call {
                        told.push(Told::Reannounce(call_ref));
                    }
                    let from = self.cfg.queues[c.queue].id.clone();
                    // Everyone behind the mover in the target's line drops one place: one
                    // mark in that queue, read by their statuses.
                    let key = c.key;
                    let marks = &mut self.marks[t];
                    if marks.len() == crate::centre::queue::RISE_MARKS {
                        marks.pop_front();
                    }
                    marks.push_back((now, key));
                    let c = &mut self.contacts[k];
                    c.queue = t;
                    c.entered = Some(now);
                    c.notice = false;
                    Confirmation::Moved {
                        from,
                        to: to.clone(),
                        position: self.position(k).expect("in line"),
                    }
                }
            }
            Command::Callback { .. } | Command::Email { .. } | Command::WebForm { .. } => {
                if c.sub.is_some() {
                    return (Err(Refusal::NotAllowed), Vec::new());
                }
                if let Command::Callback {
                    window: Some(w), ..
                } = command
                    && !window_ok(w, now)
                {
                    return (Err(Refusal::Invalid), Vec::new());
                }
                let (media, sub, farewell) = match command {
                    Command::Callback { window, .. } => (
                        MediaType::Callback,
                        Sub::Callback(*window),
                        Farewell::Callback,
                    ),
                    Command::Email { .. } => (MediaType::Email, Sub::Email, Farewell::Goodbye),
                    _ => (MediaType::WebForm, Sub::WebForm, Farewell::Goodbye),
                };
                if live_call {
                    told.push(Told::EndCall(call_ref, farewell));
                }
                let c = &mut self.contacts[k];
                c.media = media;
                c.sub = Some(sub);
                c.notice = false;
                c.state = ContactState::Queued;
                let position = self.position(k).expect("in line");
                match command {
                    Command::Callback { number, window } => Confirmation::CallbackBooked {
                        number: number.clone(),
                        window: *window,
                        position,
                    },
                    Command::Email { .. } => Confirmation::EmailQueued { position },
                    _ => Confirmation::WebFormQueued { position },
                }
            }
            Command::CancelCallback => {
                if !matches!(c.sub, Some(Sub::Callback(_))) {
                    return (Err(Refusal::NotAllowed), Vec::new());
                }
                self.end(k, now, EndReason::Cancelled);
                Confirmation::CallbackCancelled
            }
            Command::ChangeCallback { number, window } => {
                if !matches!(c.sub, Some(Sub::Callback(_))) {
                    return (Err(Refusal::NotAllowed), Vec::new());
                }
                if window.is_some_and(|w| !window_ok(&w, now)) {
                    return (Err(Refusal::Invalid), Vec::new());
                }
                self.contacts[k].sub = Some(Sub::Callback(*window));
                Confirmation::CallbackChanged {
                    number: number.clone(),
                    window: *window,
                }
            }
            // A note changes nothing the model follows (places, offers, media).
            Command::Note { text } => {
                let chars = text.trim().chars().count();
                if chars > crate::centre::limits::NOTE_MAX_CHARS {
                    return (Err(Refusal::Invalid), Vec::new());
                }
                Confirmation::NoteSaved {
                    chars: u32::try_from(chars).unwrap_or(u32::MAX),
                }
            }
        };
        self.commands
            .insert(cmd_id.clone(), (id, command.clone(), confirmation.clone()));
        (Ok(confirmation), told)
    }

    fn agent_op(&mut self, now: Timestamp, i: usize, op: AgentStep) -> Result<(), Refusal> {
        use AgentState as S;
        let no = Err(Refusal::NotAllowed);
        let state = self.agents[i].state.clone();
        match op {
            AgentStep::Login => match state {
                S::LoggedOut => {
                    self.agents[i].state = S::NotReady {
                        reason: "logged in".into(),
                    };
                }
                _ => return no,
            },
            AgentStep::Ready => match state {
                S::NotReady { .. } | S::WrapUp { .. } => {
                    self.agents[i].state = S::Ready { since: now };
                }
                S::Ready { .. } => {}
                _ => return no,
            },
            AgentStep::NotReady => match state {
                S::NotReady { .. } | S::Ready { .. } | S::WrapUp { .. } => {
                    self.agents[i].state = S::NotReady {
                        reason: "break".into(),
                    };
                }
                _ => return no,
            },
            AgentStep::Logout => match state {
                S::Reserved { .. } | S::Busy { .. } => return no,
                _ => self.agents[i].state = S::LoggedOut,
            },
            AgentStep::Answer => match state {
                S::Reserved { .. } => self.connect(now, i),
                _ => return no,
            },
            AgentStep::Fail => match state {
                S::Reserved { .. } => self.fail_offer(i),
                _ => return no,
            },
            AgentStep::Handled => match state {
                S::Busy { contact, since } => {
                    self.agents[i].state = S::WrapUp {
                        until: now.plus_secs(u64::from(self.cfg.wrap_up_secs)),
                    };
                    let k = self.find(&contact).expect("known");
                    self.record_handle(self.contacts[k].queue, now, since);
                    self.end(k, now, EndReason::Completed);
                }
                _ => return no,
            },
            AgentStep::Next(_) => unreachable!("resolved by the harness"),
            AgentStep::Attempt(connected) => {
                let (contact, busy) = match state {
                    S::Reserved { contact, .. } => (contact, false),
                    S::Busy { contact, .. } => (contact, true),
                    _ => return no,
                };
                let k = self.find(&contact).expect("known");
                if !matches!(self.contacts[k].sub, Some(Sub::Callback(_))) {
                    return no;
                }
                self.contacts[k].attempts += 1;
                let label = if connected { "connected" } else { "busy" };
                bump(&mut self.counters.callback_attempts, label);
                if connected {
                    if !busy {
                        self.connect(now, i);
                    }
                    return Ok(());
                }
                self.agents[i].state = S::Ready {
                    since: self.agents[i].idle_since.unwrap_or(now),
                };
                let retry = self.cfg.callback_retry_secs;
                let max = usize::try_from(self.cfg.callback_attempts.max(1)).expect("small");
                let c = &mut self.contacts[k];
                c.agent = None;
                c.connected = false;
                let closed = matches!(&c.sub, Some(Sub::Callback(Some(w))) if now > w.not_after);
                let last = c.attempts >= max;
                if !last && !closed {
                    c.next_attempt = Some(now.plus_secs(retry));
                }
                if last {
                    self.end(k, now, EndReason::CallbackFailed);
                } else if closed {
                    self.end(k, now, EndReason::Expired);
                }
            }
        }
        Ok(())
    }

    /// The earliest instant at which `tick` has something to do: an offer or wrap-up ends,
    /// a keep-place window or retention runs out, a call-back window closes, or a waiting
    /// call-back becomes routable (later than `now`: one routable already was routed).
    fn due(&self, now: Timestamp) -> Option<Timestamp> {
        let retention = self.cfg.id_retention_secs;
        let contacts = self.contacts.iter().filter(|c| !c.forgotten).flat_map(|c| {
            let mut due = Vec::new();
            match (&c.state, &c.sub) {
                (ContactState::Disconnected { until, .. }, _) => due.push(*until),
                (ContactState::Ended { at, .. }, _) => due.push(at.plus_secs(retention)),
                (ContactState::Queued, Some(Sub::Callback(window))) if c.agent.is_none() => {
                    if let Some(w) = window {
                        due.push(Timestamp(w.not_after.0 + 1));
                    }
                    let opens = window.map(|w| w.not_before).max(c.next_attempt);
                    due.extend(opens.filter(|&t| t > now));
                }
                _ => {}
            }
            due
        });
        let agents = self.agents.iter().filter_map(|a| a.state.deadline());
        contacts.chain(agents).min()
    }

    /// The earliest instant after `now` at which something is due, or changes whether a
    /// contact may be routed.
    fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        let retention = self.cfg.id_retention_secs;
        let contacts = self.contacts.iter().filter(|c| !c.forgotten).flat_map(|c| {
            let mut due = Vec::new();
            match c.state {
                ContactState::Disconnected { until, .. } => due.push(until),
                ContactState::Ended { at, .. } => due.push(at.plus_secs(retention)),
                ContactState::Queued => {
                    if let Some(Sub::Callback(Some(w))) = &c.sub {
                        due.extend([w.not_before, w.not_after, Timestamp(w.not_after.0 + 1)]);
                    }
                    due.extend(c.next_attempt);
                }
            }
            due
        });
        let agents = self.agents.iter().filter_map(|a| a.state.deadline());
        contacts.chain(agents).filter(|&t| t > now).min()
    }

    fn transfer_result(&mut self, now: Timestamp, k: usize, ok: bool) -> Result<(), Refusal> {
        let c = &mut self.contacts[k];
        if c.forgotten {
            return Err(Refusal::NotFound);
        }
        if !c.live() {
            return Err(Refusal::AlreadyEnded);
        }
        if c.transferring.is_none() {
            return Ok(());
        }
        if ok {
            bump(&mut self.counters.transfers, "ok");
            self.end(k, now, EndReason::Transferred);
        } else {
            c.transferring = None;
            c.notice = true;
            bump(&mut self.counters.transfers, "failed");
        }
        Ok(())
    }

    /// A restart: every call is gone. A call an agent was talking to went on without us
    /// (completed); other live calls are disconnected and keep their place for
    /// `keep_place_secs`; substitutes stay queued; agents are logged out; ended contacts
    /// past retention are forgotten; handle-time averages start again from the defaults.
    /// How long an ended contact stays in the centre's memory (then its status is `None`
    /// from the core; the actor reads it back from the store).
    fn in_memory_secs(&self) -> u64 {
        crate::centre::core::ENDED_VISIBLE_SECS.min(self.cfg.id_retention_secs)
    }

    fn restart(&mut self, now: Timestamp) {
        let in_memory = self.in_memory_secs();
        for m in &mut self.marks {
            m.clear();
        }
        for c in &mut self.contacts {
            c.entered = None;
        }
        for k in 0..self.contacts.len() {
            if self.contacts[k].forgotten {
                continue;
            }
            let busy = self.contacts[k]
                .agent
                .is_some_and(|a| matches!(self.agents[a].state, AgentState::Busy { .. }));
            let c = &mut self.contacts[k];
            let talking = c.live() && !matches!(c.sub, Some(Sub::Email | Sub::WebForm));
            c.agent = None;
            c.connected = false;
            if talking && busy {
                c.state = ContactState::Ended {
                    at: now,
                    reason: EndReason::Completed,
                };
                c.transferring = None;
                c.next_attempt = None;
                continue;
            }
            match c.state {
                ContactState::Ended { at, .. } if at.plus_secs(in_memory) <= now => {
                    c.forgotten = true;
                }
                ContactState::Queued if c.live_call() => {
                    c.state = ContactState::Disconnected {
                        since: now,
                        until: now.plus_secs(self.cfg.keep_place_secs),
                    };
                    // A move to another site died with the call.
                    c.transferring = None;
                }
                _ => {}
            }
        }
        let known: HashSet<ContactId> = self
            .contacts
            .iter()
            .filter(|c| !c.forgotten)
            .map(|c| c.id.clone())
            .collect();
        self.commands
            .retain(|_, (contact, _, _)| known.contains(contact));
        // A new process counts from zero.
        self.counters = Counters::default();
        for a in &mut self.agents {
            a.state = AgentState::LoggedOut;
            a.idle_since = None;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Operations, harness, properties.
// ---------------------------------------------------------------------------------------

/// A contact chosen at run time: the `n`th (modulo) of the live ones, or of all the model
/// knows (ended and forgotten too, to exercise refusals).
#[derive(Debug, Clone, Copy)]
struct Pick {
    n: u8,
    live: bool,
}

#[derive(Debug, Clone)]
enum Op {
    /// Queue by configuration index (3 = the remote queue: refused), caller number.
    Admit {
        queue: u8,
        caller: u8,
        video: bool,
    },
    HangUp(Pick),
    /// To the queue by configuration index (the contact's own: refused; remote: transfer).
    Move(Pick, u8),
    /// Window: (start, length) in seconds from now.
    Callback(Pick, Option<(i16, u16)>),
    ChangeCallback(Pick, Option<(i16, u16)>),
    Email(Pick),
    WebForm(Pick),
    CancelCallback(Pick),
    /// An email sent from a page showing the previous version of the contact.
    Stale(Pick),
    /// Send the `nth` (modulo) command id already used again: the same command to the
    /// same contact, or a different one.
    Resend {
        nth: u8,
        same: bool,
    },
    Agent(u8, AgentStep),
    TransferResult(Pick, bool),
    /// Advance the clock by this many milliseconds and tick.
    Tick(u32),
    /// Advance the clock to the model's next due instant (an offer or wrap-up ending, a
    /// keep-place window or retention running out, a call-back window opening or closing,
    /// a retry due) plus this many milliseconds (-1, 0 or 1), and tick: deadlines are
    /// where an off-by-one hides, and random clock steps rarely land on them.
    TickToNext(i8),
    Restart,
    /// begin; ops; commit (true) or rollback (false).
    Batch(Vec<Op>, bool),
}

const CALLBACK_NUMBER: &str = "+442079460999";
const PARIS: &str = "sip:support@paris.example.com";

fn model_config(dial_callbacks: bool) -> CentreConfig {
    use testkit::{agent, local_queue, remote_queue};
    let mut cfg = testkit::config(
        vec![
            local_queue("sales", 300),
            local_queue("support", 240),
            local_queue("billing", 180),
            remote_queue("paris", "Paris office", PARIS),
        ],
        vec![
            agent("ada", &["sales", "support"]),
            agent("bob", &["support", "billing"]),
            agent("cy", &["sales"]),
            // A skill for the remote queue is ignored.
            agent("dee", &["billing", "sales", "paris"]),
        ],
    );
    cfg.keep_place_secs = 120;
    cfg.id_retention_secs = 240;
    cfg.max_live_contacts = 8;
    cfg.callback_attempts = 2;
    cfg.callback_retry_secs = 60;
    cfg.dial_callbacks = dial_callbacks;
    cfg
}

struct Harness {
    sut: Sut,
    model: Model,
    now: Timestamp,
    trace: Vec<String>,
    calls: u32,
    restarts: u64,
    /// Every command sent: id, contact, command (for resends).
    sent: Vec<(CommandId, ContactId, Command)>,
    /// Per contact, the stored fields and version last seen.
    seen: HashMap<ContactId, (View, u64)>,
    /// How often each outcome and each state transition happened (coverage).
    reached: BTreeMap<String, u32>,
}

type Checked = Result<(), String>;

fn differ<T: std::fmt::Debug + PartialEq>(what: &str, expected: &T, actual: &T) -> Checked {
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "{what}\n  model expected: {expected:?}\n  centre gave:    {actual:?}"
        ))
    }
}

impl Harness {
    fn new(dial_callbacks: bool) -> Harness {
        let cfg = model_config(dial_callbacks);
        Harness {
            sut: open(cfg.clone(), 1),
            model: Model::new(cfg),
            now: testkit::T0,
            trace: Vec::new(),
            calls: 0,
            restarts: 0,
            sent: Vec::new(),
            seen: HashMap::new(),
            reached: BTreeMap::new(),
        }
    }

    fn hit(&mut self, what: String) {
        *self.reached.entry(what).or_default() += 1;
    }

    /// Each contact's and agent's state, by name, for counting transitions.
    fn states(&self) -> (Vec<(ContactId, String)>, Vec<&'static str>) {
        let contacts = self
            .model
            .contacts
            .iter()
            .map(|c| {
                let s = match c.state {
                    _ if c.forgotten => "forgotten".to_owned(),
                    ContactState::Queued if c.connected => "connected".to_owned(),
                    ContactState::Queued if c.agent.is_some() => "offered".to_owned(),
                    ContactState::Queued if c.transferring.is_some() => "transferring".to_owned(),
                    ContactState::Queued => "queued".to_owned(),
                    ContactState::Disconnected { .. } => "disconnected".to_owned(),
                    ContactState::Ended { reason, .. } => format!("ended {reason}"),
                };
                (c.id.clone(), s)
            })
            .collect();
        let agents = self.model.agents.iter().map(|a| a.state.name()).collect();
        (contacts, agents)
    }

    fn count_transitions(&mut self, before: (Vec<(ContactId, String)>, Vec<&'static str>)) {
        let after = self.states();
        for (id, was) in &before.0 {
            if let Some((_, now)) = after.0.iter().find(|(i, _)| i == id)
                && now != was
            {
                self.hit(format!("contact {was} -> {now}"));
                self.hit(format!("contact -> {now}"));
            }
        }
        for (_, now) in after.0.iter().skip(before.0.len()) {
            self.hit(format!("contact new -> {now}"));
        }
        for (was, now) in before.1.iter().zip(&after.1) {
            if was != now {
                self.hit(format!("agent {was} -> {now}"));
            }
        }
    }

    /// Runs `ops`; on the first disagreement, the trace of resolved operations and what
    /// differed.
    fn run(&mut self, ops: &[Op]) -> Checked {
        for op in ops {
            if let Err(e) = self.step(op).and_then(|()| self.check(true)) {
                return Err(format!(
                    "after {} operations:\n{}\n{e}",
                    self.trace.len(),
                    self.trace.join("\n")
                ));
            }
        }
        Ok(())
    }

    fn pick(&self, p: Pick) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.model.contacts.len())
            .filter(|&k| !p.live || self.model.contacts[k].live())
            .collect();
        (!candidates.is_empty()).then(|| candidates[usize::from(p.n) % candidates.len()])
    }

    fn name(&self, k: usize) -> String {
        format!("#{k}")
    }

    fn log(&mut self, line: String) {
        self.trace.push(line);
    }

    /// Routing after the operation, on the model; the offers must be the centre's.
    fn expect_offers(&mut self, offers: &[Offer]) -> Checked {
        let expected = self.model.route(self.now);
        for (_, _, attempt) in &expected {
            self.hit(match attempt {
                0 => "offer".to_owned(),
                n => format!("offer of call-back attempt {n}"),
            });
        }
        differ("offers", &expected, &offers.to_vec())
    }

    fn step(&mut self, op: &Op) -> Checked {
        let before = self.states();
        self.step_inner(op)?;
        self.count_transitions(before);
        Ok(())
    }

    fn step_inner(&mut self, op: &Op) -> Checked {
        let now = self.now;
        match op {
            Op::Admit {
                queue,
                caller,
                video,
            } => {
                let q = usize::from(*queue) % self.model.cfg.queues.len();
                let media = if *video {
                    MediaType::Video
                } else {
                    MediaType::Voice
                };
                let caller = u32::from(*caller);
                self.calls += 1;
                let call_ref = format!("call-{}", self.calls);
                let queue_id = self.model.cfg.queues[q].id.clone();
                let expected = self.model.admission(q, media, caller);
                let o = admit(
                    &mut self.sut,
                    now,
                    &queue_id,
                    media,
                    &testkit::caller(caller),
                    &call_ref,
                );
                let k = match (expected, &o.result) {
                    (Err(e), Err(f)) if e == *f => None,
                    (Ok(Admission::Rejoin(k)), Ok((id, _))) if *id == self.model.contacts[k].id => {
                        self.model.rejoin(k, media, &call_ref);
                        Some(k)
                    }
                    (Ok(Admission::New), Ok((id, _))) => {
                        if self.model.find(id).is_some() {
                            return Err(format!("admit handed out a number in use: {id}"));
                        }
                        Some(
                            self.model
                                .admit_new(id.clone(), now, q, media, caller, &call_ref),
                        )
                    }
                    (e, _) => {
                        return differ(
                            &format!("admit to {queue_id} from caller {caller}"),
                            &format!("{e:?}"),
                            &format!("{:?}", o.result),
                        );
                    }
                };
                self.log(format!(
                    "admit {media:?} to {queue_id} from caller {caller} ({call_ref}) -> {}",
                    match (k, expected) {
                        (Some(k), Ok(Admission::Rejoin(_))) => format!("rejoined {}", self.name(k)),
                        (Some(k), _) => format!("new {}", self.name(k)),
                        (None, e) => format!("{e:?}"),
                    }
                ));
                self.hit(match (k, expected) {
                    (Some(_), Ok(Admission::Rejoin(_))) => "admit: rejoined".to_owned(),
                    (Some(_), Ok(a)) => format!("admit: {a:?}"),
                    _ => format!("admit: {expected:?}"),
                });
                self.expect_offers(&o.offers)?;
                differ("admit effects", &Vec::new(), &o.told)?;
                if let (Some(k), Ok((_, told))) = (k, &o.result) {
                    differ("position told at admission", &self.model.position(k), told)?;
                }
            }
            Op::HangUp(p) => {
                let Some(k) = self.pick(*p) else {
                    return Ok(());
                };
                let id = self.model.contacts[k].id.clone();
                self.log(format!("hang up {}", self.name(k)));
                let expected = self.model.hang_up(now, k);
                let o = hang_up(&mut self.sut, now, &id);
                differ("hang-up result", &expected, &o.result)?;
                self.hit(format!("hang-up: {expected:?}"));
                self.expect_offers(&o.offers)?;
                differ("hang-up effects", &Vec::new(), &o.told)?;
            }
            Op::Move(p, to) => {
                let to = usize::from(*to) % self.model.cfg.queues.len();
                let to = self.model.cfg.queues[to].id.clone();
                self.command_op(*p, Command::MoveQueue { to })?;
            }
            Op::Callback(p, w) => {
                let window = self.window(*w);
                self.command_op(
                    *p,
                    Command::Callback {
                        number: CALLBACK_NUMBER.into(),
                        window,
                    },
                )?;
            }
            Op::ChangeCallback(p, w) => {
                let window = self.window(*w);
                self.command_op(
                    *p,
                    Command::ChangeCallback {
                        number: CALLBACK_NUMBER.into(),
                        window,
                    },
                )?;
            }
            Op::Email(p) => self.command_op(
                *p,
                Command::Email {
                    subject: "My order".into(),
                    message: "It has not arrived.".into(),
                    reply_to: "me@example.com".into(),
                },
            )?,
            Op::WebForm(p) => self.command_op(
                *p,
                Command::WebForm {
                    name: "Ada".into(),
                    subject: "Refund".into(),
                    message: "Please refund me.".into(),
                    reply_to: "ada@example.org".into(),
                },
            )?,
            Op::CancelCallback(p) => self.command_op(*p, Command::CancelCallback)?,
            Op::Stale(p) => {
                let Some(k) = self.pick(*p) else {
                    return Ok(());
                };
                let id = CommandId(format!("cmd-{}", self.sent.len() + 1));
                let cmd = Command::Email {
                    subject: "Late".into(),
                    message: "From an old page.".into(),
                    reply_to: "me@example.com".into(),
                };
                self.sent
                    .push((id.clone(), self.model.contacts[k].id.clone(), cmd.clone()));
                self.send(id, k, cmd, true)?;
            }
            Op::Resend { nth, same } => {
                if self.sent.is_empty() {
                    return Ok(());
                }
                let (id, contact, cmd) = self.sent[usize::from(*nth) % self.sent.len()].clone();
                // A contact admitted in a batch that was rolled back is unknown to both.
                let Some(k) = self.model.contacts.iter().position(|c| c.id == contact) else {
                    return Ok(());
                };
                let cmd = if *same {
                    cmd
                } else if cmd == Command::CancelCallback {
                    Command::WebForm {
                        name: "Eve".into(),
                        subject: "Other".into(),
                        message: "Something else.".into(),
                        reply_to: "eve@example.org".into(),
                    }
                } else {
                    Command::CancelCallback
                };
                self.send(id, k, cmd, false)?;
            }
            Op::Agent(i, op) => {
                let i = usize::from(*i) % self.model.agents.len();
                let op = &self.natural(i, *op);
                let agent = self.model.cfg.agents[i].id.clone();
                self.log(format!("agent {agent} {op:?}"));
                let expected = self.model.agent_op(now, i, *op);
                let o = agent_op(&mut self.sut, now, &agent, *op);
                differ(
                    &format!("agent {agent} {op:?} result"),
                    &expected,
                    &o.result,
                )?;
                self.hit(format!("agent {op:?}: {expected:?}"));
                self.expect_offers(&o.offers)?;
                differ("agent effects", &Vec::new(), &o.told)?;
            }
            Op::TransferResult(p, ok) => {
                // Mostly for a call being moved (the result is about one), else anyone's.
                let moving: Vec<usize> = (0..self.model.contacts.len())
                    .filter(|&k| self.model.contacts[k].transferring.is_some())
                    .collect();
                let k = if p.live && !moving.is_empty() {
                    moving[usize::from(p.n) % moving.len()]
                } else {
                    let Some(k) = self.pick(*p) else {
                        return Ok(());
                    };
                    k
                };
                let id = self.model.contacts[k].id.clone();
                self.log(format!("transfer result for {}: ok={ok}", self.name(k)));
                let expected = self.model.transfer_result(now, k, *ok);
                let o = transfer_result(&mut self.sut, now, &id, *ok);
                differ("transfer result", &expected, &o.result)?;
                self.hit(format!("transfer result ok={ok}: {expected:?}"));
                self.expect_offers(&o.offers)?;
            }
            Op::Tick(ms) => {
                self.now = Timestamp(self.now.0 + u64::from(*ms));
                self.log(format!("tick +{ms} ms (t = {} s)", self.secs()));
                self.model.tick(self.now);
                let o = tick(&mut self.sut, self.now);
                self.expect_offers(&o.offers)?;
            }
            Op::TickToNext(offset) => {
                let Some(due) = self.model.next_due(now) else {
                    return Ok(());
                };
                let to = due.0.saturating_add_signed(i64::from(*offset)).max(now.0);
                self.now = Timestamp(to);
                self.log(format!(
                    "tick to the next due instant {offset:+} ms (t = {} s)",
                    self.secs()
                ));
                self.model.tick(self.now);
                let o = tick(&mut self.sut, self.now);
                self.expect_offers(&o.offers)?;
            }
            Op::Restart => {
                self.restarts += 1;
                self.log("restart from the stored rows".into());
                self.hit("restart".into());
                // Versions carry over, but a restart clears offers without a new version
                // (the agent is not part of the stored row): only check they never fall.
                self.check(false)?;
                restart(&mut self.sut, now, 100 + self.restarts);
                self.model.restart(now);
                self.check(false)?;
                self.refresh_seen();
            }
            Op::Batch(ops, keep) => {
                if self.sut.pending.is_some() {
                    return Ok(());
                }
                self.log("begin".into());
                let before: HashMap<ContactId, Option<ContactStatus>> = self
                    .model
                    .contacts
                    .iter()
                    .map(|c| (c.id.clone(), status(&self.sut, &c.id)))
                    .collect();
                let agents_before = agent_states(&self.sut);
                let model_before = self.model.clone();
                let seen_before = self.seen.clone();
                begin(&mut self.sut);
                for op in ops {
                    if matches!(op, Op::Batch(..) | Op::Restart) {
                        continue;
                    }
                    self.step(op)?;
                    self.check(true)?;
                }
                if *keep {
                    self.log("commit".into());
                    self.hit("batch committed".into());
                    commit(&mut self.sut);
                } else {
                    self.log("rollback".into());
                    self.hit("batch rolled back".into());
                    let touched: Vec<ContactId> =
                        self.model.contacts.iter().map(|c| c.id.clone()).collect();
                    rollback(&mut self.sut);
                    for id in touched {
                        let was = before.get(&id).cloned().flatten();
                        differ(
                            &format!("status of {id} after rollback (as before begin)"),
                            &was,
                            &status(&self.sut, &id),
                        )?;
                    }
                    differ(
                        "agents after rollback (as before begin)",
                        &agents_before,
                        &agent_states(&self.sut),
                    )?;
                    self.model = model_before;
                    self.seen = seen_before;
                    // The clock moved on during the batch while the state went back: the
                    // next tick (as the actor's timer would) routes what became due.
                    self.log(format!("tick +0 ms (t = {} s)", self.secs()));
                    self.model.tick(self.now);
                    let o = tick(&mut self.sut, self.now);
                    self.expect_offers(&o.offers)?;
                }
            }
        }
        Ok(())
    }

    /// Resolves [`AgentStep::Next`] from the agent's state in the model.
    fn natural(&self, i: usize, op: AgentStep) -> AgentStep {
        use AgentStep::*;
        let AgentStep::Next(r) = op else {
            return op;
        };
        let r = usize::from(r);
        let callback = |contact: &ContactId| {
            self.model
                .find(contact)
                .is_some_and(|k| matches!(self.model.contacts[k].sub, Some(Sub::Callback(_))))
        };
        match &self.model.agents[i].state {
            AgentState::LoggedOut => Login,
            AgentState::NotReady { .. } | AgentState::WrapUp { .. } => Ready,
            AgentState::Ready { .. } => [NotReady, Ready, Ready, Logout][r % 4],
            AgentState::Reserved { contact, .. } if callback(contact) => [
                Attempt(false),
                Attempt(false),
                Attempt(false),
                Attempt(true),
                Fail,
            ][r % 5],
            AgentState::Reserved { .. } => [Answer, Answer, Answer, Fail][r % 4],
            AgentState::Busy { contact, .. } if callback(contact) => {
                [Handled, Attempt(false)][r % 2]
            }
            AgentState::Busy { .. } => Handled,
        }
    }

    fn secs(&self) -> f64 {
        (self.now.0 - testkit::T0.0) as f64 / 1000.0
    }

    fn window(&self, w: Option<(i16, u16)>) -> Option<Window> {
        w.map(|(start, len)| {
            let not_before = Timestamp(self.now.0.saturating_add_signed(i64::from(start) * 1000));
            Window {
                not_before,
                not_after: not_before.plus_secs(u64::from(len)),
            }
        })
    }

    fn command_op(&mut self, p: Pick, cmd: Command) -> Checked {
        let Some(k) = self.pick(p) else {
            return Ok(());
        };
        let id = CommandId(format!("cmd-{}", self.sent.len() + 1));
        self.sent
            .push((id.clone(), self.model.contacts[k].id.clone(), cmd.clone()));
        self.send(id, k, cmd, false)
    }

    /// Sends `cmd` as a page showing the contact's current version would (or, `stale`, the
    /// one before it).
    fn send(&mut self, id: CommandId, k: usize, cmd: Command, stale: bool) -> Checked {
        let now = self.now;
        let contact = self.model.contacts[k].id.clone();
        let shown = self.seen.get(&contact).map(|(_, v)| *v);
        let stale = stale && shown.is_some();
        let version = shown.map(|v| if stale { v - 1 } else { v });
        self.log(format!(
            "command {} {cmd:?} on {} (page version {version:?})",
            id.0,
            self.name(k)
        ));
        let (expected, told) = self.model.command(now, &id, k, &cmd, stale);
        let o = command(&mut self.sut, now, &id, &contact, version, cmd);
        differ("command result", &expected, &o.result)?;
        if stale && expected == Err(Refusal::NotAllowed) {
            self.hit("stale page refused".into());
        }
        if matches!(expected, Ok(Confirmation::Moved { .. }))
            && (0..self.model.contacts.len())
                .any(|k| self.model.view(k).is_some_and(|v| v.rise.is_some()))
        {
            self.hit("a move pushed a junior back".into());
        }
        self.hit(match &expected {
            Ok(c) => {
                let name = format!("{c:?}");
                format!(
                    "command done: {}",
                    name.split([' ', '{']).next().unwrap_or("")
                )
            }
            Err(r) => format!("command refused: {r:?}"),
        });
        differ("command effects", &told, &o.told)?;
        self.expect_offers(&o.offers)
    }

    /// Takes what the centre shows now as the baseline for the version rule.
    fn refresh_seen(&mut self) {
        self.seen.clear();
        for c in &self.model.contacts {
            if let Some(s) = status(&self.sut, &c.id) {
                self.seen
                    .insert(c.id.clone(), (rowish(&view_of(&s)), s.version));
            }
        }
    }

    /// Every contact the model knows, every agent, the snapshot: as the model says.
    fn check(&mut self, versions_grow: bool) -> Checked {
        for k in 0..self.model.contacts.len() {
            let id = self.model.contacts[k].id.clone();
            let actual = status(&self.sut, &id);
            differ(
                &format!("status of {} ({id})", self.name(k)),
                &self.model.view(k),
                &actual.as_ref().map(view_of),
            )?;
            let Some(s) = actual else { continue };
            let row = rowish(&view_of(&s));
            if let Some((was, version)) = self.seen.get(&id) {
                if s.version < *version {
                    return Err(format!(
                        "version of {} went down: {version} -> {}",
                        self.name(k),
                        s.version
                    ));
                }
                if versions_grow && *was != row && s.version == *version {
                    return differ(
                        &format!("{} changed without a new version {version}", self.name(k)),
                        was,
                        &row,
                    );
                }
            }
            self.seen.insert(id, (row, s.version));
        }
        let expected_agents: Vec<(AgentId, AgentState)> = self
            .model
            .cfg
            .agents
            .iter()
            .zip(&self.model.agents)
            .map(|(spec, a)| (spec.id.clone(), a.state.clone()))
            .collect();
        differ("agent states", &expected_agents, &agent_states(&self.sut))?;
        differ(
            "live count",
            &self.model.live_count(),
            &live_count(&self.sut),
        )?;
        if let Some(due) = self.model.due(self.now)
            && next_deadline(&self.sut).is_none_or(|next| next > due)
        {
            return Err(format!(
                "the centre would sleep past {due} (something is due then) until {:?}",
                next_deadline(&self.sut)
            ));
        }
        if let Some(snap) = snapshot(&self.sut, self.now) {
            let mut expected: Vec<&ContactId> = self
                .model
                .contacts
                .iter()
                .filter(|c| !c.forgotten)
                .map(|c| &c.id)
                .collect();
            expected.sort();
            let mut actual: Vec<&ContactId> = snap.contacts.keys().collect();
            actual.sort();
            differ("contacts in the snapshot", &expected, &actual)?;
            differ("counters", &self.model.counters, &snap.counters)?;
            for (id, s) in &snap.contacts {
                differ(
                    &format!("snapshot entry of {id} against its status"),
                    &status(&self.sut, id).as_ref(),
                    &Some(s),
                )?;
            }
            for (q, summary) in snap.queues.iter().enumerate() {
                let line: Vec<&MContact> = self
                    .model
                    .contacts
                    .iter()
                    .filter(|c| c.queue == q && c.in_line())
                    .collect();
                let waiting = u32::try_from(line.len()).expect("few");
                let offered = self
                    .model
                    .contacts
                    .iter()
                    .filter(|c| c.queue == q && c.live() && c.agent.is_some())
                    .count();
                let longest = line
                    .iter()
                    .map(|c| self.now.millis_since(c.key.0) / 1000)
                    .max()
                    .unwrap_or(0);
                differ(
                    &format!("summary of queue {}", summary.id),
                    &(
                        waiting,
                        self.model.staffed(q),
                        u32::try_from(offered).expect("few"),
                        self.model.estimate_at(q, waiting + 1),
                        longest,
                    ),
                    &(
                        summary.waiting,
                        summary.staffed,
                        summary.offered,
                        shape(summary.estimate_for_new),
                        summary.longest_wait_secs,
                    ),
                )?;
            }
        }
        Ok(())
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    (any::<u8>(), prop::bool::weighted(0.8)).prop_map(|(n, live)| Pick { n, live })
}

fn window() -> impl Strategy<Value = Option<(i16, u16)>> {
    prop::option::of((-60i16..=120, 61u16..=300))
}

fn agent_action() -> impl Strategy<Value = AgentStep> {
    prop_oneof![
        2 => Just(AgentStep::Login),
        3 => Just(AgentStep::Ready),
        1 => Just(AgentStep::NotReady),
        1 => Just(AgentStep::Logout),
        3 => Just(AgentStep::Answer),
        1 => Just(AgentStep::Fail),
        2 => Just(AgentStep::Handled),
        2 => any::<bool>().prop_map(AgentStep::Attempt),
    ]
}

fn simple_op() -> BoxedStrategy<Op> {
    prop_oneof![
        6 => (prop_oneof![9 => 0u8..3, 1 => Just(3u8)], 0u8..4, prop::bool::weighted(0.2))
            .prop_map(|(queue, caller, video)| Op::Admit { queue, caller, video }),
        2 => pick().prop_map(Op::HangUp),
        3 => (pick(), 0u8..4).prop_map(|(p, to)| Op::Move(p, to)),
        3 => (pick(), window()).prop_map(|(p, w)| Op::Callback(p, w)),
        1 => (pick(), window()).prop_map(|(p, w)| Op::ChangeCallback(p, w)),
        1 => pick().prop_map(Op::Email),
        1 => pick().prop_map(Op::WebForm),
        1 => pick().prop_map(Op::CancelCallback),
        1 => pick().prop_map(Op::Stale),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(nth, same)| Op::Resend { nth, same }),
        3 => (0u8..4, agent_action()).prop_map(|(i, op)| Op::Agent(i, op)),
        12 => (0u8..4, any::<u8>()).prop_map(|(i, r)| Op::Agent(i, AgentStep::Next(r))),
        1 => (pick(), any::<bool>()).prop_map(|(p, ok)| Op::TransferResult(p, ok)),
        4 => prop_oneof![0u32..=2_000, 0u32..=150_000].prop_map(Op::Tick),
        3 => (-1i8..=1).prop_map(Op::TickToNext),
    ]
    .boxed()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        80 => simple_op(),
        1 => Just(Op::Restart),
        6 => (prop::collection::vec(simple_op(), 1..6), any::<bool>())
            .prop_map(|(ops, keep)| Op::Batch(ops, keep)),
    ]
}

/// Cases per run: enough to reach restarts, rejoins, retries and expiries in many orders,
/// few enough that the test stays under ~20 s in a debug build on a shared 2-core box.
const CASES: u32 = 300;

/// `CASES`, or proptest's own `PROPTEST_CASES` for a deeper run
/// (`PROPTEST_CASES=20000 cargo test --release --lib centre::model_tests`).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn centre_agrees_with_the_model(
        dial_callbacks in any::<bool>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut h = Harness::new(dial_callbacks);
        if let Err(e) = h.run(&ops) {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// The harness itself can fail: a model that disagrees with the centre on purpose is
/// caught (guards against a harness that compares nothing).
#[test]
fn a_wrong_model_is_caught() {
    let mut h = Harness::new(true);
    let ops = [
        Op::Admit {
            queue: 0,
            caller: 1,
            video: false,
        },
        Op::Admit {
            queue: 0,
            caller: 2,
            video: false,
        },
    ];
    h.run(&ops).expect("the model agrees");
    // Swap the model's seniority of the two: positions now disagree.
    let (a, b) = (h.model.contacts[0].key, h.model.contacts[1].key);
    h.model.contacts[0].key = b;
    h.model.contacts[1].key = a;
    let e = h.check(true).expect_err("a wrong position is noticed");
    assert!(e.contains("status of #0"), "{e}");
}

/// A fixed, readable walk through the main paths, so a reader can see the harness at work
/// (and the paths stay covered whatever the random cases draw).
#[test]
fn a_day_in_the_centre() {
    use AgentStep::*;
    let live = |n| Pick { n, live: true };
    let ops = vec![
        Op::Agent(0, Login),
        Op::Agent(0, Ready),
        Op::Agent(2, Login),
        Op::Agent(2, Ready),
        Op::Admit {
            queue: 0,
            caller: 0,
            video: false,
        },
        Op::Admit {
            queue: 0,
            caller: 1,
            video: false,
        },
        Op::Admit {
            queue: 1,
            caller: 2,
            video: true,
        },
        Op::Admit {
            queue: 2,
            caller: 3,
            video: false,
        },
        Op::Move(live(3), 1),
        Op::Agent(0, Answer),
        Op::Agent(2, Fail),
        Op::Callback(live(1), Some((-10, 120))),
        Op::Email(live(2)),
        Op::Move(live(0), 3),
        Op::TransferResult(live(0), false),
        Op::Tick(25_000),
        Op::Agent(2, Ready),
        Op::Agent(0, Handled),
        Op::Batch(vec![Op::Tick(31_000), Op::Agent(2, Attempt(false))], false),
        Op::Tick(31_000),
        Op::Restart,
        Op::Admit {
            queue: 2,
            caller: 3,
            video: false,
        },
        Op::Tick(150_000),
        Op::Resend { nth: 0, same: true },
        Op::Resend {
            nth: 1,
            same: false,
        },
    ];
    let mut h = Harness::new(true);
    if let Err(e) = h.run(&ops) {
        panic!("{e}");
    }
    assert!(h.trace.len() >= ops.len(), "{}", h.trace.join("\n"));
}

/// What the random operations must reach for the property above to mean something: every
/// kind of outcome and every contact and agent transition the model knows. Runs a fixed
/// (deterministic) sample so a change to the generators that starves a path fails here
/// rather than passing quietly.
#[test]
fn the_random_operations_reach_every_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig::with_cases(COVERAGE_CASES),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = (any::<bool>(), prop::collection::vec(op(), 1..80));
    let mut reached: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..COVERAGE_CASES {
        let (dial_callbacks, ops) = strategy.new_tree(&mut runner).expect("a case").current();
        let mut h = Harness::new(dial_callbacks);
        if let Err(e) = h.run(&ops) {
            panic!("{e}");
        }
        for (what, n) in h.reached {
            *reached.entry(what).or_default() += n;
        }
    }
    let table: Vec<String> = reached.iter().map(|(k, n)| format!("{n:7}  {k}")).collect();
    // Shown with --nocapture: how often each path was taken in this sample.
    eprintln!("{}", table.join("\n"));
    let missing: Vec<&&str> = MUST_REACH
        .iter()
        .filter(|what| !reached.contains_key(**what))
        .collect();
    assert!(
        missing.is_empty(),
        "never reached: {missing:?}\nreached:\n{}",
        table.join("\n")
    );
}

const COVERAGE_CASES: u32 = 200;

const MUST_REACH: &[&str] = &[
    "a move pushed a junior back",
    "admit: Err(Full)",
    "admit: Err(UnknownQueue)",
    "admit: New",
    "admit: rejoined",
    "agent busy -> wrap_up",
    "agent ready -> reserved",
    "agent reserved -> busy",
    "agent reserved -> not_ready",
    "agent reserved -> ready",
    "agent wrap_up -> ready",
    "agent not_ready -> busy",
    "batch committed",
    "batch rolled back",
    "command done: CallbackBooked",
    "command done: CallbackCancelled",
    "command done: CallbackChanged",
    "command done: EmailQueued",
    "command done: Moved",
    "command done: Transferring",
    "command done: WebFormQueued",
    "command refused: IdReused",
    "command refused: Invalid",
    "command refused: NotAllowed",
    "command refused: NotFound",
    "contact connected -> ended abandoned",
    "contact -> ended callback_failed",
    "contact connected -> ended completed",
    "contact disconnected -> ended lost",
    "contact disconnected -> queued",
    "contact ended abandoned -> forgotten",
    "contact offered -> connected",
    "contact offered -> disconnected",
    "contact offered -> ended abandoned",
    "contact offered -> queued",
    "contact queued -> disconnected",
    "contact queued -> ended cancelled",
    "contact queued -> ended expired",
    "contact queued -> transferring",
    "contact transferring -> disconnected",
    "contact transferring -> ended transferred",
    "contact -> ended lost",
    "contact -> ended expired",
    "contact -> ended completed",
    "contact -> ended cancelled",
    "transfer result ok=false: Ok(())",
    "hang-up: Ok(())",
    "offer",
    "offer of call-back attempt 1",
    "offer of call-back attempt 2",
    "restart",
    "stale page refused",
];

/// Found by the model: a live call being moved to another site when the gateway restarts
/// is disconnected like any live call, but keeps `transferring`. The transfer died with
/// the call (no `transfer_result` will ever come), so until its keep-place window runs out
/// the contact says it is being moved and refuses what the centre's docs promise a lost
/// call: "a caller's Command may replace the live (or lost) call by a call-back, email or
/// web form". (`rejoin` clears `transferring` for the same reason; `restore` does not.)
#[test]
fn a_transfer_under_way_at_a_restart_does_not_outlive_the_call() {
    let now = testkit::T0;
    let mut s = open(model_config(true), 1);
    let id = admit(
        &mut s,
        now,
        &testkit::q("sales"),
        MediaType::Voice,
        &testkit::caller(1),
        "call-1",
    )
    .result
    .expect("admitted")
    .0;
    let moved = command(
        &mut s,
        now,
        &CommandId("move".into()),
        &id,
        None,
        Command::MoveQueue {
            to: testkit::q("paris"),
        },
    );
    assert!(matches!(
        moved.result,
        Ok(Confirmation::Transferring { .. })
    ));
    restart(&mut s, now, 2);
    let after = status(&s, &id).expect("known after the restart");
    assert!(matches!(after.state, ContactState::Disconnected { .. }));
    assert_eq!(after.transferring, None, "the move died with the call");
    assert!(
        after.options.contains(&ActionKind::Callback),
        "{:?}",
        after.options
    );
    let booked = command(
        &mut s,
        now,
        &CommandId("callback".into()),
        &id,
        None,
        Command::Callback {
            number: CALLBACK_NUMBER.into(),
            window: None,
        },
    );
    assert!(
        matches!(booked.result, Ok(Confirmation::CallbackBooked { .. })),
        "{:?}",
        booked.result
    );
}
