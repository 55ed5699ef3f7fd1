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
    /// "voice", "video", "callback", "email", "webform", "chat", "im" (a call replaced by a call-back
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

/// The columns every fact query reads, by contact: its row, and its first "connected"
/// event (one look-up in its own events, index contact_events_contact, then that row).
const FACT_SELECT: &str = "SELECT c.id, c.queue, c.media, c.created, e.at, e.detail,
        CASE WHEN c.state = 'ended' THEN c.state_at END,
        CASE WHEN c.state = 'ended' THEN c.end_reason END
     FROM contacts c
     LEFT JOIN contact_events e ON e.id = (
         SELECT f.id FROM contact_events f
         WHERE f.contact = c.id AND f.kind = 'connected' ORDER BY f.id LIMIT 1)";

/// Facts of the rows `clause` selects (it follows [`FACT_SELECT`]), with their contact ids.
fn query_facts(
    conn: &Connection,
    clause: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(String, ContactFact)>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("{FACT_SELECT} {clause}"))?;
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Option<i64>>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<i64>>(6)?,
            r.get::<_, Option<String>>(7)?,
        ))
    })?;
    let mut facts = Vec::new();
    for row in rows {
        let (id, queue, media, created, connected, detail, ended, end_reason) = row?;
        facts.push((
            id,
            ContactFact {
                queue,
                media,
                created: from_sql(created),
                connected: connected.map(from_sql),
                // The "connected" event says "to agent ID".
                agent: detail.and_then(|d| d.strip_prefix("to agent ").map(str::to_owned)),
                ended: ended.map(from_sql),
                end_reason,
            },
        ));
    }
    Ok(facts)
}

/// Every contact that arrived in `[from, to)` (Unix ms), oldest first.
pub fn contacts_between(
    conn: &Connection,
    from: u64,
    to: u64,
) -> Result<Vec<ContactFact>, StoreError> {
    Ok(query_facts(
        conn,
        "WHERE c.created >= ?1 AND c.created < ?2 ORDER BY c.created, c.seq",
        [to_sql(from), to_sql(to)],
    )?
    .into_iter()
    .map(|(_, f)| f)
    .collect())
}

/// The facts of the contacts that arrived since `day_start`, kept up to date from the
/// history: the first read takes the day's contacts, each later one ([`DayFacts::catch_up`])
/// only the contacts with events appended since (every change of a contact writes one), so
/// a wallboard's refresh costs work in proportion to what changed, not to the day.
#[derive(Debug, Clone, Default)]
pub struct DayFacts {
    pub day_start: u64,
    /// The newest history line taken into account.
    last_event: i64,
    /// Oldest first, as they arrived (a contact changed later keeps its place).
    pub list: Vec<ContactFact>,
    index: HashMap<String, usize>,
}

impl DayFacts {
    /// No facts (yet) for the day starting at `day_start`.
    pub fn empty(day_start: u64) -> DayFacts {
        DayFacts {
            day_start,
            ..DayFacts::default()
        }
    }

    /// The day's facts as the store has them now.
    pub fn load(conn: &Connection, day_start: u64) -> Result<DayFacts, StoreError> {
        // One read transaction: the history's end and the rows are the same moment.
        let tx = conn.unchecked_transaction()?;
        let last_event =
            tx.query_row("SELECT COALESCE(MAX(id), 0) FROM contact_events", [], |r| {
                r.get::<_, i64>(0)
            })?;
        let rows = query_facts(
            &tx,
            "WHERE c.created >= ?1 ORDER BY c.created, c.seq",
            [to_sql(day_start)],
        )?;
        tx.finish()?;
        let mut day = DayFacts {
            day_start,
            last_event,
            ..DayFacts::default()
        };
        for (id, fact) in rows {
            day.put(id, fact);
        }
        Ok(day)
    }

