//! The local write-ahead log behind `acks=local`, striped over the cache
//! directories (one stripe each, one writer task each).
//!
//! Every partition maps to one stripe, so a partition's entries sit in one
//! file sequence in offset order, and a torn tail can only cut a suffix.
//! A stripe's writer takes everything queued, writes it, fsyncs once
//! (group commit), then hands the batches to the flush queue in the same
//! order: `acks=local` is answered there, before the object exists.
//!
//! Entries are laid out as `format::wal` says. After the fsync, each
//! batch's partition hears of it ([`Report::Logged`], which carries the
//! acks=local answer; or [`Report::Unlogged`] when it bypassed the log).
//!
//! acks=durable batches bypass the file (their answer waits for the object
//! anyway) but not the writer, so a partition's batches reach the flush
//! queue in offset order. An acks=local batch behind one on the same
//! partition is answered once that one is committed (the replay could not
//! bridge the gap).
//!
//! Files roll at [`FILE_BYTES`]; a file is deleted once every entry in it
//! is committed to the index. An entry that never commits (a failed flush,
//! a lost lease) keeps its file for the next start's replay.
//!
//! A stripe that cannot write (unwritable or full disk) logs an error and
//! passes batches straight to the flush queue; `acks=local` for its
//! partitions then waits for the index commit, so nothing acknowledged
//! depends on the broken disk. It tries to reopen every [`RETRY`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use silt_wire::Batch;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::flush::{Pending, Queue};
use super::partition::Report;
use crate::format::wal as layout;
use crate::metrics::Metrics;

pub const FILE_BYTES: u64 = 64 << 20;
const RETRY: Duration = Duration::from_secs(10);
const GROUP_BYTES: usize = 8 << 20;

/// One WAL file's bookkeeping: entries not yet committed, and whether the
/// writer has moved on from it.
struct FileState {
    path: PathBuf,
    outstanding: AtomicUsize,
    sealed: AtomicBool,
    keep: AtomicBool,
}

impl FileState {
    fn new(path: PathBuf, sealed: bool) -> Arc<FileState> {
        Arc::new(FileState {
            path,
            outstanding: AtomicUsize::new(0),
            sealed: AtomicBool::new(sealed),
            keep: AtomicBool::new(false),
        })
    }

    fn hold(self: &Arc<Self>) -> Hold {
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        Hold { file: Some(self.clone()) }
    }

    fn seal(&self) {
        self.sealed.store(true, Ordering::SeqCst);
        self.maybe_delete();
    }

    fn maybe_delete(&self) {
        if self.sealed.load(Ordering::SeqCst)
            && self.outstanding.load(Ordering::SeqCst) == 0
            && !self.keep.load(Ordering::SeqCst)
        {
            // Deleting a large file may wait on the disk's journal: never
            // on the runtime's threads.
            let path = self.path.clone();
            let delete = move || match std::fs::remove_file(&path) {
                Ok(()) => tracing::debug!(file = %path.display(), "WAL file fully committed; deleted"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot delete a committed WAL file"),
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(delete)),
                Err(_) => delete(),
            }
        }
    }
}

/// Keeps a WAL entry's file until the entry is committed. Dropping it
/// without [`Hold::release`] keeps the file for the next replay.
pub struct Hold {
    file: Option<Arc<FileState>>,
}

