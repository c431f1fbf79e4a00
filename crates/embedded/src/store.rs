//! What is published to an embedded datasource, kept on disk: its folder of
//! the data directory holds `published.log`, every batch added since the
//! first (with its position in the datasource's stream), and `LOCK`, held
//! while a process uses the folder.
//!
//! The log is append-only. An entry is its length and CRC-32, then the
//! batch as JSON; a batch is written and flushed to the disk (`fdatasync`)
//! before it is indexed, so a batch that was acknowledged is on disk
//! whatever happens to the process after. At start the log is read back
//! into the index: an entry cut short at the very end is a write the
//! process did not finish (so never acknowledged) and is dropped; a damaged
//! entry anywhere else stops the datasource, naming the file — never an
//! index silently missing records.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tributary_datasource::Position;

/// The first bytes of a log: a file that starts otherwise is not one.
const MAGIC: &[u8] = b"tributary published log 1\n";
/// Length and CRC-32 before each entry.
const HEADER: usize = 8;
/// The largest entry read back (a batch is bounded by the body limit).
const MAX_ENTRY: usize = 1 << 30;

/// One batch of the log.
#[derive(Deserialize)]
pub(crate) struct Entry {
    /// Where it is in the datasource's stream; none for a batch added
    /// without one.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    #[serde(rename = "r")]
    pub records: Vec<Map<String, Value>>,
}

/// One batch to write: [`Entry`], borrowed.
#[derive(Serialize)]
pub(crate) struct EntryRef<'a> {
    #[serde(rename = "p", skip_serializing_if = "Option::is_none")]
    pub position: Option<&'a Position>,
    #[serde(rename = "r")]
    pub records: &'a [Map<String, Value>],
}

/// The log of one datasource, open for appending.
pub(crate) struct Store {
    path: PathBuf,
    /// Why batches cannot be written (a read-only disk at start): searches
    /// go on, publishing is refused with this reason.
    unwritable: Option<String>,
    file: Mutex<Option<Writer>>,
    /// Held (locked) while this process uses the folder.
    _lock: Option<File>,
}

struct Writer {
    file: File,
    /// Bytes of whole entries: where a failed write is cut back to.
    len: u64,
}

/// Why the folder cannot be used at all: the server must not start.
#[derive(Debug)]
pub(crate) struct Unusable(pub String);

impl Store {
    /// Opens (or creates) the datasource's folder `dir`, and reads back what
    /// its log holds.
    pub(crate) fn open(dir: &Path) -> Result<(Store, Log), Unusable> {
        let path = dir.join("published.log");
        if let Err(error) = std::fs::create_dir_all(dir) {
            if path.exists() {
                return Err(Unusable(format!("cannot open {}: {error}", dir.display())));
            }
            // Nothing was ever kept here; searches need no disk.
            let nothing = Log::empty(&path);
            return Ok((Store::unwritable(path, dir, &error), nothing));
        }
        let lock = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
        {
            Ok(lock) => Some(lock),
            Err(error) if is_unwritable(&error) => None,
            Err(error) => {
                return Err(Unusable(format!(
                    "cannot open {}: {error}",
                    dir.join("LOCK").display()
                )))
            }
        };
        if let Some(lock) = &lock {
            if let Err(error) = lock.try_lock() {
                return Err(Unusable(match error {
                    std::fs::TryLockError::WouldBlock => format!(
                        "{} is in use by another tributary process; give each process its own `data_dir`",
                        dir.display()
                    ),
                    std::fs::TryLockError::Error(error) => {
                        format!("cannot lock {}: {error}", dir.join("LOCK").display())
                    }
                }));
            }
        }
        let (entries, whole) = read_log(&path)?;
        let opened = OpenOptions::new().create(true).append(true).open(&path);
        let mut file = match opened {
            Ok(file) => file,
            Err(error) if is_unwritable(&error) => {
                let mut store = Store::unwritable(path, dir, &error);
                store._lock = lock;
                return Ok((store, entries));
            }
            Err(error) => return Err(Unusable(format!("cannot open {}: {error}", path.display()))),
        };
        let on_disk = file
            .metadata()
            .map_err(|e| Unusable(format!("cannot read {}: {e}", path.display())))?
            .len();
        let start = |e: std::io::Error| Unusable(format!("cannot write {}: {e}", path.display()));
        if on_disk == 0 {
            file.write_all(MAGIC).map_err(start)?;
            file.sync_all().map_err(start)?;
            sync_folder(dir).map_err(start)?;
        } else if on_disk > whole {
            // A write the process did not finish: never acknowledged.
            tracing::warn!(
                file = %path.display(),
                bytes = on_disk - whole,
                "an unfinished write at the end of the log was dropped (it had not been acknowledged)"
            );
            file.set_len(whole).map_err(start)?;
            file.sync_all().map_err(start)?;
        }
        let len = on_disk.min(whole).max(MAGIC.len() as u64);
        Ok((
            Store {
                path,
                unwritable: None,
                file: Mutex::new(Some(Writer { file, len })),
                _lock: lock,
            },
            entries,
        ))
    }

