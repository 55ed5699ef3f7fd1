//! The queue log file: Asterisk-format lines (see [`crate::centre::queue_log`]) appended
//! by the centre thread after each committed batch (the only writer; it lives with the
//! centre because nothing else touches it).
//!
//! Append-only: opened with `O_APPEND`, never truncated or rewritten, so a reporting
//! tool may tail it and rotate it by renaming. Each batch's lines go out in one write after
//! the database commit: a line is never written for a change the database does not have.
//! The write reaches the kernel before the next batch, so it survives the process being
//! killed; it is not fsynced (Asterisk does not either): the database is the durable record,
//! and an fsync per batch was a twentieth of the centre thread's time at 1,000 calls/s. An
//! operating-system crash can lose the last lines, never invent them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::queue_log::QueueLogLine;

#[derive(Debug)]
pub struct QueueLogFile {
    file: File,
    path: PathBuf,
}

impl QueueLogFile {
    /// Opens `path` for appending, creating it (and its directory) if needed.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(QueueLogFile {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `lines` (one write to the kernel).
    pub fn append<'a>(
        &mut self,
        lines: impl IntoIterator<Item = &'a QueueLogLine>,
    ) -> std::io::Result<()> {
        let mut text = String::new();
        for line in lines {
            text.push_str(&line.format());
            text.push('\n');
        }
        if text.is_empty() {
            return Ok(());
        }
        self.file.write_all(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centre::Timestamp;
    use crate::store::tests::TempDir;

    #[test]
    fn lines_are_appended_never_rewritten() {
        let dir = TempDir::new("queue-log");
        let path = dir.path().join("logs").join("queue_log");
        let mut log = QueueLogFile::open(&path).expect("open");
        assert_eq!(log.path(), path);
        log.append(&[QueueLogLine::queue_start(Timestamp(1_700_000_000_000))])
            .expect("append");
        log.append(&[]).expect("nothing");
        drop(log);
        // Reopened (a restart): the old lines stay.
        let mut log = QueueLogFile::open(&path).expect("reopen");
        let pause = QueueLogLine::new(
            Timestamp(1_700_000_001_000),
            "NONE",
            "NONE",
            Some("ada"),
            "PAUSE",
            vec!["lunch".into()],
        );
        log.append([&pause, &pause]).expect("append");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "1700000000|NONE|NONE|NONE|QUEUESTART|\n\
             1700000001|NONE|NONE|PJSIP/ada|PAUSE|lunch\n\
             1700000001|NONE|NONE|PJSIP/ada|PAUSE|lunch\n"
        );
    }
}