impl Hold {
    /// The entry is committed to the index (or its topic is gone).
    pub fn release(mut self) {
        if let Some(f) = self.file.take() {
            f.outstanding.fetch_sub(1, Ordering::SeqCst);
            f.maybe_delete();
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            f.keep.store(true, Ordering::SeqCst);
            f.outstanding.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A batch handed to the WAL, with what the flush queue needs after it.
pub struct Write {
    pub pending: Pending,
    /// Answered after the fsync (acks=local).
    pub local_ack: bool,
    /// Written to the file. An acks=durable batch is not: its answer waits
    /// for the object, so a log entry would only cost disk writes. It still
    /// passes through the writer, which keeps the partition's batches in
    /// offset order on their way to the flush queue.
    pub log: bool,
}

/// Batches found in the WAL at start, per partition, in offset order.
pub type Replay = BTreeMap<(u64, u32), Vec<(Batch, Hold)>>;

pub struct Wal {
    stripes: Vec<mpsc::Sender<Write>>,
}

impl Wal {
    /// Reads what earlier runs left (cutting torn tails), then starts one
    /// writer per directory. A directory that cannot be used is reported
    /// and runs as a pass-through.
    pub fn open(
        dirs: &[PathBuf],
        queue: Arc<Queue>,
        metrics: Arc<Metrics>,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> (Wal, Replay) {
        let mut replay = Replay::new();
        let mut next_seq = 0u64;
        for dir in dirs {
            let wal_dir = dir.join("wal");
            for (seq, path) in list_files(&wal_dir) {
                next_seq = next_seq.max(seq + 1);
                read_file(&path, &mut replay);
            }
        }
        for entries in replay.values_mut() {
            entries.sort_by_key(|(b, _)| b.header().base_offset);
        }
        let mut stripes = Vec::with_capacity(dirs.len());
        for (i, dir) in dirs.iter().enumerate() {
            let (tx, rx) = mpsc::channel(4096);
            let writer = Writer {
                dir: dir.join("wal"),
                seq: next_seq + i as u64,
                step: dirs.len() as u64,
                file: None,
                queue: queue.clone(),
                failed_at: None,
                metrics: metrics.clone(),
            };
            let span = tracing::info_span!("wal", dir = %dir.display());
            tasks.spawn(writer.run(rx, stop.clone()).instrument(span));
            stripes.push(tx);
        }
        (Wal { stripes }, replay)
    }

    /// Hands a batch to its partition's stripe.
    pub async fn write(&self, w: Write) -> Result<(), Write> {
        let (topic_id, partition) = w.pending.part.id;
        let stripe = ((topic_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(partition)) % self.stripes.len() as u64)
            as usize;
        self.stripes[stripe].send(w).await.map_err(|e| e.0)
    }
}

fn list_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let seq = name.strip_suffix(".wal")?.parse().ok()?;
            Some((seq, e.path()))
        })
        .collect();
    files.sort();
    files
}

/// Reads one file's entries into `replay`, stopping at the first entry
/// that is incomplete or fails its CRC (a torn tail), which is cut off.
fn read_file(path: &Path, replay: &mut Replay) {
    let mut data = Vec::new();
    if let Err(e) = File::open(path).and_then(|mut f| f.read_to_end(&mut data)) {
        tracing::error!(file = %path.display(), error = %e, "cannot read a WAL file; its entries are not replayed");
        return;
    }
    let state = FileState::new(path.to_path_buf(), true);
    let (entries, valid) = layout::decode(&data);
    let count = entries.len();
    for e in entries {
        replay.entry((e.topic_id, e.partition)).or_default().push((e.batch, state.hold()));
    }
    if valid < data.len() {
        tracing::warn!(file = %path.display(), kept = valid, cut = data.len() - valid, "cut a torn or corrupt WAL tail");
        if let Err(e) = std::fs::OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(valid as u64)) {
            tracing::warn!(file = %path.display(), error = %e, "cannot truncate the WAL tail");
        }
    }
    tracing::info!(file = %path.display(), entries = count, "read WAL file");
    state.maybe_delete();
}

struct OpenFile {
    file: File,
    state: Arc<FileState>,
    len: u64,
}

