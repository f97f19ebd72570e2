//! Micro-benchmark of the pool's take and give-back, the work each
//! connection's start and close pays in the pool manager.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pool_manager::{PoolManager, Recyclable};

/// Stands in for a connection's state: a few collections to clear.
#[derive(Default)]
struct State {
    input: Vec<u8>,
    topics: Vec<String>,
    user: Option<String>,
}

impl Recyclable for State {
    fn reset(&mut self) -> bool {
        self.input.clear();
        self.topics.clear();
        self.user = None;
        true
    }
    fn is_pristine(&self) -> bool {
        self.input.is_empty() && self.topics.is_empty() && self.user.is_none()
    }
}

fn take_and_give_back(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool_take_give_back");
    for (name, max_idle) in [("recycled", 1024), ("no_pool", 0)] {
        let (_registry, metrics) = gateway_metrics::new_registry().expect("registry");
        let mut pool = PoolManager::<State>::new(max_idle, metrics);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut lease = pool.take();
                lease.state.topics.push(black_box("news").to_string());
                pool.give_back(lease.state);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, take_and_give_back);
criterion_main!(benches);
