//! Latency histograms: tasks record into a small local buffer and flush it
//! into one shared HDR histogram, so a thousand connections do not each hold
//! a full histogram.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Samples a [`Recorder`] keeps before it flushes.
const LOCAL_BATCH: usize = 1024;

/// The shared histogram, in microseconds (1 µs to 100 s, 3 significant digits).
#[derive(Clone, Debug)]
pub struct LatencySink {
    inner: Arc<Mutex<Histogram<u64>>>,
}

impl Default for LatencySink {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencySink {
    /// An empty histogram.
    pub fn new() -> Self {
        let h = Histogram::new_with_bounds(1, 100_000_000, 3)
            .expect("constant histogram bounds are valid");
        Self {
            inner: Arc::new(Mutex::new(h)),
        }
    }

    /// A local recorder that flushes here.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            sink: self.clone(),
            buf: Vec::with_capacity(LOCAL_BATCH),
        }
    }

    /// Records samples already in microseconds, under one lock: for tasks
    /// too many to each keep a [`Recorder`]'s buffer.
    pub fn add(&self, samples: &[u64]) {
        let mut h = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for &s in samples {
            h.saturating_record(s.max(1));
        }
    }

    /// Samples recorded so far.
    pub fn len(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The histogram as `[value_us, count]` pairs, one per recorded value
    /// bucket: what another process merges into its own.
    pub fn buckets(&self) -> Vec<(u64, u64)> {
        let h = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        h.iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    /// Empties the histogram.
    pub fn reset(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reset();
    }

    /// `{"count","p50_us","p99_us","p999_us","max_us","mean_us"}`.
    pub fn summary(&self) -> Value {
        let h = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if h.is_empty() {
            return json!({"count": 0});
        }
        json!({
            "count": h.len(),
            "p50_us": h.value_at_quantile(0.50),
            "p99_us": h.value_at_quantile(0.99),
            "p999_us": h.value_at_quantile(0.999),
            "max_us": h.max(),
            "mean_us": (h.mean() * 10.0).round() / 10.0,
        })
    }
}

/// A task-local buffer of samples; flushes on drop.
#[derive(Debug)]
pub struct Recorder {
    sink: LatencySink,
    buf: Vec<u64>,
}

impl Recorder {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        self.buf
            .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        if self.buf.len() >= LOCAL_BATCH {
            self.flush();
        }
    }

    /// Moves the buffered samples into the shared histogram.
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.sink.add(&self.buf);
            self.buf.clear();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Rounds to two decimals for the JSON result.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_through_local_buffers() {
        let sink = LatencySink::new();
        {
            let mut a = sink.recorder();
            let mut b = sink.recorder();
            for i in 1..=100u64 {
                a.record(Duration::from_micros(i));
                b.record(Duration::from_micros(i));
            }
        }
        assert_eq!(sink.len(), 200);
        let s = sink.summary();
        assert_eq!(s["p50_us"], 50);
    }
}
