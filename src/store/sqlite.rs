//! The SQLite [`Store`]: `holdline.sqlite3` in the data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{Store, StoreError};
use crate::centre::{
    AgentId, Author, Change, ChatMessage, CommandId, ContactEvent, ContactId, ContactState,
    EndReason, MediaType, Notice, QueueId, Stored, StoredAgent, StoredCommand, StoredContact,
    Timestamp,
};
use crate::config::Synchronous;

/// File name inside the data directory.
pub const DB_FILE: &str = "holdline.sqlite3";

/// Schema migrations; entry `i` takes the database from version `i` to `i + 1`. Append
/// only: a released migration is never edited, because databases in the field ran it.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: contacts (one row per contact, upserted) and their append-only history.
    "CREATE TABLE contacts (
        id          TEXT PRIMARY KEY NOT NULL,
        queue       TEXT NOT NULL,
        media       TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('queued', 'disconnected', 'ended')),
        state_at    INTEGER,          -- disconnected: since; ended: at
        state_until INTEGER,          -- disconnected: until
        end_reason  TEXT,             -- ended: why
        seniority   INTEGER NOT NULL,
        seq         INTEGER NOT NULL,
        created     INTEGER NOT NULL,
        caller      TEXT NOT NULL,
        call_ref    TEXT NOT NULL
    ) STRICT;
    CREATE INDEX contacts_seq ON contacts (seq);
    CREATE TABLE contact_events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        contact TEXT NOT NULL,
        at      INTEGER NOT NULL,
        kind    TEXT NOT NULL,
        detail  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX contact_events_contact ON contact_events (contact, id);",
    // 1 -> 2: caller commands. Each contact row gets its version, the substitute that
    // replaced its call and its last position rise (both JSON, NULL for none); end_reason
    // may now also be 'cancelled' (a free TEXT column, so no change needed). Accepted
    // commands are remembered by id, with the confirmation a repeat gets again.
    "ALTER TABLE contacts ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE contacts ADD COLUMN substitute TEXT;
    ALTER TABLE contacts ADD COLUMN position_rise TEXT;
    CREATE TABLE commands (
        id           TEXT PRIMARY KEY NOT NULL,
        contact      TEXT NOT NULL,
        command      TEXT NOT NULL,   -- JSON
        confirmation TEXT NOT NULL,   -- JSON
        at           INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX commands_contact ON commands (contact);",
    // 2 -> 3: agents, one row each with its last state (JSON) and when it was entered;
    // end_reason may now also be 'completed' (free TEXT). Which agent a contact is with
    // is not stored on the contact: after a restart it is treated like any live call.
    "CREATE TABLE agents (
        id       TEXT PRIMARY KEY NOT NULL,
        state    TEXT NOT NULL,   -- JSON
        state_at INTEGER NOT NULL
    ) STRICT;",
    // 3 -> 4: call-back attempts (JSON list, NULL for none) and when the next may start;
    // the remote queue a live call is being moved to and the notice a failed move left;
    // the Call-ID the contact arrived with and the position it took in its queue (both
    // for the queue log; NULL in older rows: call_ref and 0 stand in). end_reason may
    // now also be 'transferred', 'callback_failed' or 'expired' (free TEXT).
    "ALTER TABLE contacts ADD COLUMN attempts TEXT;
    ALTER TABLE contacts ADD COLUMN next_attempt_at INTEGER;
    ALTER TABLE contacts ADD COLUMN transferring TEXT;
    ALTER TABLE contacts ADD COLUMN notice TEXT;
    ALTER TABLE contacts ADD COLUMN first_call_ref TEXT;
    ALTER TABLE contacts ADD COLUMN orig_position INTEGER;",
    // 4 -> 5: the wait estimate a contact was told at admission (JSON, NULL for none),
    // scored against the wait that followed when an agent answers.
    "ALTER TABLE contacts ADD COLUMN told TEXT;",
    // 5 -> 6: the supervisor's reports select contacts by arrival time (`store::report`).
    "CREATE INDEX contacts_created ON contacts (created);",
    // 6 -> 7: the caller's note for the agent (NULL for none; at most 500 characters).
    "ALTER TABLE contacts ADD COLUMN note TEXT;",
    // 7 -> 8: chat and IM transcripts, one row per message, numbered per contact; media
    // may now also be 'chat' or 'im' (free TEXT). author: 'customer', 'agent:<id>' or
    // 'system'.
    "CREATE TABLE messages (
        contact TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        at      INTEGER NOT NULL,
        author  TEXT NOT NULL,
        text    TEXT NOT NULL,
        PRIMARY KEY (contact, seq)
    ) STRICT, WITHOUT ROWID;",
];

