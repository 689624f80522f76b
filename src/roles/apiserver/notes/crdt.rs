//! The notes document as a CRDT (yrs, the Rust port of Yjs): one `Y.Text` named `notes` per
//! meeting. Sans-IO: these functions only touch documents in memory; `hub.rs` stores what
//! they produce.
//!
//! Offsets are bytes of UTF-8 on this side (`OffsetKind::Bytes`); browsers count UTF-16 code
//! units. Both address the same items, so the two sides never exchange offsets, only updates.
//!
//! Updates come from the network: decoding and applying them runs under `catch_unwind`, and
//! an update that would leave the document waiting for changes it does not have (pending
//! structs) is refused, since every honest client sends its changes in order over one
//! connection after a sync.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};
use yrs::updates::decoder::Decode;
use yrs::{
    Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, TextRef, Transact, Update,
};

/// The name of the shared text in every notes document (the browser uses the same).
pub const TEXT_NAME: &str = "notes";

/// Why an update was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpdateRefused {
    #[error("the update cannot be decoded")]
    Malformed,
    #[error("the update depends on changes this document does not have")]
    MissingDependencies,
    #[error("the update adds changes in another client's name")]
    NotYours,
    #[error("the notes would be longer than {0} bytes")]
    TooLarge(usize),
}

/// A new, empty notes document with a random client id.
pub fn new_doc() -> (Doc, TextRef) {
    let doc = Doc::with_options(Options {
        offset_kind: OffsetKind::Bytes,
        ..Options::default()
    });
    let text = doc.get_or_insert_text(TEXT_NAME);
    (doc, text)
}

/// The text of a document.
pub fn text_of(doc: &Doc, text: &TextRef) -> String {
    text.get_string(&doc.transact())
}

/// The whole document as one update (Yjs v1 encoding).
pub fn encode_state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

/// The state vector (what the document has), v1-encoded for sync step 1.
pub fn state_vector(doc: &Doc) -> StateVector {
    doc.transact().state_vector()
}

/// What `sv` lacks of this document (sync step 2).
pub fn diff_since(doc: &Doc, sv: &StateVector) -> Vec<u8> {
    doc.transact().encode_diff_v1(sv)
}

/// Decodes an update received from the network.
pub fn decode_update(bytes: &[u8]) -> Result<Update, UpdateRefused> {
    catch_unwind(|| Update::decode_v1(bytes))
        .map_err(|_| UpdateRefused::Malformed)?
        .map_err(|_| UpdateRefused::Malformed)
}

/// The clients an update adds new content for (beyond what `doc` has), with their ids.
pub fn new_authors(doc: &Doc, update: &Update) -> Vec<u64> {
    let have = state_vector(doc);
    update
        .insertions(true)
        .iter()
        .filter(|(client, ranges)| ranges.iter().any(|r| r.end > have.get(client)))
        .map(|(client, _)| client.get())
        .collect()
}

/// Applies a decoded update. `Ok(Some(update))`: the document changed, and `update` is
/// exactly the change (what to store and pass on); `Ok(None)`: it had all of it already.
///
/// On `Err` the document may hold part of the update (yrs cannot roll back): the caller must
/// drop this in-memory copy and load the stored one again.
pub fn apply(doc: &Doc, update: Update) -> Result<Option<Vec<u8>>, UpdateRefused> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut txn = doc.transact_mut();
        txn.apply_update(update)
            .map_err(|_| UpdateRefused::Malformed)?;
        if txn.has_missing_updates() {
            return Err(UpdateRefused::MissingDependencies);
        }
        Ok(txn.has_changes().then(|| txn.encode_update_v1()))
    }));
    r.map_err(|_| UpdateRefused::Malformed)?
}

/// Whether applying `bytes` to a copy of `doc` keeps the text within `max` bytes (for updates
/// that might push it over; a copy costs a full encode, so only those are checked this way).
pub fn fits(doc: &Doc, text: &TextRef, bytes: &[u8], max: usize) -> Result<(), UpdateRefused> {
    let len = text.len(&doc.transact()) as usize;
    if len + bytes.len() <= max {
        return Ok(()); // an update inserts at most as many bytes as it has
    }
    let (copy, copy_text) = new_doc();
    apply(&copy, decode_update(&encode_state(doc))?)?;
    apply(&copy, decode_update(bytes)?)?;
    if copy_text.len(&copy.transact()) as usize > max {
        return Err(UpdateRefused::TooLarge(max));
    }
    Ok(())
}

