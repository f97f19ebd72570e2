//! The opaque paging cursor of `GET /api/v1/connections`: the last id of
//! a page, as 16 lower-case hex digits. Clients must not build one; a
//! cursor that does not decode is a `bad_request`.

use conn_actor::ConnId;

/// The cursor that continues after `id`.
pub fn encode(id: ConnId) -> String {
    format!("{id:016x}")
}

/// The id a cursor continues after; `None` when it is malformed.
pub fn decode(cursor: &str) -> Option<ConnId> {
    let digits = cursor.as_bytes();
    let well_formed = digits.len() == 16
        && digits
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    well_formed
        .then(|| ConnId::from_str_radix(cursor, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for id in [0, 1, 255, 1 << 40, u64::MAX] {
            assert_eq!(decode(&encode(id)), Some(id));
        }
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "1",
            "000000000000000g",
            "000000000000000A",
            "+00000000000001",
            "0000000000000000 ",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
