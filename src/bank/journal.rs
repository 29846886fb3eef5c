//! The stub issuer's durable state: an append-only journal of its answers,
//! one JSON object per line, each line written and `fsync`ed before the
//! answer it records leaves the issuer. Replaying the lines over the
//! fixtures' opening balances rebuilds everything a restart must not lose:
//! the final answer per idempotency key (so a repeated authorize or a query
//! gets the first answer again), every debit and reversal (balances), and
//! the wrong-secret count (PINs, or expiry and CVN2) of the day per card.
//!
//! Why a journal and not a rewritten snapshot: one small append per answer
//! costs the same whatever the history, and a crash can only tear the last
//! line, which was never answered (the answer waits for the `fsync`). The
//! writer cuts such a torn tail off when it opens the file; any other bad
//! line stops the start with its line number.
//!
//! Group commit: a line is written ([`Journal::write`]) under the issuer's
//! lock, and its `fsync` is left to one syncer thread per journal, which
//! takes everything written by the time it starts and makes it durable with
//! one `fdatasync`; lines written meanwhile wait for the next one. An answer
//! leaves only once a [`Barrier`] taken after its line (or after the state it
//! read) has passed, so nothing is answered that a crash could undo, and
//! answers waiting at the same moment share one `fsync`. An `fsync` that
//! fails stops the journal: every later write and barrier fails (the issuer
//! answers `Timeout`) until the daemon restarts and replays what is on disk.
//!
//! Nothing secret is written: no PIN, PIN block, expiry or CVN2 ever reaches
//! the journal, and a card is named by a keyed reference
//! ([`super::fixtures::TestCard::reference`]), never by its number.
//!
//! One process writes a journal at a time: the writer holds an exclusive
//! lock on the file (released when it exits, however it exits), so a second
//! daemon pointed at the same file refuses to start instead of corrupting
//! it. Other processes may read it ([`read`]) to see what the issuer
//! recorded.

use crate::domain::ResultCode;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::watch;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Line {
    /// The final answer to an idempotency key, with what it changed.
    Answer {
        key: String,
        /// The card's reference; `None` for a card not on file.
        card: Option<String>,
        amount_fen: i64,
        outcome: Recorded,
        /// The card's wrong-secret count for the Shanghai day (`YYYY-MM-DD`)
        /// after this answer, when this answer counted a wrong PIN.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wrong_pins: Option<(String, u8)>,
    },
    /// An approved payment's money returned, or an approved refund's taken
    /// back.
    Reverse { key: String },
    /// The final answer to a refund (its key is the refund id) of the
    /// purchase answered under `purchase`.
    Refund {
        key: String,
        purchase: String,
        /// The card's reference; `None` for a card not on file.
        card: Option<String>,
        amount_fen: i64,
        outcome: Recorded,
    },
}

/// An answer's outcome as written: `approved` (and so debited),
/// `wrong_secret` or `declined` with the result code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Recorded {
    Approved { auth_code: String },
    WrongSecret { tries_left: Option<u8> },
    Declined { code: String },
}

impl Recorded {
    pub(crate) fn from_decision(o: &super::Decision) -> Self {
        match o {
            super::Decision::Approved { auth_code } => Recorded::Approved {
                auth_code: auth_code.clone(),
            },
            super::Decision::WrongSecret { tries_left } => Recorded::WrongSecret {
                tries_left: *tries_left,
            },
            super::Decision::Declined(code) => Recorded::Declined {
                code: code.code().to_owned(),
            },
        }
    }

    pub(crate) fn to_decision(&self) -> anyhow::Result<super::Decision> {
        Ok(match self {
            Recorded::Approved { auth_code } => super::Decision::Approved {
                auth_code: auth_code.clone(),
            },
            Recorded::WrongSecret { tries_left } => super::Decision::WrongSecret {
                tries_left: *tries_left,
            },
            Recorded::Declined { code } => super::Decision::Declined(
                ResultCode::parse(code).with_context(|| format!("unknown result code {code:?}"))?,
            ),
        })
    }
}

