//! What the supervisor's reports and wallboard read from the durable history: one fact
//! per contact (arrival, answer, end, agent) from `contacts` and `contact_events`, and
//! when each agent entered its current state (`agents`).
//!
//! Read through a connection of its own, opened read-only on the same database file
//! (WAL: readers never block the centre's writer, and the writer never blocks them), so
//! no report ever queues behind the centre thread. Callers run these on a blocking task.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use super::sqlite::DB_FILE;

/// One contact's life, as the reports count it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactFact {
    /// The queue it is (or ended) in: a contact moved between queues counts in the last.
    pub queue: String,
    /// "voice", "video", "callback", "email", "webform" (a call replaced by a call-back
    /// counts as a call-back).
    pub media: String,
    pub created: u64,
    /// When an agent first answered it.
    pub connected: Option<u64>,
    /// That agent's id.
    pub agent: Option<String>,
    pub ended: Option<u64>,
    /// "abandoned", "completed", ... (`EndReason::as_str`).
    pub end_reason: Option<String>,
}

/// A read-only connection on the store in `data_dir` (which must exist: the centre
/// created it at start).
pub fn open_read(data_dir: &Path) -> Result<Connection, StoreError> {
    let path = data_dir.join(DB_FILE);
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Open {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    conn.busy_timeout(Duration::from_secs(2))?;
    Ok(conn)
}

/// Every contact that arrived in `[from, to)` (Unix ms), oldest first.
pub fn contacts_between(
    conn: &Connection,
    from: u64,
    to: u64,
) -> Result<Vec<ContactFact>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.queue, c.media, c.created,
            (SELECT e.at FROM contact_events e
                WHERE e.contact = c.id AND e.kind = 'connected' ORDER BY e.id LIMIT 1),
            (SELECT e.detail FROM contact_events e
                WHERE e.contact = c.id AND e.kind = 'connected' ORDER BY e.id LIMIT 1),
            CASE WHEN c.state = 'ended' THEN c.state_at END,
            CASE WHEN c.state = 'ended' THEN c.end_reason END
         FROM contacts c
         WHERE c.created >= ?1 AND c.created < ?2
         ORDER BY c.created, c.seq",
    )?;
    let (from, to) = (to_sql(from), to_sql(to));
    let rows = stmt.query_map([from, to], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<i64>>(5)?,
            r.get::<_, Option<String>>(6)?,
        ))
    })?;
    let mut facts = Vec::new();
    for row in rows {
        let (queue, media, created, connected, detail, ended, end_reason) = row?;
        facts.push(ContactFact {
            queue,
            media,
            created: from_sql(created),
            connected: connected.map(from_sql),
            // The "connected" event says "to agent ID".
            agent: detail.and_then(|d| d.strip_prefix("to agent ").map(str::to_owned)),
            ended: ended.map(from_sql),
            end_reason,
        });
    }
    Ok(facts)
}

/// When each agent entered the state it is in (Unix ms), by agent id.
pub fn agent_state_since(conn: &Connection) -> Result<HashMap<String, u64>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, state_at FROM agents")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = HashMap::new();
    for row in rows {
        let (id, at) = row?;
        out.insert(id, from_sql(at));
    }
    Ok(out)
}

fn to_sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn from_sql(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}
