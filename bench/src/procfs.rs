//! The server's resident memory, from `/proc/PID/status`.

use anyhow::{Context, Result};

/// `VmRSS` of process `pid`, in KiB.
pub fn vm_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS line in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses() {
        let s = "Name:\tgw\nVmPeak:\t 10 kB\nVmRSS:\t    5120 kB\n";
        assert_eq!(super::parse_vm_rss(s), Some(5120));
    }
}