/// The open journal a stub issuer appends to.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    /// Bytes of complete lines: where a failed append is cut back to.
    len: u64,
    sync: Arc<Syncer>,
    /// How far the file is durable (or that it failed), from the syncer.
    synced: watch::Receiver<Synced>,
    /// The syncer thread, joined on drop: it holds a handle on the file
    /// (and so its lock) until it ends.
    syncer: Option<std::thread::JoinHandle<()>>,
}

/// What the syncer thread has made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Synced {
    /// Bytes of the file known to be on disk.
    upto: u64,
    /// An `fsync` failed: nothing written since is known to be durable.
    failed: bool,
}

/// The syncer thread's inbox.
struct Syncer {
    state: Mutex<SyncState>,
    wake: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Bytes written so far (complete lines).
    written: u64,
    /// The journal was dropped: the thread ends once nothing is left.
    closed: bool,
    /// Tests hold the syncer to gather writes.
    held: bool,
    /// How many `fsync`s the thread has done.
    syncs: u64,
}

/// A point in the journal an answer waits for before it leaves: every line
/// written before the barrier was taken is on disk once
/// [`Barrier::wait`] returns `Ok`.
#[derive(Debug)]
pub(crate) struct Barrier {
    upto: u64,
    synced: watch::Receiver<Synced>,
}

