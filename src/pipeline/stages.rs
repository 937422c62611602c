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

use super::accounts::{Accounts, LookedUp, Unplaced};
use crate::capi::Channel;
use crate::config::Shard;
use crate::dedup::Dedup;
use crate::event::{self, AccountDatasets, Mapped, NoAccounts, Rules, Verdict};
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
    /// `--shard`: per row, whether another shard takes it (empty: this run takes every row).
    pub others: Vec<bool>,
    /// `dataset_id: auto`: valid rows whose account has no dataset to send to, by row index
    /// (ascending).
    pub unplaced: Vec<(usize, Arc<Unplaced>)>,
    /// `dataset_id: auto`: the accounts this chunk looked up, and what became of each.
    pub looked_up: Vec<LookedUp>,
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
    /// unchecked ones (an interrupted dry run still reports every row). `accounts`: with
    /// `dataset_id: auto`, the accounts' datasets (looked up on the mapper thread). `shard`:
    /// the rows of other shards are marked, never looked up, deduplicated or checked further.
    pub fn start(
        sources: Vec<(String, Box<dyn Source>)>,
        plan: Arc<Plan>,
        rules: Rules,
        skip: Option<Arc<AtomicBool>>,
        mut accounts: Option<Accounts>,
        shard: Option<Shard>,
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
                            let mut placed = Placed::default();
                            if skip.as_ref().is_some_and(|f| f.load(Ordering::Relaxed)) {
                                mapped.clear();
                                mapped.resize_with(chunk.len(), || Mapped::unreadable(""));
                            } else {
                                let known: &dyn AccountDatasets = match &accounts {
                                    Some(a) => a,
                                    None => &NoAccounts,
                                };
                                map_chunk(&plan, &rules, known, &chunk, &mut mapped);
                            }
                            if let Some(s) = shard {
                                placed.others = others(s, plan.dataset_id.is_auto(), &mapped);
                            }
                            if let Some(a) = accounts.as_mut() {
                                place(a, &plan, &rules, &chunk, &mut mapped, &mut placed);
                            }
                            deduplicate(
                                &mut dedup,
                                &mapped,
                                &placed.others,
                                ordinal,
                                &mut first_seen,
                            );
                            ordinal += chunk.len() as u64;
                            Ok(MappedChunk {
                                file,
                                chunk,
                                mapped,
                                first_seen,
                                others: placed.others,
                                unplaced: placed.unplaced,
                                looked_up: placed.looked_up,
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

/// What the mapper adds to a chunk beyond its rows (see [`MappedChunk`]).
#[derive(Default)]
struct Placed {
    others: Vec<bool>,
    unplaced: Vec<(usize, Arc<Unplaced>)>,
    looked_up: Vec<LookedUp>,
}

/// `--shard`: which rows another shard takes, by their dataset id or (`auto`) account id.
fn others(shard: Shard, auto: bool, mapped: &[Mapped]) -> Vec<bool> {
    mapped
        .iter()
        .map(|m| {
            let id = if auto {
                m.account.as_deref().unwrap_or_default()
            } else {
                &m.identity.dataset_id
            };
            !shard.takes(id)
        })
        .collect()
}

/// `dataset_id: auto`: looks up the accounts of the chunk's unresolved rows (each once), maps
/// those rows again, and lists the valid rows whose account has no dataset to send to.
fn place(
    accounts: &mut Accounts,
    plan: &Plan,
    rules: &Rules,
    chunk: &Chunk,
    mapped: &mut [Mapped],
    placed: &mut Placed,
) {
    let ours = |i: usize| !placed.others.get(i).copied().unwrap_or(false);
    let account = |m: &Mapped| Some((Channel::parse(&m.identity.channel)?, m.account.clone()?));
    let redo: Vec<usize> = (0..mapped.len())
        .filter(|&i| mapped[i].verdict == Verdict::Unresolved && ours(i))
        .collect();
    if !redo.is_empty() {
        let mut wanted: Vec<(Channel, Box<str>)> =
            redo.iter().filter_map(|&i| account(&mapped[i])).collect();
        wanted.sort_unstable_by(|a, b| (a.0.name(), &a.1).cmp(&(b.0.name(), &b.1)));
        wanted.dedup();
        placed.looked_up = accounts.look_up(&wanted);
        let known: &Accounts = accounts;
        let again: Vec<(usize, Mapped)> = redo
            .par_iter()
            .map(|&i| {
                let m = event::map_row_in(plan, rules, known, |c| chunk.cell(i, c));
                (i, m)
            })
            .collect();
        for (i, m) in again {
            mapped[i] = m;
        }
    }
    for (i, m) in mapped.iter().enumerate() {
        if m.verdict == Verdict::Valid
            && m.identity.dataset_id.is_empty()
            && ours(i)
            && let Some((ch, a)) = account(m)
            && let Some(u) = accounts.unplaced(ch, &a)
        {
            placed.unplaced.push((i, u));
        }
    }
}

/// First seen wins: for each row with a dedup key, the ordinal of an earlier row with the same
/// key (see [`Dedup::check_all`]). Rows of other shards are not this run's.
fn deduplicate(
    dedup: &mut Dedup,
    mapped: &[Mapped],
    others: &[bool],
    first: u64,
    out: &mut Vec<Option<u64>>,
) {
    let keys: Vec<Option<u128>> = mapped
        .iter()
        .enumerate()
        .map(|(i, m)| m.key.filter(|_| !others.get(i).copied().unwrap_or(false)))
        .collect();
    dedup.check_all(&keys, first, out);
}

/// Maps and validates a chunk in parallel into `out` (emptied first); results in row order.
fn map_chunk(
    plan: &Plan,
    rules: &Rules,
    accounts: &dyn AccountDatasets,
    chunk: &Chunk,
    out: &mut Vec<Mapped>,
) {
    out.clear();
    out.par_extend((0..chunk.len()).into_par_iter().with_min_len(256).map(|i| {
        match &chunk.rows[i].error {
            Some(e) => Mapped::unreadable(e),
            None => event::map_row_in(plan, rules, accounts, |c| chunk.cell(i, c)),
        }
    }));
}
