//! A progress bar on stderr for timed runs (hidden when stderr is not a
//! terminal or with `--quiet`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar that follows the clock and shows a live counter.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// A bar over `phases` one after the other (`("warm-up", 0.5 s),
    /// ("measured", 2 s)`), labelled `label`, showing `counter` with
    /// `unit`. It counts time within the current phase, in the same terms as
    /// the run's header (`2s measured after 0.5s warm-up`), rather than a
    /// total rounded to whole seconds.
    pub fn timed(
        enabled: bool,
        label: &str,
        phases: &[(&'static str, Duration)],
        counter: Arc<AtomicU64>,
        unit: &'static str,
    ) -> Self {
        let target = if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let total: Duration = phases.iter().map(|(_, d)| *d).sum();
        let bar = ProgressBar::with_draw_target(Some(total.as_millis() as u64), target);
        if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        let b = bar.clone();
        let phases = phases.to_vec();
        let start = Instant::now();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let elapsed = start.elapsed();
                let secs = elapsed.as_secs_f64().max(1e-3);
                let n = counter.load(Ordering::Relaxed);
                b.set_position(elapsed.as_millis() as u64);
                b.set_message(format!(
                    "{} {n} {unit} ({:.0}/s)",
                    phase_at(&phases, elapsed),
                    n as f64 / secs
                ));
            }
        });
        Self {
            bar,
            ticker: Some(ticker),
        }
    }

    /// Removes the bar.
    pub fn finish(mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
    }
}

/// `measured 1.2s/2s`: the phase `elapsed` falls in, and how far into it.
fn phase_at(phases: &[(&str, Duration)], elapsed: Duration) -> String {
    let mut start = Duration::ZERO;
    for (i, (name, len)) in phases.iter().enumerate() {
        let last = i + 1 == phases.len();
        if elapsed < start + *len || last {
            let into = elapsed.saturating_sub(start).min(*len);
            let name = if name.is_empty() {
                String::new()
            } else {
                format!("{name} ")
            };
            return format!("{name}{:.1}s/{}", into.as_secs_f64(), secs(*len));
        }
        start += *len;
    }
    String::new()
}

/// `2s`, `0.5s`: as the run's header writes a duration.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_counts_within_each_phase() {
        let phases = [
            ("warm-up", Duration::from_millis(500)),
            ("measured", Duration::from_secs(2)),
        ];
        let at = |ms| phase_at(&phases, Duration::from_millis(ms));
        assert_eq!(at(0), "warm-up 0.0s/0.5s");
        assert_eq!(at(300), "warm-up 0.3s/0.5s");
        assert_eq!(at(500), "measured 0.0s/2s");
        assert_eq!(at(1700), "measured 1.2s/2s");
        assert_eq!(at(9000), "measured 2.0s/2s");
        assert_eq!(
            phase_at(&[("", Duration::from_secs(10))], Duration::from_secs(3)),
            "3.0s/10s"
        );
    }
}