    /// The log's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn unwritable(path: PathBuf, dir: &Path, error: &std::io::Error) -> Store {
        let reason = format!(
            "the data directory {} cannot be written: {error}",
            dir.display()
        );
        tracing::warn!(%reason, "published records cannot be kept; publishing to this datasource is refused");
        Store {
            path,
            unwritable: Some(reason),
            file: Mutex::new(None),
            _lock: None,
        }
    }

    /// Why nothing can be written now, if so.
    pub(crate) fn refusal(&self) -> Option<&str> {
        self.unwritable.as_deref()
    }

    /// Writes `entries` at the end of the log and flushes them to the disk:
    /// all of them, or (on error, e.g. a full disk) none.
    pub(crate) fn write(&self, entries: &[EntryRef<'_>]) -> Result<u64, String> {
        if let Some(reason) = &self.unwritable {
            return Err(reason.clone());
        }
        let mut bytes = Vec::new();
        for entry in entries {
            let payload = serde_json::to_vec(entry).map_err(|e| e.to_string())?;
            let length = u32::try_from(payload.len())
                .ok()
                .filter(|&n| (n as usize) <= MAX_ENTRY)
                .ok_or("a batch too large to keep")?;
            bytes.extend_from_slice(&length.to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            bytes.extend_from_slice(&payload);
        }
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let Some(writer) = guard.as_mut() else {
            return Err("the log is closed".into());
        };
        let written = writer
            .file
            .write_all(&bytes)
            .and_then(|()| writer.file.sync_data());
        if let Err(error) = written {
            // Nothing of it stays: the next start must not find half a batch.
            let _ = writer.file.set_len(writer.len);
            let _ = writer.file.sync_data();
            return Err(format!("cannot write {}: {error}", self.path.display()));
        }
        let before = writer.len;
        writer.len += bytes.len() as u64;
        Ok(before)
    }
}

fn is_unwritable(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied
    )
}

/// A new file's name is durable once its folder is flushed.
fn sync_folder(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What to do with a log that does not read back.
const WHAT_TO_DO: &str = "restore it from a backup (or a peer's copy), or move it away to start without the records published here";

/// A log read back: its bytes, and where each entry's batch lies in them
/// (checksums checked; each batch parsed only when reached, so a large log
/// is not held parsed all at once).
pub(crate) struct Log {
    path: PathBuf,
    bytes: Vec<u8>,
    batches: Vec<std::ops::Range<usize>>,
}

impl Log {
    fn empty(path: &Path) -> Log {
        Log {
            path: path.to_owned(),
            bytes: Vec::new(),
            batches: Vec::new(),
        }
    }

    /// Whether it holds no batch.
    pub(crate) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Its batches in order, each parsed when reached; one that does not
    /// parse names the file and the entry.
    pub(crate) fn entries(&self) -> impl Iterator<Item = Result<Entry, Unusable>> + '_ {
        self.batches.iter().enumerate().map(|(n, batch)| {
            serde_json::from_slice(&self.bytes[batch.clone()]).map_err(|e| {
                Unusable(format!(
                    "{} is damaged at byte {} (entry {}): unreadable ({e}); {WHAT_TO_DO}",
                    self.path.display(),
                    batch.start - HEADER,
                    n + 1
                ))
            })
        })
    }
}

/// The entries of the log at `path` and the length of its whole entries.
/// Reads a log file through, entry by entry (checksums, JSON): the records
/// it holds, or why it cannot be used. A write cut short at its end is not
/// counted (it is dropped when the log is opened).
pub(crate) fn check_log(path: &Path) -> Result<usize, String> {
    let (log, _) = read_log(path).map_err(|Unusable(why)| why)?;
    let mut records = 0;
    for entry in log.entries() {
        records += entry.map_err(|Unusable(why)| why)?.records.len();
    }
    Ok(records)
}

