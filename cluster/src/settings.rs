//! The cluster's settings (the `--nats-*`, `--node-id` and
//! `--cluster-timeout` flags), checked so that a bad value is reported on
//! one line before the gateway starts.

use std::time::Duration;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    /// NATS servers, at least one.
    pub urls: Vec<String>,
    /// This node's name.
    pub node_id: String,
    /// Every subject starts with `<prefix>.`.
    pub prefix: String,
    /// Bound on waiting for other nodes.
    pub timeout: Duration,
    /// Cross-node traffic held while NATS is slow or unreachable.
    pub pending_bytes: usize,
}

/// Longest node id.
pub const MAX_NODE_ID: usize = 32;

/// A `--node-id`: 1 to 32 bytes of `A-Z a-z 0-9 _ -`.
pub fn node_id(text: &str) -> Result<String, String> {
    let ok = (1..=MAX_NODE_ID).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match ok {
        true => Ok(text.to_owned()),
        false => Err(format!(
            "`{text}` is not a node id: 1 to {MAX_NODE_ID} bytes of A-Z a-z 0-9 _ -"
        )),
    }
}

/// A `--nats-subject-prefix`: one or more subject tokens of
/// `A-Z a-z 0-9 _ -`, separated by single dots.
pub fn subject_prefix(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    match ok {
        true => Ok(text.to_owned()),
        false => Err(format!(
            "`{text}` is not a subject prefix: dot-separated tokens of A-Z a-z 0-9 _ -"
        )),
    }
}

/// `--nats-url`: comma-separated `nats://[user:pass@|token@]host:port`.
pub fn nats_urls(text: &str) -> Result<Vec<String>, String> {
    let urls: Vec<String> = text.split(',').map(|u| u.trim().to_owned()).collect();
    for url in &urls {
        check_url(url).map_err(|why| format!("`{}` is not a NATS URL: {why}", redact(url)))?;
    }
    Ok(urls)
}

fn check_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("nats://")
        .ok_or("it must start with nats://")?;
    let host_port = match rest.rsplit_once('@') {
        Some((auth, host)) if !auth.is_empty() => host,
        Some(_) => return Err("empty credentials before @"),
        None => rest,
    };
    let host_port = host_port.strip_suffix('/').unwrap_or(host_port);
    let (host, port) = host_port
        .rsplit_once(':')
        .ok_or("it needs a port (host:port)")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b));
    if !host_ok {
        return Err("bad host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("bad port"),
    }
}

/// A URL with its credentials hidden, for logs and errors.
pub fn redact(url: &str) -> String {
    match url.strip_prefix("nats://").and_then(|r| r.rsplit_once('@')) {
        Some((_, host)) => format!("nats://***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids() {
        assert!(node_id("node-1_A").is_ok());
        assert!(node_id(&"x".repeat(32)).is_ok());
        for bad in ["", "a.b", "a b", "é", &"x".repeat(33)] {
            assert!(node_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefixes() {
        assert!(subject_prefix("gateway").is_ok());
        assert!(subject_prefix("team.gw-1").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a*", "a>", "a b"] {
            assert!(subject_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            nats_urls("nats://127.0.0.1:4222,nats://u:p@h:1").ok(),
            Some(vec![
                "nats://127.0.0.1:4222".into(),
                "nats://u:p@h:1".into()
            ])
        );
        assert!(nats_urls("nats://tok@[::1]:4222").is_ok());
        for bad in [
            "",
            "127.0.0.1:4222",
            "http://h:1",
            "nats://h",
            "nats://h:0",
            "nats://h:x",
            "nats://@h:1",
            "nats://h h:1",
        ] {
            assert!(nats_urls(bad).is_err(), "{bad:?}");
        }
        let err = nats_urls("nats://u:secret@h").expect_err("no port");
        assert!(!err.contains("secret"), "{err}");
    }
}