/// Splits text into runs of whitespace and runs of anything else: REST saves are diffed by
/// these, so a changed word is replaced whole and two people's changes to one word keep
/// both words rather than mixing their letters into one nobody wrote.
fn tokens(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut space: Option<bool> = None;
    for (i, c) in s.char_indices() {
        let ws = c.is_whitespace();
        if space.is_some_and(|s| s != ws) {
            out.push(&s[start..i]);
            start = i;
        }
        space = Some(ws);
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Turns the document's text into `new` with the smallest edits the diff finds (by words,
/// within `budget` of time; past it, coarser but still correct edits). Returns the change
/// as an update, or `None` when the text already was `new`.
pub fn set_text(doc: &Doc, text: &TextRef, new: &str, budget: Duration) -> Option<Vec<u8>> {
    let old = text_of(doc, text);
    if old == new {
        return None;
    }
    let (a, b) = (tokens(&old), tokens(new));
    // Byte offset where each token starts (and one past the end).
    let offsets = |t: &[&str]| {
        let mut v = Vec::with_capacity(t.len() + 1);
        let mut at = 0usize;
        for s in t {
            v.push(at);
            at += s.len();
        }
        v.push(at);
        v
    };
    let (oa, ob) = (offsets(&a), offsets(&b));
    let ops = similar::capture_diff_slices_deadline(
        similar::Algorithm::Myers,
        &a,
        &b,
        Some(Instant::now() + budget),
    );
    let mut txn = doc.transact_mut();
    // From the end backwards: earlier offsets stay valid.
    for op in ops.iter().rev() {
        let (old_index, old_len, new_index, new_len) = match *op {
            similar::DiffOp::Equal { .. } => continue,
            similar::DiffOp::Delete {
                old_index,
                old_len,
                new_index,
            } => (old_index, old_len, new_index, 0),
            similar::DiffOp::Insert {
                old_index,
                new_index,
                new_len,
            } => (old_index, 0, new_index, new_len),
            similar::DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => (old_index, old_len, new_index, new_len),
        };
        let at = oa[old_index] as u32;
        let del = (oa[old_index + old_len] - oa[old_index]) as u32;
        if del > 0 {
            text.remove_range(&mut txn, at, del);
        }
        if new_len > 0 {
            text.insert(&mut txn, at, &new[ob[new_index]..ob[new_index + new_len]]);
        }
    }
    Some(txn.encode_update_v1())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_with(s: &str) -> (Doc, TextRef) {
        let (d, t) = new_doc();
        t.insert(&mut d.transact_mut(), 0, s);
        (d, t)
    }

    fn sync(from: &Doc, to: &Doc) {
        let u = diff_since(from, &state_vector(to));
        apply(to, decode_update(&u).expect("decodes")).expect("applies");
    }

    #[test]
    fn set_text_makes_the_new_text_and_nothing_when_equal() {
        let (d, t) = doc_with("Hello wörld, 你好\nsecond line");
        for new in [
            "Hello world, 你好!\nsecond line",
            "",
            "完全不同的文本 entirely new",
            "x",
        ] {
            assert!(set_text(&d, &t, new, Duration::from_secs(1)).is_some());
            assert_eq!(text_of(&d, &t), new);
        }
        assert!(set_text(&d, &t, "x", Duration::from_secs(1)).is_none());
    }

    #[test]
    fn two_stale_saves_of_one_word_keep_both_words() {
        // Both start from "Dan"; one writes "Jan", the other "Dana": both words stay, no
        // "Jana" that nobody wrote.
        let (base, bt) = doc_with("Attendees: Dan, Eve");
        let (a, at) = new_doc();
        let (b, btt) = new_doc();
        sync(&base, &a);
        sync(&base, &b);
        set_text(&a, &at, "Attendees: Jan, Eve", Duration::from_secs(1));
        set_text(&b, &btt, "Attendees: Dana, Eve", Duration::from_secs(1));
        sync(&a, &base);
        sync(&b, &base);
        let merged = text_of(&base, &bt);
        assert!(
            merged.contains("Jan,") || merged.contains("Jan"),
            "{merged}"
        );
        assert!(merged.contains("Dana,"), "{merged}");
        assert!(!merged.contains("Jana"), "{merged}");
        assert!(merged.ends_with(" Eve"), "{merged}");
    }

    #[test]
    fn apply_reports_changes_once_and_refuses_garbage_and_gaps() {
        let (a, at) = doc_with("one");
        let (b, bt) = new_doc();
        let full = encode_state(&a);
        assert!(
            apply(&b, decode_update(&full).expect("ok"))
                .expect("ok")
                .is_some()
        );
        assert_eq!(text_of(&b, &bt), "one");
        assert_eq!(
            apply(&b, decode_update(&full).expect("ok")).expect("ok"),
            None
        );
        assert_eq!(
            decode_update(&[0xff, 0xff, 0xff]).err(),
            Some(UpdateRefused::Malformed)
        );
        // A change that builds on one the receiver lacks.
        at.push(&mut a.transact_mut(), " two");
        let sv2 = state_vector(&a);
        at.push(&mut a.transact_mut(), " three");
        let gap = diff_since(&a, &sv2);
        let (c, _) = new_doc();
        assert_eq!(
            apply(&c, decode_update(&gap).expect("ok")),
            Err(UpdateRefused::MissingDependencies)
        );
    }

    #[test]
    fn fits_refuses_what_would_be_too_long() {
        let (d, t) = doc_with("abc");
        let (o, ot) = new_doc();
        sync(&d, &o);
        ot.push(&mut o.transact_mut(), &"x".repeat(100));
        let u = diff_since(&o, &state_vector(&d));
        assert_eq!(fits(&d, &t, &u, 50), Err(UpdateRefused::TooLarge(50)));
        assert_eq!(fits(&d, &t, &u, 1000), Ok(()));
        // Large but net small (insert then delete): fine.
        let len = ot.len(&o.transact());
        ot.remove_range(&mut o.transact_mut(), 3, len - 3);
        let u = diff_since(&o, &state_vector(&d));
        assert_eq!(fits(&d, &t, &u, 50), Ok(()));
    }

    #[test]
    fn new_authors_names_clients_with_new_content() {
        let (a, at) = doc_with("x");
        let (b, _) = new_doc();
        sync(&a, &b);
        at.push(&mut a.transact_mut(), "y");
        let u = decode_update(&diff_since(&a, &state_vector(&b))).expect("ok");
        assert_eq!(new_authors(&b, &u), vec![a.client_id().get()]);
        let u = decode_update(&diff_since(&a, &state_vector(&a))).expect("ok");
        assert!(new_authors(&a, &u).is_empty());
    }
}