impl Barrier {
    /// Waits until the journal is durable up to the barrier.
    ///
    /// # Errors
    /// The `fsync` failed (or the journal closed first): the lines may not
    /// be on disk.
    pub(crate) async fn wait(mut self) -> std::io::Result<()> {
        let upto = self.upto;
        let got = self
            .synced
            .wait_for(|s| s.failed || s.upto >= upto)
            .await
            .map(|s| *s);
        match got {
            Ok(s) if !s.failed => Ok(()),
            Ok(_) => Err(std::io::Error::other(
                "the stub issuer's journal failed to sync",
            )),
            Err(_) => Err(std::io::Error::other("the stub issuer's journal is closed")),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        {
            let mut st = self.sync.state.lock().unwrap_or_else(|e| e.into_inner());
            st.closed = true;
            self.sync.wake.notify_all();
        }
        if let Some(t) = self.syncer.take() {
            // It syncs what is left, then ends; a panic there is already
            // logged by the runtime.
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (creating it, and its folder, if needed) the journal at `path`
    /// for appending, and returns it with the lines already in it. A torn
    /// last line from a crash is cut off.
    pub(crate) fn open(path: &Path) -> anyhow::Result<(Self, Vec<Line>)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the folder of {}", path.display()))?;
        }
        let existed = path.exists();
        // Owner only (it holds balances and PIN-try counts), whatever the
        // umask; a file left open by an older version is tightened.
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        crate::store::owner_only(path)
            .with_context(|| format!("restricting {} to its owner", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "{} is in use by another process (one daemon per stub issuer state file: \
                 give each its own bank.stub_state)",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        if !existed {
            // The new file's name must survive a crash too.
            sync_dir(path);
        }
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .with_context(|| format!("reading {}", path.display()))?;
        let (lines, complete) = parse(&text).with_context(|| format!("{}", path.display()))?;
        if complete < text.len() {
            tracing::warn!(path = %path.display(), bytes = text.len() - complete, "stub issuer state: cutting off a torn last line");
            file.set_len(complete as u64)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("truncating {}", path.display()))?;
            file.seek(SeekFrom::End(0))?;
        }
        let len = complete as u64;
        let sync = Arc::new(Syncer {
            state: Mutex::new(SyncState {
                written: len,
                ..SyncState::default()
            }),
            wake: Condvar::new(),
        });
        let (tx, synced) = watch::channel(Synced {
            upto: len,
            failed: false,
        });
        let handle = file
            .try_clone()
            .with_context(|| format!("opening {} for its syncer", path.display()))?;
        let thread_sync = sync.clone();
        let syncer = std::thread::Builder::new()
            .name("stub-journal-sync".into())
            .spawn(move || sync_loop(&handle, &thread_sync, &tx))
            .context("starting the journal's syncer thread")?;
        Ok((
            Self {
                file,
                path: path.to_owned(),
                len,
                sync,
                synced,
                syncer: Some(syncer),
            },
            lines,
        ))
    }

    /// Writes one line (not yet durable: take a [`Journal::barrier`] after
    /// it and wait before answering). On failure, or once an `fsync` has
    /// failed, nothing is written: the file is cut back to its last
    /// complete line, so a later write cannot be glued to half a line.
    pub(crate) fn write(&mut self, line: &Line) -> std::io::Result<()> {
        if self.synced.borrow().failed {
            return Err(std::io::Error::other(
                "the stub issuer's journal failed to sync",
            ));
        }
        let mut text = serde_json::to_vec(line).map_err(std::io::Error::other)?;
        text.push(b'\n');
        match self.file.write_all(&text) {
            Ok(()) => {
                self.len += text.len() as u64;
                let mut st = self.sync.state.lock().unwrap_or_else(|e| e.into_inner());
                st.written = self.len;
                self.sync.wake.notify_one();
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// The point every line written so far must reach before an answer
    /// that depends on them (or on the state they made) may leave.
    pub(crate) fn barrier(&self) -> Barrier {
        Barrier {
            upto: self.len,
            synced: self.synced.clone(),
        }
    }

    /// Writes one line and waits (blocking) until it is on disk.
    #[cfg(test)]
    pub(crate) fn append(&mut self, line: &Line) -> std::io::Result<()> {
        self.write(line)?;
        let b = self.barrier();
        tokio::runtime::Builder::new_current_thread()
            .build()?
            .block_on(b.wait())
    }

    /// How many `fsync`s the syncer has done.
    #[cfg(test)]
    fn syncs(&self) -> u64 {
        self.sync.state.lock().unwrap().syncs
    }

    /// Holds (or lets go) the syncer, so a test gathers writes.
    #[cfg(test)]
    fn hold_syncer(&self, held: bool) {
        self.sync.state.lock().unwrap().held = held;
        self.sync.wake.notify_all();
    }
}

/// The syncer thread: whenever lines are written past what is durable,
/// one `fdatasync` for all of them; ends when the journal is dropped and
/// nothing is left, or after a failed `fsync` (the journal is then stopped).
fn sync_loop(file: &File, sync: &Syncer, tx: &watch::Sender<Synced>) {
    let mut upto = tx.borrow().upto;
    loop {
        let target = {
            let mut st = sync.state.lock().unwrap_or_else(|e| e.into_inner());
            while (st.written <= upto || st.held) && !st.closed {
                st = sync.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.written <= upto {
                return;
            }
            st.syncs += 1;
            st.written
        };
        if let Err(e) = file.sync_data() {
            tracing::error!(error = %e, "stub issuer cannot sync its state; answers stop until a restart");
            tx.send_replace(Synced { upto, failed: true });
            return;
        }
        upto = target;
        tx.send_replace(Synced {
            upto,
            failed: false,
        });
    }
}

/// The complete lines of the journal at `path`, without taking it over: a
/// line being written right now is left out. A missing file has none.
pub(crate) fn read(path: &Path) -> anyhow::Result<Vec<Line>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(parse(&text)
        .with_context(|| format!("{}", path.display()))?
        .0)
}

/// The lines of `text`, and how many bytes of it are complete lines.
fn parse(text: &[u8]) -> anyhow::Result<(Vec<Line>, usize)> {
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines = Vec::new();
    for (n, raw) in text[..complete].split(|&b| b == b'\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Line>(raw) {
            Ok(line) => lines.push(line),
            // The error says where, never what: no content is echoed.
            Err(e) => bail!(
                "line {} is not a stub issuer record ({})",
                n + 1,
                e.classify_str()
            ),
        }
    }
    Ok((lines, complete))
}

trait Classify {
    fn classify_str(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "bad JSON",
            serde_json::error::Category::Data => "unexpected fields",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(key: &str) -> Line {
        Line::Answer {
            key: key.into(),
            card: Some("ref".into()),
            amount_fen: 5,
            outcome: Recorded::Approved {
                auth_code: "000001".into(),
            },
            wrong_pins: None,
        }
    }

    #[test]
    fn lines_come_back_in_order_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("stub.jsonl");
        let (mut j, lines) = Journal::open(&path).unwrap();
        assert!(lines.is_empty());
        j.append(&answer("a")).unwrap();
        j.append(&Line::Reverse { key: "a".into() }).unwrap();
        drop(j);
        let (_, lines) = Journal::open(&path).unwrap();
        assert_eq!(lines, vec![answer("a"), Line::Reverse { key: "a".into() }]);
        assert_eq!(read(&path).unwrap(), lines);
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stub.jsonl");
        let (mut first, _) = Journal::open(&path).unwrap();
        first.append(&answer("a")).unwrap();
        let Err(err) = Journal::open(&path) else {
            panic!("a second writer was let in")
        };
        let err = err.to_string();
        assert!(err.contains("in use by another process"), "{err}");
        // Readers still see it; the file is unchanged.
        assert_eq!(read(&path).unwrap(), vec![answer("a")]);
        drop(first);
        let (_, lines) = Journal::open(&path).unwrap();
        assert_eq!(lines, vec![answer("a")]);
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_the_next_append_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stub.jsonl");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&answer("a")).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"kind":"answer","key":"b","ca"#).unwrap();
        drop(f);
        // a reader skips the line being written
        assert_eq!(read(&path).unwrap(), vec![answer("a")]);
        let (mut j, lines) = Journal::open(&path).unwrap();
        assert_eq!(lines, vec![answer("a")]);
        j.append(&answer("c")).unwrap();
        drop(j);
        assert_eq!(read(&path).unwrap(), vec![answer("a"), answer("c")]);
    }

    #[test]
    fn a_bad_line_in_the_middle_stops_the_start_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stub.jsonl");
        std::fs::write(&path, "{\"kind\":\"reverse\",\"key\":\"a\"}\nnot json 805137\n{\"kind\":\"reverse\",\"key\":\"b\"}\n").unwrap();
        let err = format!("{:#}", Journal::open(&path).unwrap_err());
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("805137"), "{err}");
    }

    #[test]
    fn lines_written_while_a_sync_is_pending_share_one_fsync_and_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stub.jsonl");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.hold_syncer(true);
        let mut barriers = Vec::new();
        for i in 0..10 {
            j.write(&answer(&format!("k{i}"))).unwrap();
            barriers.push(j.barrier());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // Not one answer may leave before its line is synced.
        let waits: Vec<_> = barriers.into_iter().map(|b| rt.spawn(b.wait())).collect();
        rt.block_on(tokio::task::yield_now());
        assert!(waits.iter().all(|w| !w.is_finished()));
        assert_eq!(j.syncs(), 0);
        j.hold_syncer(false);
        for w in waits {
            rt.block_on(w).unwrap().unwrap();
        }
        assert_eq!(j.syncs(), 1, "the ten lines shared one fsync");
        assert_eq!(read(&path).unwrap().len(), 10);
        // A barrier with nothing new to sync passes at once.
        rt.block_on(j.barrier().wait()).unwrap();
        assert_eq!(j.syncs(), 1);
    }

    #[test]
    fn a_missing_file_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join("none")).unwrap().is_empty());
    }
}
