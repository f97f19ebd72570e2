//! Reading counters out of a Prometheus text exposition (contract section
//! 8), parsed by the contract tests' parser (`gateway_tests::Metrics`), so
//! the exposition is read one way everywhere.

use std::net::SocketAddr;

use anyhow::{Result, anyhow, bail};
use gateway_tests::Metrics;

use crate::http::HttpClient;

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
    let metrics = Metrics::try_parse(&text).map_err(|e| anyhow!("GET /metrics: {e}"))?;
    Ok(PoolCounters {
        reused: metrics.sum("gateway_pool_reused_total"),
        allocated: metrics.sum("gateway_pool_allocated_total"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
