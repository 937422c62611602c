//! PURE: cut events into requests (per dataset, ≤ batch size, ≤ body bytes) and build the exact
//! JSON body. `validate --emit-payloads` and `send` use the same code, so the dry run's files are
//! byte for byte what send posts (minus the token).

use std::collections::HashMap;
use std::num::NonZeroUsize;

use super::{Batch, PendingEvent};
use crate::secret::Secret;

/// Meta's limit of events per request.
pub const MAX_EVENTS: usize = 1000;

/// Bytes a body has besides its events: braces, `partner_agent`, `test_event_code`, a token and an
/// `appsecret_proof` (tokens run to ~250 bytes). Generous on purpose.
const BODY_OVERHEAD: usize = 1024;

/// Credentials that go into the body (never the URL).
#[derive(Clone, Debug)]
pub struct Auth {
    pub token: Secret,
    pub appsecret_proof: Option<String>,
}

struct Open<T> {
    events: Vec<PendingEvent<T>>,
    bytes: usize,
}

/// Groups events by dataset and cuts a batch when it is full by count or by bytes.
pub struct Batcher<T> {
    batch_size: usize,
    max_body_bytes: usize,
    open: HashMap<String, Open<T>>,
    /// Datasets in the order their open batch started (deterministic flushing).
    order: Vec<String>,
    next_id: u64,
}

impl<T> Batcher<T> {
    pub fn new(batch_size: NonZeroUsize, max_body_bytes: usize) -> Batcher<T> {
        Batcher {
            batch_size: batch_size.get().min(MAX_EVENTS),
            max_body_bytes,
            open: HashMap::new(),
            order: Vec::new(),
            next_id: 1,
        }
    }

    fn cut(&mut self, dataset_id: &str) -> Option<Batch<T>> {
        let (dataset_id, open) = self.open.remove_entry(dataset_id)?;
        self.order.retain(|d| *d != dataset_id);
        let id = self.next_id;
        self.next_id += 1;
        Some(Batch {
            id,
            dataset_id,
            events: open.events,
        })
    }

    /// Adds an event; returns a batch when one is complete. At most one batch comes out per call:
    /// the dataset's open batch, cut either because this event would not fit (then the event
    /// starts the next batch) or because the event filled it.
    pub fn push(&mut self, dataset_id: &str, ev: PendingEvent<T>) -> Option<Batch<T>> {
        let size = ev.json.len() + 1;
        let mut out = None;
        if let Some(open) = self.open.get(dataset_id)
            && !open.events.is_empty()
            && open.bytes + size + BODY_OVERHEAD > self.max_body_bytes
        {
            out = self.cut(dataset_id);
        }
        // The dataset's name is copied once per batch, not once per event.
        let open = match self.open.get_mut(dataset_id) {
            Some(open) => open,
            None => {
                self.order.push(dataset_id.to_string());
                self.open
                    .entry(dataset_id.to_string())
                    .or_insert_with(|| Open {
                        events: Vec::with_capacity(self.batch_size.min(64)),
                        bytes: 0,
                    })
            }
        };
        open.events.push(ev);
        open.bytes += size;
        let full = open.events.len() >= self.batch_size
            || open.bytes + BODY_OVERHEAD >= self.max_body_bytes;
        match out {
            // The previous batch was cut; this event opened a new one which cannot be full too
            // unless it alone exceeds the limits: it is then cut on the next push or flush.
            Some(b) => Some(b),
            None if full => self.cut(dataset_id),
            None => None,
        }
    }

    /// Every open batch, oldest first.
    pub fn flush_all(&mut self) -> Vec<Batch<T>> {
        let order = std::mem::take(&mut self.order);
        order.iter().filter_map(|d| self.cut(d)).collect()
    }

    /// Events held in open batches.
    pub fn pending(&self) -> usize {
        self.open.values().map(|o| o.events.len()).sum()
    }
}

/// The exact request body. `auth: None` gives the token-less body of `--emit-payloads`.
pub fn request_body<T>(
    batch: &Batch<T>,
    partner_agent: Option<&str>,
    test_event_code: Option<&str>,
    auth: Option<&Auth>,
) -> String {
    request_body_for(&batch.events, partner_agent, test_event_code, auth)
}

/// The body for any slice of a batch (bisection sends halves).
pub fn request_body_for<T>(
    events: &[PendingEvent<T>],
    partner_agent: Option<&str>,
    test_event_code: Option<&str>,
    auth: Option<&Auth>,
) -> String {
    let tail = body_tail(partner_agent, test_event_code, auth);
    let n: usize = events.iter().map(|e| e.json.len() + 1).sum();
    let mut s = String::with_capacity(n + 16 + tail.len());
    s.push_str("{\"data\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&e.json);
    }
    s.push_str(&tail);
    s
}

