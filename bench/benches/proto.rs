//! Encode and decode of Nerve's main wire messages (criterion). nerve-bench reads the medians
//! from target/criterion/{encode,decode}_NAME/new/estimates.json into BENCHMARKS.md.
#![allow(missing_docs, reason = "criterion_group! defines a pub fn without a doc comment")]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use nerve_bench::samples;
use nerve_proto::{decode, encode, CenterMsg, ControlReply, ControlRequest, WatcherMsg};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

fn pair<T: Serialize + DeserializeOwned>(c: &mut Criterion, name: &str, msg: &T) {
    let frame = encode(msg);
    c.bench_function(&format!("encode/{name}"), |b| b.iter(|| encode(black_box(msg))));
    c.bench_function(&format!("decode/{name}"), |b| {
        b.iter(|| decode::<T>(black_box(&frame)).expect("decodes"));
    });
}

fn protocol(c: &mut Criterion) {
    pair::<WatcherMsg>(c, "hello", &samples::hello());
    pair::<WatcherMsg>(c, "output_64B", &samples::output(64));
    pair::<WatcherMsg>(c, "output_64KiB", &samples::output(samples::BIG));
    pair::<WatcherMsg>(c, "stats", &samples::stats());
    pair::<CenterMsg>(c, "ack", &samples::ack());
    pair::<ControlRequest>(c, "ps_request", &samples::ps_request());
    pair::<ControlReply>(c, "ps_reply_100", &samples::ps_reply(100));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    targets = protocol
}
criterion_main!(benches);
