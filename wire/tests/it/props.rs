//! Property tests of the codecs.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use wire::model::Point;
use wire::{ClientMessage, Encoding, Location, ServerMessage, TaskRequest, decode, encode};

use crate::validator;

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(7),
        failure_persistence: None,
        ..Config::default()
    }
}

fn point() -> impl Strategy<Value = Point> {
    (-90.0..=90.0f64, -180.0..=180.0f64).prop_map(|(lat, lng)| Point { lat, lng })
}

fn request() -> impl Strategy<Value = TaskRequest> {
    (
        "[a-z0-9-]{1,64}",
        prop_oneof![Just("companion"), Just("helper"), Just("errand")],
        point(),
        proptest::option::of("\\PC{0,500}"),
        proptest::option::of("[A-Z0-9]{1,32}"),
    )
        .prop_map(
            |(client_ref, task, pickup, note, discount_code)| TaskRequest {
                client_ref,
                task: task.into(),
                pickup,
                note,
                discount_code,
            },
        )
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn valid_frames_round_trip(
        loc in (point(), proptest::option::of(any::<u32>())),
        req in request(),
    ) {
        let frames: [ClientMessage; 2] = [
            Location { point: loc.0, accuracy_m: loc.1 }.into(),
            req.into(),
        ];
        for encoding in [Encoding::Json, Encoding::Binary] {
            for m in &frames {
                let bytes = encode(encoding, m);
                prop_assert_eq!(&decode::<ClientMessage>(encoding, &bytes, &validator()).unwrap(), m);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let v = validator();
        for encoding in [Encoding::Json, Encoding::Binary] {
            let _ = decode::<ClientMessage>(encoding, &bytes, &v);
            let _ = decode::<ServerMessage>(encoding, &bytes, &v);
        }
    }

    #[test]
    fn flipped_bytes_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>(), which in 0usize..17) {
        let v = validator();
        let m = &wire::examples::client_examples()[which];
        for encoding in [Encoding::Json, Encoding::Binary] {
            let mut bytes = encode(encoding, m);
            let i = index.index(bytes.len());
            bytes[i] = byte;
            let _ = decode::<ClientMessage>(encoding, &bytes, &v);
        }
    }
}
