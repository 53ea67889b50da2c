//! Any bytes through the binary decoder: a typed error or a frame, never a panic; a frame
//! that decodes re-encodes to one that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::{ClientMessage, Encoding, ServerMessage, TaskCatalog, Validator, decode, encode};

fuzz_target!(|data: &[u8]| {
    let v = Validator::new(TaskCatalog::new(["companion", "helper", "errand"]).unwrap());
    if let Ok(frame) = decode::<ClientMessage>(Encoding::Binary, data, &v) {
        let again = encode(Encoding::Binary, &frame);
        assert_eq!(decode::<ClientMessage>(Encoding::Binary, &again, &v).unwrap(), frame);
    }
    let _ = decode::<ServerMessage>(Encoding::Binary, data, &v);
});