/// WAL pages (4 KiB) after which a commit checkpoints the WAL into the database.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// The newest schema this build understands.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Contact rows and events in SQLite, one transaction per [`Store::apply`].
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/holdline.sqlite3` and brings its schema up to
    /// date; every commit is fsynced ([`Synchronous::Full`]).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, Synchronous::Full)
    }

    /// [`open`](Self::open) with the durability the operator chose (see
    /// [`DataConfig::synchronous`](crate::config::DataConfig::synchronous)).
    pub fn open_with(data_dir: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let path = data_dir.join(DB_FILE);
        let mut conn = Connection::open(&path).map_err(|e| StoreError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // WAL: a commit is one append to the log, and readers (backups, sqlite3 shell)
        // never block the writer.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path,
                reason: format!("journal_mode is {mode}, WAL is required"),
            });
        }
        // NORMAL already survives a process crash or kill -9: in WAL mode the commit's
        // frames are write()n to the log before COMMIT returns, so they sit in the OS page
        // cache and the next open replays them. FULL (the default) adds an fsync per
        // commit so a power cut or kernel panic cannot lose a contact number a caller has
        // already heard; group commit makes that one fsync per batch, not per caller.
        let level = match synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", level)?;
        // Checkpoint every ~40 MB of WAL instead of SQLite's ~4 MB: a checkpoint copies the
        // newest version of each page once, and the pages every commit touches (index
        // tails, the event table's last page) are rewritten in most commits, so a longer
        // WAL copies far fewer pages per call (at 1,000 calls/s: ~4x fewer WAL reads, ~10%
        // fewer writes). Costs up to 40 MB of disk and a longer replay after a crash.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        // 64 MiB of page cache (SQLite's default is 2 MiB): every call inserts into and
        // looks up the random-keyed contact index, whose upper levels then stay in memory
        // as the database grows to gigabytes.
        conn.pragma_update(None, "cache_size", -65_536)?;
        // Another process (a backup, an operator's shell) may hold the lock briefly.
        conn.busy_timeout(Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(SqliteStore { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The event history of one contact, oldest first (support and tests).
    pub fn events_for(&self, id: &ContactId) -> Result<Vec<ContactEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT contact, at, kind, detail FROM contact_events WHERE contact = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut events = Vec::new();
        for row in rows {
            let (contact, at, kind, detail) = row?;
            events.push(ContactEvent {
                contact: parse_id(&contact)?,
                at: Timestamp(from_sql_int(at, "event time")?),
                kind,
                detail,
            });
        }
        Ok(events)
    }
}

fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            id      INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL
        )",
    )?;
    let version = conn
        .query_row("SELECT version FROM schema_version WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(version.unwrap_or(0))
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock up front, so two processes opening a fresh
    // directory at once cannot both run migration 0 -> 1.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = schema_version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let start = usize::try_from(found)
        .map_err(|_| StoreError::Corrupt(format!("schema version {found}")))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (id, version) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            [i as i64 + 1],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn to_sql_int(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

fn from_sql_int(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is negative")))
}

/// A notice is stored as JSON; rows from before it was typed hold the sentence itself.
fn decode_notice(s: &str) -> Result<Notice, StoreError> {
    if s.starts_with('{') {
        from_json(s, "notice")
    } else {
        Ok(Notice::Text { text: s.to_owned() })
    }
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what} {s:?}: {e}")))
}

fn parse_id(s: &str) -> Result<ContactId, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("contact id {s:?}: {e}")))
}

/// A contact row as SQLite hands it back, before any of it is trusted.
struct RawRow {
    id: String,
    queue: String,
    media: String,
    state: String,
    state_at: Option<i64>,
    state_until: Option<i64>,
    end_reason: Option<String>,
    seniority: i64,
    seq: i64,
    created: i64,
    caller: String,
    call_ref: String,
    version: i64,
    substitute: Option<String>,
    position_rise: Option<String>,
    attempts: Option<String>,
    next_attempt_at: Option<i64>,
    transferring: Option<String>,
    notice: Option<String>,
    first_call_ref: Option<String>,
    orig_position: Option<i64>,
    told: Option<String>,
    note: Option<String>,
}

impl RawRow {
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawRow {
            id: r.get(0)?,
            queue: r.get(1)?,
            media: r.get(2)?,
            state: r.get(3)?,
            state_at: r.get(4)?,
            state_until: r.get(5)?,
            end_reason: r.get(6)?,
            seniority: r.get(7)?,
            seq: r.get(8)?,
            created: r.get(9)?,
            caller: r.get(10)?,
            call_ref: r.get(11)?,
            version: r.get(12)?,
            substitute: r.get(13)?,
            position_rise: r.get(14)?,
            attempts: r.get(15)?,
            next_attempt_at: r.get(16)?,
            transferring: r.get(17)?,
            notice: r.get(18)?,
            first_call_ref: r.get(19)?,
            orig_position: r.get(20)?,
            told: r.get(21)?,
            note: r.get(22)?,
        })
    }

    fn decode(self) -> Result<StoredContact, StoreError> {
        let id = parse_id(&self.id)?;
        let corrupt = |what: &str| StoreError::Corrupt(format!("contact {id}: {what}"));
        let time = |v: Option<i64>, what: &str| -> Result<Timestamp, StoreError> {
            let v = v.ok_or_else(|| corrupt(&format!("{what} missing")))?;
            Ok(Timestamp(from_sql_int(v, what)?))
        };
        let state = match self.state.as_str() {
            "queued" => ContactState::Queued,
            "disconnected" => ContactState::Disconnected {
                since: time(self.state_at, "disconnected since")?,
                until: time(self.state_until, "disconnected until")?,
            },
            "ended" => ContactState::Ended {
                at: time(self.state_at, "ended at")?,
                reason: self
                    .end_reason
                    .as_deref()
                    .ok_or_else(|| corrupt("end reason missing"))?
                    .parse::<EndReason>()
                    .map_err(|e| corrupt(&e.to_string()))?,
            },
            other => return Err(corrupt(&format!("unknown state {other:?}"))),
        };
        let attempts = self
            .attempts
            .as_deref()
            .map(|s| from_json(s, "call-back attempts"))
            .transpose()
            .map_err(|e| corrupt(&e.to_string()))?
            .unwrap_or_default();
        let orig_position = self
            .orig_position
            .map(|p| {
                u32::try_from(p)
                    .map_err(|_| corrupt(&format!("original position {p} out of range")))
            })
            .transpose()?
            .unwrap_or(0);
        let told = self
            .told
            .as_deref()
            .map(|s| from_json(s, "wait told"))
            .transpose()
            .map_err(|e| corrupt(&e.to_string()))?;
        Ok(StoredContact {
            queue: QueueId(self.queue),
            media: self
                .media
                .parse::<MediaType>()
                .map_err(|e| corrupt(&e.to_string()))?,
            state,
            seniority: Timestamp(from_sql_int(self.seniority, "seniority")?),
            seq: from_sql_int(self.seq, "seq")?,
            created: Timestamp(from_sql_int(self.created, "created")?),
            caller: self.caller,
            call_ref: self.call_ref,
            version: from_sql_int(self.version, "version")?,
            substitute: self
                .substitute
                .as_deref()
                .map(|s| from_json(s, "substitute"))
                .transpose()
                .map_err(|e| corrupt(&e.to_string()))?,
            position_rise: self
                .position_rise
                .as_deref()
                .map(|s| from_json(s, "position rise"))
                .transpose()
                .map_err(|e| corrupt(&e.to_string()))?,
            id,
            agent: None,
            connected: false,
            offered_at: None,
            attempts,
            next_attempt_at: self
                .next_attempt_at
                .map(|t| from_sql_int(t, "next attempt").map(Timestamp))
                .transpose()?,
            transferring: self.transferring.map(QueueId),
            notice: self.notice.as_deref().map(decode_notice).transpose()?,
            first_call_ref: self.first_call_ref.unwrap_or_default(),
            orig_position,
            entered: None,
            caller_failures: 0,
            hung_up: false,
            told,
            note: self.note,
        })
    }
}

/// SQLite's answer, sorted into what the centre can do about it.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Busy(e.to_string())
            }
            Some(ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl Store for SqliteStore {
    fn events(&mut self, id: &ContactId) -> Result<Vec<ContactEvent>, StoreError> {
        self.events_for(id)
    }

    fn contact(&mut self, id: &ContactId) -> Result<Option<StoredContact>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, queue, media, state, state_at, state_until, end_reason,
                    seniority, seq, created, caller, call_ref,
                    version, substitute, position_rise,
                    attempts, next_attempt_at, transferring, notice, first_call_ref,
                    orig_position, told, note
             FROM contacts WHERE id = ?1",
        )?;
        let raw = stmt
            .query_map([id.as_str()], RawRow::read)?
            .next()
            .transpose()?;
        raw.map(RawRow::decode).transpose()
    }

    fn messages(&mut self, id: &ContactId) -> Result<Vec<ChatMessage>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, at, author, text FROM messages WHERE contact = ?1 ORDER BY seq",
        )?;
        let raw = stmt
            .query_map([id.as_str()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(|(seq, at, author, text)| {
                Ok(ChatMessage {
                    contact: id.clone(),
                    seq: u32::try_from(seq)
                        .map_err(|_| StoreError::Corrupt(format!("message seq {seq}")))?,
                    at: Timestamp(from_sql_int(at, "message time")?),
                    author: Author::from_stored(&author)
                        .ok_or_else(|| StoreError::Corrupt(format!("message author {author:?}")))?,
                    text,
                })
            })
            .collect()
    }

    fn number_taken(&mut self, id: &ContactId) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM contacts WHERE id = ?1)")?;
        Ok(stmt.query_row([id.as_str()], |r| r.get::<_, bool>(0))?)
    }

    fn load_since(&mut self, ended_since: Timestamp) -> Result<Stored, StoreError> {
        let since = to_sql_int(ended_since.0, "load since")?;
        // A scan without decoding: millions of old rows cost a second or two, not their
        // memory.
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, queue, media, state, state_at, state_until, end_reason,
                    seniority, seq, created, caller, call_ref,
                    version, substitute, position_rise,
                    attempts, next_attempt_at, transferring, notice, first_call_ref,
                    orig_position, told, note
             FROM contacts WHERE state != 'ended' OR state_at >= ?1 ORDER BY seq",
        )?;
        let raw = stmt
            .query_map([since], RawRow::read)?
            .collect::<Result<Vec<_>, _>>()?;
        let contacts = raw
            .into_iter()
            .map(RawRow::decode)
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT m.id, m.contact, m.command, m.confirmation, m.at
             FROM commands m JOIN contacts c ON c.id = m.contact
             WHERE c.state != 'ended' OR c.state_at >= ?1
             ORDER BY m.rowid",
        )?;
        let raw = stmt
            .query_map([since], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let commands = raw
            .into_iter()
            .map(|(id, contact, command, confirmation, at)| {
                Ok(StoredCommand {
                    contact: parse_id(&contact)?,
                    command: from_json(&command, &format!("command {id}"))?,
                    confirmation: from_json(&confirmation, &format!("confirmation {id}"))?,
                    at: Timestamp(from_sql_int(at, "command time")?),
                    id: CommandId(id),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, state, state_at FROM agents ORDER BY rowid")?;
        let raw = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let agents = raw
            .into_iter()
            .map(|(id, state, at)| {
                Ok(StoredAgent {
                    state: from_json(&state, &format!("agent {id} state"))?,
                    at: Timestamp(from_sql_int(at, "agent state time")?),
                    id: AgentId(id),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Stored {
            contacts,
            commands,
            agents,
        })
    }

    fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        // Dropping the transaction on any error rolls the whole slice back.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO contacts (id, queue, media, state, state_at, state_until,
                     end_reason, seniority, seq, created, caller, call_ref,
                     version, substitute, position_rise,
                     attempts, next_attempt_at, transferring, notice, first_call_ref,
                     orig_position, told, note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                     ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)
                 ON CONFLICT (id) DO UPDATE SET
                     queue = excluded.queue, media = excluded.media, state = excluded.state,
                     state_at = excluded.state_at, state_until = excluded.state_until,
                     end_reason = excluded.end_reason, seniority = excluded.seniority,
                     seq = excluded.seq, created = excluded.created,
                     caller = excluded.caller, call_ref = excluded.call_ref,
                     version = excluded.version, substitute = excluded.substitute,
                     position_rise = excluded.position_rise,
                     attempts = excluded.attempts,
                     next_attempt_at = excluded.next_attempt_at,
                     transferring = excluded.transferring, notice = excluded.notice,
                     first_call_ref = excluded.first_call_ref,
                     orig_position = excluded.orig_position, told = excluded.told,
                     note = excluded.note",
            )?;
            let mut remember = tx.prepare_cached(
                // An id the centre no longer remembers (its contact left memory) may come
                // again with a new command: the first one stays remembered, and the batch
                // is not failed for everyone in it (a caller could otherwise fail every
                // batch at will by reusing an old command id).
                "INSERT INTO commands (id, contact, command, confirmation, at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
            )?;
            let mut agent = tx.prepare_cached(
                "INSERT INTO agents (id, state, state_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET
                     state = excluded.state, state_at = excluded.state_at",
            )?;
            let mut append = tx.prepare_cached(
                "INSERT INTO contact_events (contact, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut say = tx.prepare_cached(
                "INSERT INTO messages (contact, seq, at, author, text) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for change in changes {
                match change {
                    Change::Contact(row) => {
                        let (state, at, until, reason) = match row.state {
                            ContactState::Queued => ("queued", None, None, None),
                            ContactState::Disconnected { since, until } => (
                                "disconnected",
                                Some(to_sql_int(since.0, "since")?),
                                Some(to_sql_int(until.0, "until")?),
                                None,
                            ),
                            ContactState::Ended { at, reason } => (
                                "ended",
                                Some(to_sql_int(at.0, "ended at")?),
                                None,
                                Some(reason.as_str()),
                            ),
                        };
                        upsert.execute(params![
                            row.id.as_str(),
                            row.queue.as_str(),
                            row.media.as_str(),
                            state,
                            at,
                            until,
                            reason,
                            to_sql_int(row.seniority.0, "seniority")?,
                            to_sql_int(row.seq, "seq")?,
                            to_sql_int(row.created.0, "created")?,
                            row.caller,
                            row.call_ref,
                            to_sql_int(row.version, "version")?,
                            row.substitute
                                .as_ref()
                                .map(|s| to_json(s, "substitute"))
                                .transpose()?,
                            row.position_rise
                                .as_ref()
                                .map(|r| to_json(r, "position rise"))
                                .transpose()?,
                            (!row.attempts.is_empty())
                                .then(|| to_json(&row.attempts, "call-back attempts"))
                                .transpose()?,
                            row.next_attempt_at
                                .map(|t| to_sql_int(t.0, "next attempt"))
                                .transpose()?,
                            row.transferring.as_ref().map(QueueId::as_str),
                            row.notice
                                .as_ref()
                                .map(|n| to_json(n, "notice"))
                                .transpose()?,
                            row.first_call_ref,
                            i64::from(row.orig_position),
                            row.told
                                .as_ref()
                                .map(|t| to_json(t, "wait told"))
                                .transpose()?,
                            row.note,
                        ])?;
                    }
                    Change::Event(e) => {
                        append.execute(params![
                            e.contact.as_str(),
                            to_sql_int(e.at.0, "event time")?,
                            e.kind,
                            e.detail,
                        ])?;
                    }
                    Change::Agent(a) => {
                        agent.execute(params![
                            a.id.as_str(),
                            to_json(&a.state, "agent state")?,
                            to_sql_int(a.at.0, "agent state time")?,
                        ])?;
                    }
                    Change::Command(c) => {
                        remember.execute(params![
                            c.id.0,
                            c.contact.as_str(),
                            to_json(&c.command, "command")?,
                            to_json(&c.confirmation, "confirmation")?,
                            to_sql_int(c.at.0, "command time")?,
                        ])?;
                    }
                    Change::Message(m) => {
                        say.execute(params![
                            m.contact.as_str(),
                            i64::from(m.seq),
                            to_sql_int(m.at.0, "message time")?,
                            m.author.to_stored(),
                            m.text,
                        ])?;
                    }
                    // Appended to its file by the actor after the commit.
                    Change::QueueLog(_) => {}
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{TempDir, round_trip, sample};

    #[test]
    fn round_trip_through_sqlite() {
        let dir = TempDir::new("sqlite-round-trip");
        let mut store = SqliteStore::open(dir.path()).expect("open");
        assert!(store.path().ends_with(DB_FILE));
        round_trip(&mut store);
        let (changes, _) = sample();
        let Change::Contact(first) = &changes[0] else {
            panic!("sample starts with a row")
        };
        let events = store.events_for(&first.id).expect("events");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].kind, "created");
        // A stored number is taken for good; another is not.
        assert!(store.number_taken(&first.id).expect("lookup"));
        let other =
            ContactId::random(&mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(4242));
        assert_ne!(other, first.id);
        assert!(!store.number_taken(&other).expect("lookup"));
    }

    #[test]
    fn transcripts_are_stored_in_the_batch_and_a_repeated_number_fails_it_whole() {
        use crate::centre::{Author, ChatMessage};
        let dir = TempDir::new("sqlite-messages");
        let mut store = SqliteStore::open(dir.path()).expect("open");
        let (changes, _) = sample();
        let Change::Contact(first) = &changes[0] else {
            panic!("sample starts with a row")
        };
        let m = |seq, author, text: &str| ChatMessage {
            contact: first.id.clone(),
            seq,
            at: Timestamp(1_000 + u64::from(seq)),
            author,
            text: text.to_owned(),
        };
        let said = [
            m(1, Author::Customer, "<b>hi</b> ünïcode\nline two"),
            m(
                2,
                Author::Agent {
                    id: AgentId("ada".into()),
                },
                "hello",
            ),
            m(3, Author::System, "the visitor left"),
        ];
        let mut batch = changes.clone();
        batch.extend(said.iter().cloned().map(Change::Message));
        store.apply(&batch).expect("apply");
        assert_eq!(store.messages(&first.id).expect("read"), said.to_vec());
        // Number 3 again, with a new row change: the whole slice is refused.
        let before = store.contact(&first.id).expect("row").expect("row");
        let mut moved = before.clone();
        moved.version += 100;
        let again = [
            Change::Contact(moved),
            Change::Message(m(3, Author::Customer, "x")),
        ];
        assert!(store.apply(&again).is_err());
        assert_eq!(store.contact(&first.id).expect("row"), Some(before));
        assert_eq!(store.messages(&first.id).expect("read").len(), 3);
        let other =
            ContactId::random(&mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7));
        assert!(store.messages(&other).expect("read").is_empty());
    }

    #[test]
    fn a_start_loads_what_is_live_and_recently_ended_not_the_history() {
        let dir = TempDir::new("sqlite-load-since");
        let mut store = SqliteStore::open(dir.path()).expect("open");
        let (changes, all) = sample();
        store.apply(&changes).expect("apply");
        let ended = |r: &StoredContact| matches!(r.state, ContactState::Ended { .. });
        assert!(
            all.contacts.iter().any(ended),
            "the sample has an ended contact"
        );
        // Since the beginning of time: everything.
        assert_eq!(store.load_since(Timestamp(0)).expect("load"), all);
        // Since after every end: only what is not ended, and only their commands.
        let live = store.load_since(Timestamp(u64::MAX / 4)).expect("load");
        let want: Vec<_> = all.contacts.iter().filter(|r| !ended(r)).cloned().collect();
        assert_eq!(live.contacts, want);
        assert!(
            live.commands
                .iter()
                .all(|c| want.iter().any(|r| r.id == c.contact))
        );
        assert_eq!(live.agents, all.agents);
        // The memory store answers the same.
        let mut memory = crate::store::MemoryStore::new();
        memory.apply(&changes).expect("apply");
        assert_eq!(
            memory.load_since(Timestamp(u64::MAX / 4)).expect("load"),
            live
        );
    }

    #[test]
    fn synchronous_is_full_unless_the_operator_chose_normal() {
        let level = |store: &SqliteStore| -> i64 {
            store
                .conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .expect("pragma")
        };
        let dir = TempDir::new("sqlite-synchronous");
        // SQLite's numbers: 1 NORMAL, 2 FULL.
        assert_eq!(level(&SqliteStore::open(dir.path()).expect("open")), 2);
        let mut normal = SqliteStore::open_with(dir.path(), Synchronous::Normal).expect("open");
        assert_eq!(level(&normal), 1);
        round_trip(&mut normal);
    }

    #[test]
    fn reopen_after_an_unclean_drop_keeps_every_commit() {
        let dir = TempDir::new("sqlite-unclean");
        let (changes, expected) = sample();
        {
            let mut store = SqliteStore::open(dir.path()).expect("open");
            store.apply(&changes).expect("apply");
            // Leak the connection: no close, no WAL checkpoint, as after a crash.
            std::mem::forget(store);
        }
        assert!(dir.path().join(format!("{DB_FILE}-wal")).exists());
        let mut reopened = SqliteStore::open(dir.path()).expect("reopen");
        let loaded = reopened.load().expect("load");
        assert_eq!(loaded, expected);
        // Substitutes and remembered commands came back too.
        assert_eq!(loaded.commands.len(), 4);
        assert!(loaded.contacts.iter().any(|r| r.substitute.is_some()));
    }

    const CRASH_DIR_VAR: &str = "HOLDLINE_TEST_CRASH_DIR";

    /// Run only by `survives_a_real_process_abort` in a child process.
    #[test]
    #[ignore = "helper: run in a child process by survives_a_real_process_abort"]
    fn crash_child_writes_then_aborts() {
        let Some(dir) = std::env::var_os(CRASH_DIR_VAR) else {
            return;
        };
        let mut store = SqliteStore::open(Path::new(&dir)).expect("open");
        store.apply(&sample().0).expect("apply");
        // As close to kill -9 as a process can do to itself: no destructors, no flush.
        std::process::abort();
    }

    #[test]
    fn survives_a_real_process_abort() {
        let dir = TempDir::new("sqlite-abort");
        let exe = std::env::current_exe().expect("test binary");
        let status = std::process::Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                "store::sqlite::tests::crash_child_writes_then_aborts",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_VAR, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("spawn child");
        assert!(!status.success(), "the child must die, not exit cleanly");
        let mut reopened = SqliteStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.load().expect("load"), sample().1);
    }

    #[test]
    fn a_failing_slice_leaves_nothing_behind() {
        let dir = TempDir::new("sqlite-atomic");
        let mut store = SqliteStore::open(dir.path()).expect("open");
        let (mut changes, _) = sample();
        // Make the last row unwritable (timestamp beyond SQLite's integer range).
        if let Some(Change::Contact(row)) = changes
            .iter_mut()
            .rev()
            .find(|c| matches!(c, Change::Contact(_)))
        {
            row.created = Timestamp(u64::MAX);
        }
        assert!(store.apply(&changes).is_err());
        assert_eq!(store.load().expect("load"), Stored::default());
    }

    #[test]
    fn schema_is_versioned_and_newer_schemas_are_refused() {
        let dir = TempDir::new("sqlite-schema");
        drop(SqliteStore::open(dir.path()).expect("open"));
        let conn = Connection::open(dir.path().join(DB_FILE)).expect("raw open");
        let v: i64 = conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        // Opening again is a no-op migration.
        drop(SqliteStore::open(dir.path()).expect("reopen"));
        conn.execute("UPDATE schema_version SET version = 99", [])
            .expect("bump");
        drop(conn);
        assert!(matches!(
            SqliteStore::open(dir.path()),
            Err(StoreError::NewerSchema { found: 99, .. })
        ));
    }

    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_rows() {
        let dir = TempDir::new("sqlite-migrate-1-2");
        std::fs::create_dir_all(dir.path()).expect("dir");
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).expect("raw open");
            schema_version(&conn).expect("version table");
            conn.execute_batch(MIGRATIONS[0]).expect("migration 1");
            conn.execute("INSERT INTO schema_version (id, version) VALUES (1, 1)", [])
                .expect("version 1");
            let id = sample().1.contacts[0].id.clone();
            conn.execute(
                "INSERT INTO contacts (id, queue, media, state, seniority, seq, created,
                     caller, call_ref)
                 VALUES (?1, 'sales', 'voice', 'queued', 5, 1, 5, 'sip:x@y', 'c1')",
                [id.as_str()],
            )
            .expect("old row");
        }
        let mut store = SqliteStore::open(dir.path()).expect("migrate");
        let loaded = store.load().expect("load");
        assert_eq!(loaded.contacts.len(), 1);
        let row = &loaded.contacts[0];
        assert_eq!((row.version, &row.substitute), (1, &None));
        assert!(loaded.commands.is_empty());
        // And the new columns and table take writes.
        store.apply(&sample().0).expect("apply");
        assert_eq!(store.load().expect("load").commands.len(), 4);
    }

    fn agent(id: &str, state: crate::centre::AgentState, at: u64) -> StoredAgent {
        StoredAgent {
            id: AgentId(id.into()),
            state,
            at: Timestamp(at),
        }
    }

    #[test]
    fn agent_rows_round_trip_and_keep_only_the_last_state() {
        use crate::centre::AgentState;
        let dir = TempDir::new("sqlite-agents");
        let mut store = SqliteStore::open(dir.path()).expect("open");
        let contact = sample().1.contacts[0].id.clone();
        let states = [
            agent(
                "ada",
                AgentState::NotReady {
                    reason: "logged in".into(),
                },
                1,
            ),
            agent(
                "bob",
                AgentState::Ready {
                    since: Timestamp(2),
                },
                2,
            ),
            agent(
                "ada",
                AgentState::Reserved {
                    contact: contact.clone(),
                    until: Timestamp(9),
                },
                3,
            ),
        ];
        store
            .apply(
                &states
                    .iter()
                    .cloned()
                    .map(Change::Agent)
                    .collect::<Vec<_>>(),
            )
            .expect("apply");
        let busy = agent(
            "ada",
            AgentState::Busy {
                contact,
                since: Timestamp(4),
            },
            4,
        );
        store.apply(&[Change::Agent(busy.clone())]).expect("apply");
        drop(store);
        let mut store = SqliteStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store.load().expect("load").agents,
            [busy, states[1].clone()]
        );
        store
            .conn
            .execute("UPDATE agents SET state = '{\"state\":\"asleep\"}'", [])
            .expect("corrupt");
        assert!(matches!(store.load(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_version_2_database_is_migrated_and_takes_agents() {
        let dir = TempDir::new("sqlite-migrate-2-3");
        std::fs::create_dir_all(dir.path()).expect("dir");
        let id = sample().1.contacts[0].id.clone();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).expect("raw open");
            schema_version(&conn).expect("version table");
            conn.execute_batch(MIGRATIONS[0]).expect("migration 1");
            conn.execute_batch(MIGRATIONS[1]).expect("migration 2");
            conn.execute("INSERT INTO schema_version (id, version) VALUES (1, 2)", [])
                .expect("version 2");
            conn.execute(
                "INSERT INTO contacts (id, queue, media, state, state_at, end_reason,
                     seniority, seq, created, caller, call_ref, version)
                 VALUES (?1, 'sales', 'voice', 'ended', 9, 'cancelled', 5, 1, 5, 'sip:x@y',
                     'c1', 3)",
                [id.as_str()],
            )
            .expect("old row");
        }
        let mut store = SqliteStore::open(dir.path()).expect("migrate");
        let loaded = store.load().expect("load");
        assert_eq!(loaded.contacts.len(), 1);
        assert_eq!(loaded.contacts[0].version, 3);
        assert!(loaded.agents.is_empty());
        let v: i64 = store
            .conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        let ada = agent("ada", crate::centre::AgentState::LoggedOut, 5);
        store
            .apply(&[Change::Agent(ada.clone())])
            .expect("agents table");
        assert_eq!(store.load().expect("load").agents, [ada]);
    }

    #[test]
    fn a_version_3_database_is_migrated_and_keeps_attempts() {
        let dir = TempDir::new("sqlite-migrate-3-4");
        std::fs::create_dir_all(dir.path()).expect("dir");
        let id = sample().1.contacts[0].id.clone();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).expect("raw open");
            schema_version(&conn).expect("version table");
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).expect("migration");
            }
            conn.execute("INSERT INTO schema_version (id, version) VALUES (1, 3)", [])
                .expect("version 3");
            conn.execute(
                "INSERT INTO contacts (id, queue, media, state, seniority, seq, created,
                     caller, call_ref, version)
                 VALUES (?1, 'sales', 'voice', 'queued', 5, 1, 5, 'sip:x@y', 'c1', 2)",
                [id.as_str()],
            )
            .expect("old row");
        }
        let mut store = SqliteStore::open(dir.path()).expect("migrate");
        let mut row = store.load().expect("load").contacts.remove(0);
        assert_eq!(
            (row.attempts.len(), row.next_attempt_at, row.orig_position),
            (0, None, 0)
        );
        assert_eq!((row.first_call_ref.as_str(), row.log_ref()), ("", "c1"));
        row.attempts = vec![crate::centre::CallbackAttempt {
            at: Timestamp(7),
            outcome: "busy".into(),
        }];
        row.next_attempt_at = Some(Timestamp(9));
        row.transferring = Some(QueueId("paris".into()));
        row.notice = Some(Notice::TransferFailed {
            queue_name: "Paris office".into(),
            detail: "busy".into(),
        });
        row.first_call_ref = "c0".into();
        row.orig_position = 4;
        row.state = ContactState::Ended {
            at: Timestamp(10),
            reason: EndReason::CallbackFailed,
        };
        store
            .apply(&[Change::Contact(row.clone())])
            .expect("new columns");
        drop(store);
        let mut store = SqliteStore::open(dir.path()).expect("reopen");
        assert_eq!(store.load().expect("load").contacts, [row.clone()]);
        // A notice an older version stored as its sentence is read back as that text.
        store
            .conn
            .execute(
                "UPDATE contacts SET notice = 'We could not move your call.' WHERE id = ?1",
                [row.id.as_str()],
            )
            .expect("old notice");
        assert_eq!(
            store.load().expect("load").contacts[0].notice,
            Some(Notice::Text {
                text: "We could not move your call.".into()
            })
        );
    }

    #[test]
    fn unreadable_substitutes_are_reported() {
        let dir = TempDir::new("sqlite-corrupt-substitute");
        let mut store = SqliteStore::open(dir.path()).expect("open");
        store.apply(&sample().0).expect("apply");
        store
            .conn
            .execute(
                "UPDATE contacts SET substitute = '{\"kind\":\"fax\"}' WHERE substitute IS NOT NULL",
                [],
            )
            .expect("corrupt");
        assert!(matches!(store.load(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn corrupt_rows_are_reported_not_panicked_on() {
        let dir = TempDir::new("sqlite-corrupt");
        let mut store = SqliteStore::open(dir.path()).expect("open");
        store.apply(&sample().0).expect("apply");
        store
            .conn
            .execute("UPDATE contacts SET media = 'fax' WHERE seq = 1", [])
            .expect("corrupt");
        assert!(matches!(store.load(), Err(StoreError::Corrupt(_))));
    }
}
