//! The newest committed events, kept in memory on a SQLite file, so that
//! the readers of the live tail (the firehose, subscribers catching up,
//! event sinks) get them without a query.
//!
//! Each event is read once per reader, moments after its commit. Read from
//! the database, that read starts a read transaction, which in WAL mode
//! throws away the reading connection's page cache whenever anything was
//! committed since its last one: always, under write load. So every read
//! fetched its pages from the file again, several system calls per event
//! batch on the runtime's threads.
//!
//! The writer thread adds each batch's events after its commit and before
//! announcing the new head, so a reader woken for an event finds it here.
//! Only events of that one path come here; others (identity and account
//! events, written through sqlx) leave a gap in the numbering, and a gap
//! starts the tail over. The tail is therefore always a run of consecutive
//! `seq`s with nothing missing, and a read is answered from it only when
//! the run covers the whole answer: from the first event after the cursor
//! through the announced head. Anything else goes to the database.
//!
//! Events are invalidated (a deleted repo) or deleted (pruning) only
//! through the database: both forget the tail and refuse events numbered
//! below the point they reached, so a late addition cannot bring back
//! what they removed.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use aurora_core::event::SeqEvent;

/// Most events kept: a few batches' worth, more than a live reader lags
/// behind before it reads.
const MAX_EVENTS: usize = 512;
/// Most payload bytes kept.
const MAX_BYTES: usize = 2 * 1024 * 1024;

/// The tail of the event log (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct RecentEvents {
    tail: Mutex<Tail>,
}

#[derive(Debug, Default)]
struct Tail {
    /// Consecutive `seq`s, oldest first.
    events: VecDeque<SeqEvent>,
    bytes: usize,
    /// Events numbered below this are not taken.
    floor: i64,
}

impl Tail {
    fn clear(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }
}

impl RecentEvents {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds committed events, in `seq` order, before their head is
    /// announced. An event not following the newest one starts the tail
    /// over.
    pub(crate) fn append(&self, events: impl IntoIterator<Item = SeqEvent>) {
        let mut tail = self.lock();
        for event in events {
            if event.seq < tail.floor {
                continue;
            }
            if tail
                .events
                .back()
                .is_some_and(|newest| newest.seq.checked_add(1) != Some(event.seq))
            {
                tail.clear();
            }
            tail.bytes += event.payload.len();
            tail.events.push_back(event);
            while tail.events.len() > MAX_EVENTS || tail.bytes > MAX_BYTES {
                let Some(oldest) = tail.events.pop_front() else {
                    break;
                };
                tail.bytes -= oldest.payload.len();
            }
        }
    }

    /// The events after `after` up to `up_to`, at most `limit`, as the log
    /// has them, when the tail holds all of them through `head` (the
    /// announced head); `None` when the database must answer.
    pub(crate) fn range(
        &self,
        after: i64,
        up_to: i64,
        head: i64,
        limit: usize,
    ) -> Option<Vec<SeqEvent>> {
        let tail = self.lock();
        let (oldest, newest) = (tail.events.front()?.seq, tail.events.back()?.seq);
        if after.checked_add(1)? < oldest || newest < up_to.min(head) {
            return None;
        }
        let skip = usize::try_from(after + 1 - oldest).ok()?;
        Some(
            tail.events
                .iter()
                .skip(skip)
                .take_while(|event| event.seq <= up_to)
                .take(limit)
                .cloned()
                .collect(),
        )
    }

    /// Forgets the tail, and refuses events numbered below `seq` from now
    /// on: those below it may have been invalidated or deleted.
    pub(crate) fn forget_below(&self, seq: i64) {
        let mut tail = self.lock();
        tail.clear();
        tail.floor = tail.floor.max(seq);
    }
}

#[cfg(test)]
mod tests {
    use aurora_core::EventType;
    use aurora_core::syntax::Did;
    use bytes::Bytes;
    use chrono::Utc;

    use super::*;

    fn event(seq: i64) -> SeqEvent {
        SeqEvent {
            seq,
            did: Did::parse("did:plc:abc").unwrap(),
            event_type: EventType::Commit,
            time: Utc::now(),
            payload: Bytes::from(vec![0u8; 100]),
        }
    }

    fn seqs(events: Option<Vec<SeqEvent>>) -> Option<Vec<i64>> {
        events.map(|events| events.iter().map(|e| e.seq).collect())
    }

    #[test]
    fn answers_only_reads_it_holds_entirely() {
        let recent = RecentEvents::default();
        assert_eq!(seqs(recent.range(0, i64::MAX, 0, 10)), None);
        recent.append((5..=9).map(event));
        assert_eq!(
            seqs(recent.range(4, i64::MAX, 9, 10)),
            Some(vec![5, 6, 7, 8, 9])
        );
        assert_eq!(seqs(recent.range(6, 8, 9, 10)), Some(vec![7, 8]));
        assert_eq!(seqs(recent.range(6, i64::MAX, 9, 2)), Some(vec![7, 8]));
        assert_eq!(seqs(recent.range(9, i64::MAX, 9, 10)), Some(vec![]));
        // Event 5 is missing from a read after 3.
        assert_eq!(seqs(recent.range(3, i64::MAX, 9, 10)), None);
        // The head is past the tail: an event the tail lacks was announced.
        assert_eq!(seqs(recent.range(6, i64::MAX, 10, 10)), None);
        // But a read that stops before it is answered.
        assert_eq!(seqs(recent.range(6, 9, 10, 10)), Some(vec![7, 8, 9]));
    }

    #[test]
    fn a_gap_in_the_numbering_starts_the_tail_over() {
        let recent = RecentEvents::default();
        recent.append((1..=3).map(event));
        // Event 4 was written by another path.
        recent.append([event(5), event(6)]);
        assert_eq!(seqs(recent.range(3, i64::MAX, 6, 10)), None);
        assert_eq!(seqs(recent.range(4, i64::MAX, 6, 10)), Some(vec![5, 6]));
    }

    #[test]
    fn forgotten_events_do_not_come_back() {
        let recent = RecentEvents::default();
        recent.append((1..=3).map(event));
        recent.forget_below(10);
        assert_eq!(seqs(recent.range(0, i64::MAX, 3, 10)), None);
        // A batch committed before the invalidation, added late.
        recent.append((4..=5).map(event));
        assert_eq!(seqs(recent.range(3, i64::MAX, 5, 10)), None);
        recent.append((10..=11).map(event));
        assert_eq!(seqs(recent.range(9, i64::MAX, 11, 10)), Some(vec![10, 11]));
    }

    #[test]
    fn keeps_only_the_newest() {
        let recent = RecentEvents::default();
        let n = i64::try_from(MAX_EVENTS).unwrap() + 10;
        recent.append((1..=n).map(event));
        assert_eq!(seqs(recent.range(0, i64::MAX, n, 1)), None);
        let oldest_kept = n - i64::try_from(MAX_EVENTS).unwrap() + 1;
        assert_eq!(
            seqs(recent.range(oldest_kept - 1, i64::MAX, n, 1)),
            Some(vec![oldest_kept])
        );
    }
}