struct Writer {
    dir: PathBuf,
    /// The next file's sequence number; stripes interleave (seq += step).
    seq: u64,
    step: u64,
    file: Option<OpenFile>,
    queue: Arc<Queue>,
    failed_at: Option<tokio::time::Instant>,
    metrics: Arc<Metrics>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Write>, stop: CancellationToken) {
        let mut group = Vec::new();
        loop {
            let first = tokio::select! {
                w = rx.recv() => match w { Some(w) => w, None => break },
                _ = stop.cancelled() => break,
            };
            group.push(first);
            let mut bytes = group[0].pending.batch.bytes().len();
            while bytes < GROUP_BYTES {
                match rx.try_recv() {
                    Ok(w) => {
                        bytes += w.pending.batch.bytes().len();
                        group.push(w);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group).await;
        }
        // Whatever is still queued goes to the flush queue unlogged.
        rx.close();
        while let Ok(w) = rx.try_recv() {
            self.pass_through(w);
        }
        if let Some(f) = self.file.take() {
            f.state.seal();
        }
    }

    fn pass_through(&self, w: Write) {
        // A stopped actor has nothing left to acknowledge locally.
        let _ = w.pending.part.report(Report::Unlogged(w.pending.batch.last_offset()));
        self.queue.push(w.pending);
    }

    async fn commit_group(&mut self, group: &mut Vec<Write>) {
        if !group.iter().any(|w| w.log) {
            for w in group.drain(..) {
                self.pass_through(w);
            }
            return;
        }
        let usable = self.ensure_file();
        let result = match (usable, self.file.as_mut()) {
            (true, Some(f)) => {
                let logged = group.iter().filter(|w| w.log);
                let mut buf =
                    Vec::with_capacity(logged.clone().map(|w| layout::entry_len(w.pending.batch.bytes().len())).sum());
                for w in logged {
                    let (topic_id, partition) = w.pending.part.id;
                    layout::encode(topic_id, partition, w.pending.batch.bytes(), &mut buf);
                }
                let file = f.file.try_clone();
                let len = buf.len() as u64;
                let started = std::time::Instant::now();
                let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    let mut file = file?;
                    file.write_all(&buf)?;
                    file.sync_data()
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                if written.is_ok() {
                    self.metrics.wal_fsync_seconds.observe(started.elapsed().as_secs_f64());
                    f.len += len;
                    crate::metrics::add(&self.metrics.wal_fsyncs, 1);
                    crate::metrics::add(&self.metrics.wal_bytes, len);
                }
                written
            }
            _ => Err(std::io::Error::other("no usable WAL file")),
        };
        match result {
            Ok(()) => {
                let state = self.file.as_ref().expect("a file was written").state.clone();
                for w in group.drain(..) {
                    if !w.log {
                        self.pass_through(w);
                        continue;
                    }
                    let mut pending = w.pending;
                    pending.replies.wal = Some(state.hold());
                    // The partition acknowledges locally, unless a batch before
                    // this one bypassed the log (then once that is committed).
                    if let Some(local_ack) = pending.replies.done.take().filter(|_| w.local_ack) {
                        let offsets = (pending.batch.header().base_offset, pending.batch.last_offset());
                        if let Err(Report::Logged { local_ack, .. }) =
                            pending.part.report(Report::Logged { offsets, local_ack })
                        {
                            // Its actor stopped: the answer waits for the commit.
                            pending.replies.done = Some(local_ack);
                        }
                    }
                    self.queue.push(pending);
                }
                if self.file.as_ref().is_some_and(|f| f.len >= FILE_BYTES) {
                    if let Some(f) = self.file.take() {
                        f.state.seal();
                    }
                }
            }
            Err(e) => {
                if self.failed_at.is_none() {
                    tracing::error!(dir = %self.dir.display(), error = %e,
                        "cannot write the WAL here; batches go straight to the object store, and acks=local for these partitions waits for it");
                }
                self.failed_at = Some(tokio::time::Instant::now());
                if let Some(f) = self.file.take() {
                    // Entries already in it stay valid; a torn tail is cut on replay.
                    f.state.seal();
                }
                for w in group.drain(..) {
                    self.pass_through(w);
                }
            }
        }
    }

    /// Opens a new file when there is none; after a failure, only every RETRY.
    fn ensure_file(&mut self) -> bool {
        if self.file.is_some() {
            return true;
        }
        if self.failed_at.is_some_and(|at| at.elapsed() < RETRY) {
            return false;
        }
        let path = self.dir.join(format!("{:020}.wal", self.seq));
        let opened = std::fs::create_dir_all(&self.dir)
            .and_then(|_| std::fs::OpenOptions::new().create_new(true).append(true).open(&path))
            .and_then(|file| {
                // Make the new file's name durable before entries rely on it.
                File::open(&self.dir)?.sync_all()?;
                Ok(file)
            });
        match opened {
            Ok(file) => {
                self.seq += self.step;
                if self.failed_at.take().is_some() {
                    tracing::info!(dir = %self.dir.display(), "the WAL directory is writable again");
                }
                self.file = Some(OpenFile { file, state: FileState::new(path, false), len: 0 });
                true
            }
            Err(e) => {
                self.seq += self.step;
                if self.failed_at.is_none() {
                    tracing::error!(dir = %self.dir.display(), error = %e, "cannot open a WAL file");
                }
                self.failed_at = Some(tokio::time::Instant::now());
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silt_wire::{BatchBuilder, Compression};

    fn entry(topic_id: u64, partition: u32, base: i64) -> Vec<u8> {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(0, None, format!("v{base}").as_bytes(), &[]);
        let batch = b.build().unwrap().with_base_offset(base);
        let mut out = Vec::new();
        layout::encode(topic_id, partition, batch.bytes(), &mut out);
        out
    }

    #[test]
    fn a_torn_tail_is_cut_and_never_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.wal");
        let mut data = [entry(1, 0, 0), entry(1, 0, 1), entry(1, 1, 0)].concat();
        let whole = data.len();
        let torn = entry(1, 0, 2);
        data.extend_from_slice(&torn[..torn.len() - 3]);
        std::fs::write(&path, &data).unwrap();
        for cut in [data.len(), whole + 5, whole + 1] {
            std::fs::write(&path, &data[..cut]).unwrap();
            let mut replay = Replay::new();
            read_file(&path, &mut replay);
            let offsets: Vec<i64> = replay[&(1, 0)].iter().map(|(b, _)| b.header().base_offset).collect();
            assert_eq!(offsets, vec![0, 1], "cut at {cut}");
            assert_eq!(replay[&(1, 1)].len(), 1);
            assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, whole, "the torn tail is truncated");
            drop(replay); // unreleased holds keep the file
            assert!(path.exists());
        }
    }

    #[test]
    fn a_corrupt_entry_stops_the_replay_of_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.wal");
        let first = entry(1, 0, 0);
        let mut data = [first.clone(), entry(1, 0, 1)].concat();
        data[first.len() + 20] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        let mut replay = Replay::new();
        read_file(&path, &mut replay);
        assert_eq!(replay[&(1, 0)].len(), 1);
    }

    #[test]
    fn a_file_is_deleted_once_every_entry_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.wal");
        std::fs::write(&path, [entry(1, 0, 0), entry(1, 0, 1)].concat()).unwrap();
        let mut replay = Replay::new();
        read_file(&path, &mut replay);
        let mut entries = replay.remove(&(1, 0)).unwrap();
        entries.pop().unwrap().1.release();
        assert!(path.exists(), "one entry is still uncommitted");
        entries.pop().unwrap().1.release();
        assert!(!path.exists());
    }
}
