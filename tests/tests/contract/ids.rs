//! Contract section 5, connection ids: the id in `OK HELLO <id>` is a
//! non-empty string without spaces, unique for the life of the process, and
//! never reused by a later connection.

use crate::common::start;
use gateway_tests::Framing;
use std::collections::HashSet;

#[test]
fn ids_are_unique_non_empty_and_without_spaces() {
    for framing in Framing::ALL {
        let gw = start(framing, &["--workers", "2"]);
        let mut seen = HashSet::new();
        // Many at once ...
        let mut open: Vec<_> = (0..100).map(|_| gw.connect()).collect();
        for (i, c) in open.iter_mut().enumerate() {
            let id = c.hello(&format!("user-{i}"));
            check_id(&id);
            assert!(seen.insert(id.clone()), "{framing:?}: id {id} given twice");
        }
        for c in open {
            c.quit();
        }
        // ... and one after another, after those closed, with states recycled.
        for i in 0..200 {
            let mut c = gw.connect();
            let id = c.hello(&format!("user-{i}"));
            check_id(&id);
            assert!(
                seen.insert(id.clone()),
                "{framing:?}: id {id} reused after its connection closed"
            );
            c.quit();
        }
    }
}

#[track_caller]
fn check_id(id: &str) {
    assert!(!id.is_empty(), "empty connection id");
    assert!(!id.contains(' '), "connection id `{id}` holds a space");
    assert!(
        !id.chars().any(char::is_control),
        "connection id `{id:?}` holds a control character"
    );
}