fn read_log(path: &Path) -> Result<(Log, u64), Unusable> {
    let what_to_do = WHAT_TO_DO;
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok((Log::empty(path), 0)),
        Err(error) => {
            return Err(Unusable(format!(
                "cannot read {}: {error}; {what_to_do}",
                path.display()
            )))
        }
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    // A device (not a file) reads as empty: only a file's bytes are read.
    (&mut file)
        .take(length)
        .read_to_end(&mut bytes)
        .map_err(|e| Unusable(format!("cannot read {}: {e}; {what_to_do}", path.display())))?;
    if bytes.is_empty() {
        return Ok((Log::empty(path), 0));
    }
    if !bytes.starts_with(MAGIC) {
        if MAGIC.starts_with(&bytes) {
            // Created, but its first write never finished.
            return Ok((Log::empty(path), 0));
        }
        return Err(Unusable(format!(
            "{} is not a tributary log (it does not start as one); {what_to_do}",
            path.display()
        )));
    }
    let mut entries: Vec<std::ops::Range<usize>> = Vec::new();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let rest = &bytes[at..];
        let damaged = |why: &str| {
            Unusable(format!(
                "{} is damaged at byte {at} (entry {}): {why}; {what_to_do}",
                path.display(),
                entries.len() + 1
            ))
        };
        if rest.len() < HEADER {
            break; // cut short at the end
        }
        let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if length > MAX_ENTRY {
            return Err(damaged("an impossible length"));
        }
        let Some(payload) = rest.get(HEADER..HEADER + length) else {
            break; // cut short at the end
        };
        let last = at + HEADER + length == bytes.len();
        if crc32fast::hash(payload) != crc {
            if last {
                break; // its write was cut short
            }
            return Err(damaged("its checksum does not match"));
        }
        entries.push(at + HEADER..at + HEADER + length);
        at += HEADER + length;
    }
    Ok((
        Log {
            path: path.to_owned(),
            bytes,
            batches: entries,
        },
        at as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(n: u64) -> Entry {
        Entry {
            position: Some(Position {
                offset: n,
                epoch: "e".into(),
            }),
            records: vec![json!({"id": n}).as_object().cloned().unwrap_or_default()],
        }
    }

    fn keep(store: &Store, entries: &[Entry]) -> Result<u64, String> {
        let borrowed: Vec<EntryRef<'_>> = entries
            .iter()
            .map(|e| EntryRef {
                position: e.position.as_ref(),
                records: &e.records,
            })
            .collect();
        store.write(&borrowed)
    }

    #[test]
    fn batches_come_back_after_a_restart_and_a_torn_end_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, entries) = Store::open(dir.path()).unwrap();
            assert!(entries.is_empty());
            keep(&store, &[batch(1), batch(2)]).unwrap();
            keep(&store, &[batch(3)]).unwrap();
        }
        let log = dir.path().join("published.log");
        let whole = std::fs::metadata(&log).unwrap().len();
        // A write cut short: half an entry at the end.
        let mut file = OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{']).unwrap();
        drop(file);
        let (store, read) = Store::open(dir.path()).unwrap();
        let offsets: Vec<u64> = read
            .entries()
            .map(|e| e.ok().unwrap().position.unwrap().offset)
            .collect();
        assert_eq!(offsets, [1, 2, 3]);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), whole);
        keep(&store, &[batch(4)]).unwrap();
        drop(store);
        assert_eq!(Store::open(dir.path()).unwrap().1.entries().count(), 4);
    }

    #[test]
    fn damage_inside_the_log_stops_it_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(dir.path()).unwrap();
            keep(&store, &[batch(1), batch(2)]).unwrap();
        }
        let log = dir.path().join("published.log");
        let mut bytes = std::fs::read(&log).unwrap();
        let inside = MAGIC.len() + HEADER + 3;
        bytes[inside] ^= 0x55;
        std::fs::write(&log, &bytes).unwrap();
        let Err(Unusable(message)) = Store::open(dir.path()) else {
            panic!("a damaged log was read");
        };
        assert!(message.contains("published.log is damaged"), "{message}");
        assert!(message.contains("entry 1"), "{message}");
        std::fs::write(&log, b"something else entirely\n").unwrap();
        let Err(Unusable(message)) = Store::open(dir.path()) else {
            panic!("a foreign file was read");
        };
        assert!(message.contains("not a tributary log"), "{message}");
    }

    #[test]
    fn a_second_user_of_the_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_first, _) = Store::open(dir.path()).unwrap();
        let Err(Unusable(message)) = Store::open(dir.path()) else {
            panic!("two users of one folder");
        };
        assert!(
            message.contains("in use by another tributary process"),
            "{message}"
        );
    }
}
