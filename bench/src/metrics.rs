//! Reading counters out of a Prometheus text exposition (contract section 8).

use std::net::SocketAddr;

use anyhow::{Result, bail};

use crate::http::HttpClient;

/// The sum over all label sets of metric `name`, or `None` when the
/// exposition has no sample of it.
pub fn sample_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value_part = if let Some(labels) = rest.strip_prefix('{') {
            match labels.rfind('}') {
                Some(i) => &labels[i + 1..],
                None => continue,
            }
        } else if rest.starts_with(' ') {
            rest
        } else {
            continue; // a longer name sharing the prefix
        };
        let Some(v) = value_part.split_whitespace().next() else {
            continue;
        };
        if let Ok(v) = v.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The pool counters of one scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolCounters {
    /// `gateway_pool_reused_total`, when exported.
    pub reused: Option<f64>,
    /// `gateway_pool_allocated_total`, when exported.
    pub allocated: Option<f64>,
}

impl PoolCounters {
    /// Reuse ratio of the connections accepted between `before` and `self`;
    /// `None` when the counters are absent or did not move.
    pub fn reuse_since(&self, before: &PoolCounters) -> Option<f64> {
        let reused = self.reused? - before.reused?;
        let allocated = self.allocated? - before.allocated?;
        let total = reused + allocated;
        (total > 0.0).then(|| reused / total)
    }
}

/// Scrapes `GET /metrics` from the admin port.
pub async fn scrape(admin: SocketAddr) -> Result<String> {
    let mut c = HttpClient::new(admin);
    let r = c.get("/metrics").await?;
    if r.status != 200 {
        bail!("GET /metrics answered {}", r.status);
    }
    Ok(r.text())
}

/// Scrapes the pool counters.
pub async fn pool_counters(admin: SocketAddr) -> Result<PoolCounters> {
    let text = scrape(admin).await?;
    Ok(PoolCounters {
        reused: sample_sum(&text, "gateway_pool_reused_total"),
        allocated: sample_sum(&text, "gateway_pool_allocated_total"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_labels_and_skips_prefixes() {
        let text = "# HELP gateway_pool_reused_total x\n\
                    # TYPE gateway_pool_reused_total counter\n\
                    gateway_pool_reused_total 41\n\
                    gateway_pool_reused_total_extra 5\n\
                    gateway_closed_total{reason=\"a\"} 1\n\
                    gateway_closed_total{reason=\"b}\"} 2.5\n";
        assert_eq!(sample_sum(text, "gateway_pool_reused_total"), Some(41.0));
        assert_eq!(sample_sum(text, "gateway_closed_total"), Some(3.5));
        assert_eq!(sample_sum(text, "missing"), None);
    }

    #[test]
    fn reuse_ratio() {
        let a = PoolCounters {
            reused: Some(10.0),
            allocated: Some(5.0),
        };
        let b = PoolCounters {
            reused: Some(109.0),
            allocated: Some(6.0),
        };
        assert_eq!(b.reuse_since(&a), Some(0.99));
        assert_eq!(PoolCounters::default().reuse_since(&a), None);
    }
}
