//! Decode and validate a location frame, JSON and binary, on one core.
//!
//! Run: `cargo bench -p speedy-benches --bench wire_codec`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use wire::model::Point;
use wire::{ClientMessage, Encoding, Location, TaskCatalog, Validator, decode, encode};

fn main() {
    let validator =
        Validator::new(TaskCatalog::new(["companion", "helper", "errand"]).expect("catalog"));
    let frame: ClientMessage = Location {
        point: Point {
            lat: 12.971_598_7,
            lng: 77.594_566_3,
        },
        accuracy_m: Some(8),
    }
    .into();
    let json = encode(Encoding::Json, &frame);
    let binary = encode(Encoding::Binary, &frame);
    println!(
        "location frame: {} bytes JSON, {} bytes binary",
        json.len(),
        binary.len()
    );
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let mut group = c.benchmark_group("decode_location");
    group.throughput(Throughput::Elements(1));
    group.bench_function("json", |b| {
        b.iter(|| {
            decode::<ClientMessage>(Encoding::Json, black_box(&json), &validator).expect("valid")
        })
    });
    group.bench_function("binary", |b| {
        b.iter(|| {
            decode::<ClientMessage>(Encoding::Binary, black_box(&binary), &validator)
                .expect("valid")
        })
    });
    group.finish();
    let mut group = c.benchmark_group("encode_location");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(128);
    group.bench_function("json", |b| {
        b.iter(|| {
            out.clear();
            wire::encode_into(Encoding::Json, black_box(&frame), &mut out);
        })
    });
    group.bench_function("binary", |b| {
        b.iter(|| {
            out.clear();
            wire::encode_into(Encoding::Binary, black_box(&frame), &mut out);
        })
    });
    group.finish();
    c.final_summary();
}
