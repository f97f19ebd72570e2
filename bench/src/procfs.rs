//! The server's resident memory and CPU time, and each CPU's load, read
//! from `/proc` through the `procfs` crate.

use anyhow::{Context, Result};
use procfs::CurrentSI;
use procfs::process::Process;

/// `VmRSS` of process `pid`, in KiB.
pub fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = process(pid)?
        .status()
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .vmrss
        .with_context(|| format!("no VmRSS line in /proc/{pid}/status"))
}

/// CPU time (user + system) of process `pid` so far, in clock ticks of
/// 1/100 s (Linux's `USER_HZ`).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let (user, system) = cpu_ticks_split(pid)?;
    Ok(user + system)
}

/// CPU time of process `pid` so far, in ticks, as (user, system): what a
/// change to the server's own code moves is the first, which the kernel's
/// share of a loopback run (most of it) no longer hides.
pub fn cpu_ticks_split(pid: u32) -> Result<(u64, u64)> {
    let stat = process(pid)?
        .stat()
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok((stat.utime, stat.stime))
}

/// CPU time of this process, in ticks.
pub fn own_cpu_ticks() -> Result<u64> {
    cpu_ticks(std::process::id())
}

/// Busy and total jiffies of each CPU, from `/proc/stat`.
pub fn cpu_jiffies() -> Result<Vec<(u64, u64)>> {
    let stats = procfs::KernelStats::current().context("reading /proc/stat")?;
    Ok(stats
        .cpu_time
        .iter()
        .map(|t| {
            let idle = t.idle + t.iowait.unwrap_or(0);
            let total = t.user
                + t.nice
                + t.system
                + idle
                + t.irq.unwrap_or(0)
                + t.softirq.unwrap_or(0)
                + t.steal.unwrap_or(0);
            (total - idle, total)
        })
        .collect())
}

fn process(pid: u32) -> Result<Process> {
    let pid = i32::try_from(pid).with_context(|| format!("pid {pid}"))?;
    Process::new(pid).with_context(|| format!("no process {pid}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process_and_the_cpus() {
        assert!(super::vm_rss_kib(std::process::id()).expect("VmRSS") > 0);
        super::own_cpu_ticks().expect("CPU time");
        let cpus = super::cpu_jiffies().expect("/proc/stat");
        assert!(!cpus.is_empty());
        assert!(cpus.iter().all(|(busy, total)| busy <= total));
    }
}
