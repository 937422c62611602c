//! The reader and mapper threads, and the bounded channels between them and the orchestrator.
//!
//! - The reader streams chunks of 2048 rows from the inputs, one file after another.
//! - The mapper maps and validates each chunk in parallel (rayon), then runs dedup over it in
//!   input order (first seen wins), one chunk ahead of the orchestrator's sequential stage.
//! - Used chunks and result vectors go back upstream for reuse, so their buffers are not freed on
//!   one thread and allocated again on another (which costs the allocator memory). Recycling is
//!   best effort: a full return channel just drops the spare.
//!
//! **Invariant:** a thread ends with a value, never with silence: a reader error or a thread
//! that dies is reported as an unreadable input ([`Stages::finish`]), never as the end of input.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::dedup::Dedup;
use crate::event::{self, Mapped, Rules};
use crate::mapping::Plan;
use crate::source::{Chunk, Source, SourceError};

/// Rows per chunk handed from the reader to the workers.
pub const CHUNK_ROWS: usize = 2048;
/// Chunks read ahead of mapping. With the one being read, the one being mapped, one mapped
/// and waiting, and the one in the sequential stage, at most 5 chunks are in memory.
const QUEUE_CHUNKS: usize = 2;

/// A chunk of one input file, mapped row by row, with each row's dedup verdict.
pub struct MappedChunk {
    pub file: u32,
    pub chunk: Chunk,
    pub mapped: Vec<Mapped>,
    /// Per row: the ordinal of the earlier row with the same dedup key, if any.
    pub first_seen: Vec<Option<u64>>,
}

enum ReaderMsg {
    Chunk(u32, Chunk),
    Failed(String),
}

/// Result vectors going back to the mapper for reuse.
type Spare = (Vec<Mapped>, Vec<Option<u64>>);

/// What comes out of the stages: a mapped chunk, or why reading stopped.
pub type Next = Result<MappedChunk, String>;

pub struct Stages {
    rx: mpsc::Receiver<Next>,
    spare_chunks: mpsc::SyncSender<Chunk>,
    spare_mapped: mpsc::SyncSender<Spare>,
    reader: JoinHandle<()>,
    mapper: JoinHandle<()>,
    /// Input bytes consumed so far, for the progress bar.
    bytes_read: Arc<AtomicU64>,
}