/// Writes the token-less body of a batch (`--emit-payloads`) straight to `out`: the same bytes
/// as [`request_body`], without assembling them in memory first.
pub fn write_body<T>(
    out: &mut impl std::io::Write,
    batch: &Batch<T>,
    partner_agent: Option<&str>,
    test_event_code: Option<&str>,
) -> std::io::Result<()> {
    out.write_all(b"{\"data\":[")?;
    for (i, e) in batch.events.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(e.json.as_bytes())?;
    }
    out.write_all(body_tail(partner_agent, test_event_code, None).as_bytes())
}

/// What follows the events: `]`, the other fields, `}`.
fn body_tail(
    partner_agent: Option<&str>,
    test_event_code: Option<&str>,
    auth: Option<&Auth>,
) -> String {
    let mut s = String::with_capacity(BODY_OVERHEAD);
    s.push(']');
    if let Some(p) = partner_agent {
        s.push_str(",\"partner_agent\":");
        crate::json::push_str(&mut s, p);
    }
    if let Some(t) = test_event_code {
        s.push_str(",\"test_event_code\":");
        crate::json::push_str(&mut s, t);
    }
    if let Some(a) = auth {
        s.push_str(",\"access_token\":");
        crate::json::push_str(&mut s, a.token.expose());
        if let Some(p) = &a.appsecret_proof {
            s.push_str(",\"appsecret_proof\":");
            crate::json::push_str(&mut s, p);
        }
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(o: u64, json: &str) -> PendingEvent<u64> {
        PendingEvent {
            tag: o,
            json: json.into(),
        }
    }

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn cuts_by_count_per_dataset_with_increasing_ids() {
        let mut b = Batcher::<u64>::new(nz(2), 1 << 20);
        assert!(b.push("A", ev(0, "{}")).is_none());
        assert!(b.push("B", ev(1, "{}")).is_none());
        let a = b.push("A", ev(2, "{}")).unwrap();
        assert_eq!((a.id, a.dataset_id.as_str(), a.events.len()), (1, "A", 2));
        assert_eq!(b.pending(), 1);
        let rest = b.flush_all();
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].id, rest[0].dataset_id.as_str()), (2, "B"));
        assert!(b.flush_all().is_empty());
    }

    #[test]
    fn never_more_than_1000_events() {
        let mut b = Batcher::<u64>::new(nz(5000), usize::MAX);
        let mut sizes = Vec::new();
        for i in 0..2500 {
            if let Some(batch) = b.push("A", ev(i, "{}")) {
                sizes.push(batch.events.len());
            }
        }
        sizes.extend(b.flush_all().iter().map(|x| x.events.len()));
        assert_eq!(sizes, [1000, 1000, 500]);
    }

    #[test]
    fn cuts_by_bytes() {
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(1000));
        let mut b = Batcher::<u64>::new(nz(1000), 1024 + 2 * 1011);
        let mut cut = Vec::new();
        for i in 0..5 {
            cut.extend(b.push("A", ev(i, &big)));
        }
        cut.extend(b.flush_all());
        assert!(
            cut.iter()
                .all(|x| request_body(x, None, None, None).len() <= 1024 + 2 * 1011),
            "bodies fit"
        );
        assert_eq!(cut.iter().map(|x| x.events.len()).sum::<usize>(), 5);
        assert!(cut.len() >= 3);
    }

    #[test]
    fn body_is_exact_with_and_without_auth() {
        let batch = Batch {
            id: 1,
            dataset_id: "9".into(),
            events: vec![ev(0, "{\"a\":1}"), ev(1, "{\"b\":2}")],
        };
        assert_eq!(
            request_body(&batch, Some("acme"), None, None),
            r#"{"data":[{"a":1},{"b":2}],"partner_agent":"acme"}"#
        );
        let mut written = Vec::new();
        write_body(&mut written, &batch, Some("acme"), Some("T\"1")).unwrap();
        assert_eq!(
            String::from_utf8(written).unwrap(),
            request_body(&batch, Some("acme"), Some("T\"1"), None)
        );
        let auth = Auth {
            token: Secret::new("tok\"en"),
            appsecret_proof: Some("abc".into()),
        };
        assert_eq!(
            request_body(&batch, None, Some("TEST1"), Some(&auth)),
            r#"{"data":[{"a":1},{"b":2}],"test_event_code":"TEST1","access_token":"tok\"en","appsecret_proof":"abc"}"#
        );
    }
}
