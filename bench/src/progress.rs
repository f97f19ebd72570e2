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
    /// A bar over `total`, labelled `label`, showing `counter` with `unit`.
    pub fn timed(
        enabled: bool,
        label: &str,
        total: Duration,
        counter: Arc<AtomicU64>,
        unit: &'static str,
    ) -> Self {
        let target = if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total.as_millis() as u64), target);
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} [{bar:30}] {elapsed}/{duration} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        let b = bar.clone();
        let start = Instant::now();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let secs = start.elapsed().as_secs_f64().max(1e-3);
                let n = counter.load(Ordering::Relaxed);
                b.set_position(start.elapsed().as_millis() as u64);
                b.set_message(format!("{n} {unit} ({:.0}/s)", n as f64 / secs));
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