    /// Takes in the contacts whose history grew since the last look; returns how many
    /// were read again.
    pub fn catch_up(&mut self, conn: &Connection) -> Result<usize, StoreError> {
        let tx = conn.unchecked_transaction()?;
        let mut touched: Vec<String> = Vec::new();
        let mut newest = self.last_event;
        {
            let mut stmt = tx.prepare_cached(
                "SELECT id, contact FROM contact_events WHERE id > ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([self.last_event], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut seen = std::collections::HashSet::new();
            for row in rows {
                let (id, contact) = row?;
                newest = newest.max(id);
                if seen.insert(contact.clone()) {
                    touched.push(contact);
                }
            }
        }
        for contact in &touched {
            for (id, fact) in query_facts(&tx, "WHERE c.id = ?1", [contact])? {
                if fact.created >= self.day_start {
                    self.put(id, fact);
                }
            }
        }
        tx.finish()?;
        self.last_event = newest;
        Ok(touched.len())
    }

    fn put(&mut self, id: String, fact: ContactFact) {
        match self.index.get(&id) {
            Some(&i) => self.list[i] = fact,
            None => {
                self.index.insert(id, self.list.len());
                self.list.push(fact);
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    /// A day of `n` contacts written straight into a store's schema: every third answered
    /// (by one of 20 agents, 30 s after arriving, ended 3 min later), every third abandoned
    /// after 10 s, the rest still waiting; one contact from the day before.
    fn day(dir: &Path, n: u64, t0: u64) {
        drop(SqliteStore::open(dir).expect("schema"));
        let mut conn = Connection::open(dir.join(DB_FILE)).expect("open");
        let tx = conn.transaction().expect("tx");
        {
            let mut contact = tx
                .prepare(
                    "INSERT INTO contacts (id, queue, media, state, state_at, end_reason,
                        seniority, seq, created, caller, call_ref)
                     VALUES (?1, ?2, 'voice', ?3, ?4, ?5, ?6, ?7, ?6, 'c', 'r')",
                )
                .expect("prepare");
            let mut event = tx
                .prepare("INSERT INTO contact_events (contact, at, kind, detail) VALUES (?1, ?2, ?3, ?4)")
                .expect("prepare");
            for i in 0..=n {
                let id = format!("{i:012}");
                // The last one arrived the day before.
                let created = if i == n { t0 - 1 } else { t0 + i * 1000 };
                let created_sql = i64::try_from(created).expect("fits");
                let queue = if i % 2 == 0 { "support" } else { "sales" };
                let (state, at, reason): (&str, Option<i64>, Option<&str>) = match i % 3 {
                    0 => ("ended", Some(created_sql + 210_000), Some("completed")),
                    1 => ("ended", Some(created_sql + 10_000), Some("abandoned")),
                    _ => ("queued", None, None),
                };
                let seq = i64::try_from(i).expect("fits");
                contact
                    .execute(rusqlite::params![
                        id,
                        queue,
                        state,
                        at,
                        reason,
                        created_sql,
                        seq
                    ])
                    .expect("contact");
                event
                    .execute(rusqlite::params![id, created_sql, "admitted", "queue"])
                    .expect("event");
                if i % 3 == 0 {
                    let agent = format!("to agent a{}", i % 20);
                    event
                        .execute(rusqlite::params![
                            id,
                            created_sql + 25_000,
                            "offered",
                            agent
                        ])
                        .expect("event");
                    event
                        .execute(rusqlite::params![
                            id,
                            created_sql + 30_000,
                            "connected",
                            agent
                        ])
                        .expect("event");
                    // A second connection (a reconnect) never replaces the first.
                    event
                        .execute(rusqlite::params![
                            id,
                            created_sql + 90_000,
                            "connected",
                            "to agent later"
                        ])
                        .expect("event");
                }
            }
        }
        tx.commit().expect("commit");
    }

    #[test]
    fn a_days_facts_come_from_the_store_with_their_first_answer() {
        let dir = std::env::temp_dir().join(format!("holdline-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let t0 = 1_700_000_000_000;
        let n = 20_000;
        day(&dir, n, t0);
        let conn = open_read(&dir).expect("read-only");
        let started = std::time::Instant::now();
        let facts = contacts_between(&conn, t0, t0 + 86_400_000).expect("facts");
        let took = started.elapsed();
        // The figure the README quotes: a wallboard reads this at most every 5 s.
        eprintln!("{n} contacts' facts read in {took:?}");
        assert_eq!(
            facts.len(),
            usize::try_from(n).expect("fits"),
            "not the day before"
        );
        assert_eq!(
            facts[0],
            ContactFact {
                queue: "support".into(),
                media: "voice".into(),
                created: t0,
                connected: Some(t0 + 30_000),
                agent: Some("a0".into()),
                ended: Some(t0 + 210_000),
                end_reason: Some("completed".into()),
            }
        );
        assert_eq!(facts[1].connected, None);
        assert_eq!(facts[1].ended, Some(t0 + 1000 + 10_000));
        assert_eq!(facts[1].end_reason.as_deref(), Some("abandoned"));
        assert_eq!(
            (facts[2].ended, facts[2].end_reason.as_deref()),
            (None, None)
        );
        assert!(facts.windows(2).all(|w| w[0].created <= w[1].created));
        // Bounded: a window reads only its own contacts.
        let hour = contacts_between(&conn, t0, t0 + 3_600_000).expect("facts");
        assert_eq!(hour.len(), 3600);
        // Read-only: the reports can never write.
        assert!(conn.execute("DELETE FROM contacts", []).is_err());
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_days_facts_are_brought_up_to_date_by_reading_only_what_changed() {
        let dir = std::env::temp_dir().join(format!("holdline-dayfacts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let t0 = 1_700_000_000_000;
        let n = 20_000;
        day(&dir, n, t0);
        let read = open_read(&dir).expect("read-only");
        let started = std::time::Instant::now();
        let mut facts = DayFacts::load(&read, t0).expect("load");
        let whole = started.elapsed();
        assert_eq!(
            facts.list,
            contacts_between(&read, t0, u64::MAX).expect("facts")
        );
        // Nothing changed: nothing read again.
        assert_eq!(facts.catch_up(&read).expect("catch up"), 0);

        // Then: one waiting contact answered, another ends abandoned, a new one arrives,
        // and one from the day before changes (it stays out of today's facts).
        let write = Connection::open(dir.join(DB_FILE)).expect("open");
        let at = |s: u64| i64::try_from(t0 + s).expect("fits");
        write
            .execute(
                "INSERT INTO contact_events (contact, at, kind, detail)
                 VALUES ('000000000002', ?1, 'connected', 'to agent a7')",
                [at(99_000)],
            )
            .expect("event");
        write
            .execute(
                "UPDATE contacts SET state = 'ended', state_at = ?1, end_reason = 'abandoned'
                 WHERE id = '000000000005'",
                [at(99_500)],
            )
            .expect("row");
        write
            .execute(
                "INSERT INTO contact_events (contact, at, kind, detail)
                 VALUES ('000000000005', ?1, 'ended:abandoned', '')",
                [at(99_500)],
            )
            .expect("event");
        write
            .execute(
                "INSERT INTO contacts (id, queue, media, state, state_at, seniority, seq,
                    created, caller, call_ref)
                 VALUES ('999999999999', 'sales', 'email', 'queued', ?1, ?1, 99999, ?1, 'c', 'r')",
                [at(100_000_000)],
            )
            .expect("row");
        write
            .execute(
                "INSERT INTO contact_events (contact, at, kind, detail)
                 VALUES ('999999999999', ?1, 'created', '{}')",
                [at(100_000_000)],
            )
            .expect("event");
        let yesterday = format!("{n:012}");
        write
            .execute(
                "INSERT INTO contact_events (contact, at, kind, detail) VALUES (?1, ?2, 'moved', '{}')",
                rusqlite::params![yesterday, at(100_000_001)],
            )
            .expect("event");
        let started = std::time::Instant::now();
        assert_eq!(
            facts.catch_up(&read).expect("catch up"),
            4,
            "only what changed"
        );
        let change = started.elapsed();
        eprintln!("{n} contacts' facts: read whole in {whole:?}; 4 changes taken in {change:?}");
        // The same as reading the whole day again, in the same order.
        assert_eq!(
            facts.list,
            contacts_between(&read, t0, u64::MAX).expect("facts")
        );
        assert_eq!(facts.list[2].agent.as_deref(), Some("a7"));
        assert_eq!(facts.list[5].end_reason.as_deref(), Some("abandoned"));
        assert_eq!(facts.list.last().map(|f| f.media.as_str()), Some("email"));
        drop((read, write));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