impl Stages {
    /// Starts the threads. `skip`: once set, the mapper stops checking rows and hands out
    /// unchecked ones (an interrupted dry run still reports every row).
    pub fn start(
        sources: Vec<(String, Box<dyn Source>)>,
        plan: Arc<Plan>,
        rules: Rules,
        skip: Option<Arc<AtomicBool>>,
    ) -> std::io::Result<Stages> {
        let bytes_read = Arc::new(AtomicU64::new(0));
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<ReaderMsg>(QUEUE_CHUNKS);
        let (spare_chunks, spare_chunk_rx) = mpsc::sync_channel::<Chunk>(QUEUE_CHUNKS + 2);
        let reader = {
            let bytes = bytes_read.clone();
            std::thread::Builder::new()
                .name("reader".into())
                .spawn(move || read_all(sources, chunk_tx, spare_chunk_rx, bytes))?
        };
        let (tx, rx) = mpsc::sync_channel::<Next>(1);
        let (spare_mapped, spare_mapped_rx) = mpsc::sync_channel::<Spare>(3);
        let mapper = std::thread::Builder::new()
            .name("mapper".into())
            .spawn(move || {
                let mut dedup = Dedup::new();
                let mut ordinal = 0u64;
                for msg in chunk_rx {
                    let out = match msg {
                        ReaderMsg::Chunk(file, chunk) => {
                            let (mut mapped, mut first_seen) =
                                spare_mapped_rx.try_recv().unwrap_or_default();
                            if skip.as_ref().is_some_and(|f| f.load(Ordering::Relaxed)) {
                                mapped.clear();
                                mapped.resize_with(chunk.len(), || Mapped::unreadable(""));
                            } else {
                                map_chunk(&plan, &rules, &chunk, &mut mapped);
                            }
                            deduplicate(&mut dedup, &mapped, ordinal, &mut first_seen);
                            ordinal += chunk.len() as u64;
                            Ok(MappedChunk {
                                file,
                                chunk,
                                mapped,
                                first_seen,
                            })
                        }
                        ReaderMsg::Failed(e) => Err(e),
                    };
                    if tx.send(out).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Stages {
            rx,
            spare_chunks,
            spare_mapped,
            reader,
            mapper,
            bytes_read,
        })
    }

    /// The next mapped chunk; `None` at the end of input (or when a thread died: see
    /// [`Stages::finish`]).
    pub fn next(&self) -> Option<Next> {
        self.rx.recv().ok()
    }

    /// Input bytes consumed so far, for the progress bar.
    pub fn bytes_read(&self) -> Arc<AtomicU64> {
        self.bytes_read.clone()
    }

    /// Hands a used chunk back for reuse.
    pub fn recycle(&self, m: MappedChunk) {
        let _ = self.spare_chunks.try_send(m.chunk);
        let _ = self.spare_mapped.try_send((m.mapped, m.first_seen));
    }

    /// Stops the threads and waits for them. `Err` when one of them died.
    pub fn finish(self) -> Result<(), String> {
        drop(self.rx);
        let mapper = self.mapper.join();
        let reader = self.reader.join();
        match (reader, mapper) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(_), _) => Err("the input reader stopped unexpectedly".into()),
            (_, Err(_)) => Err("the row mapper stopped unexpectedly".into()),
        }
    }
}

fn read_all(
    sources: Vec<(String, Box<dyn Source>)>,
    tx: mpsc::SyncSender<ReaderMsg>,
    spares: mpsc::Receiver<Chunk>,
    bytes_read: Arc<AtomicU64>,
) {
    let mut finished_bytes = 0u64;
    for (i, (name, mut s)) in sources.into_iter().enumerate() {
        let mut rows = 0u64;
        loop {
            let spare = spares.try_recv().unwrap_or_default();
            // A reader that panics (a decoder fed a damaged file) is an unreadable input.
            let next =
                crate::panic::guarded(|| s.next_chunk(spare, CHUNK_ROWS)).unwrap_or_else(|p| {
                    Err(SourceError::Read {
                        path: name.clone().into(),
                        after_row: rows,
                        message: format!("the reader failed ({p})"),
                    })
                });
            match next {
                Ok(Some(chunk)) => {
                    rows += chunk.len() as u64;
                    bytes_read.store(finished_bytes + s.bytes_read(), Ordering::Relaxed);
                    if tx.send(ReaderMsg::Chunk(i as u32, chunk)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(ReaderMsg::Failed(e.to_string()));
                    return;
                }
            }
        }
        finished_bytes += s.bytes_read();
    }
}

/// First seen wins: for each row with a dedup key, the ordinal of an earlier row with the same
/// key (see [`Dedup::check_all`]).
fn deduplicate(dedup: &mut Dedup, mapped: &[Mapped], first: u64, out: &mut Vec<Option<u64>>) {
    let keys: Vec<Option<u128>> = mapped.iter().map(|m| m.key).collect();
    dedup.check_all(&keys, first, out);
}

/// Maps and validates a chunk in parallel into `out` (emptied first); results in row order.
fn map_chunk(plan: &Plan, rules: &Rules, chunk: &Chunk, out: &mut Vec<Mapped>) {
    out.clear();
    out.par_extend((0..chunk.len()).into_par_iter().with_min_len(256).map(|i| {
        match &chunk.rows[i].error {
            Some(e) => Mapped::unreadable(e),
            None => event::map_row(plan, rules, |c| chunk.cell(i, c)),
        }
    }));
}
