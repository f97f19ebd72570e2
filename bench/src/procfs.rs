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

/// CPU time (user + system) of process `pid` so far, in clock ticks of
/// 1/100 s (Linux's `USER_HZ`).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("unexpected {path}"))
}

/// CPU time of this process, in ticks.
pub fn own_cpu_ticks() -> Result<u64> {
    cpu_ticks(std::process::id())
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod cpu_tests {
    #[test]
    fn parses_stat() {
        let s = "1234 (a b) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100 0 0";
        assert_eq!(super::parse_cpu_ticks(s), Some(300));
    }
}

/// Busy and total jiffies of each CPU, from `/proc/stat`.
pub fn cpu_jiffies() -> Result<Vec<(u64, u64)>> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    Ok(parse_cpu_jiffies(&stat))
}

fn parse_cpu_jiffies(stat: &str) -> Vec<(u64, u64)> {
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle.min(total), total)
        })
        .collect()
}

#[cfg(test)]
mod jiffy_tests {
    #[test]
    fn parses_proc_stat() {
        let s = "cpu  9 0 9 9 0 0 0 0 0 0\ncpu0 10 0 5 80 5 0 0 0 0 0\ncpu1 1 0 1 1 1 0 0 0 0 0\nintr 5\n";
        assert_eq!(super::parse_cpu_jiffies(s), vec![(15, 100), (2, 4)]);
    }
}
