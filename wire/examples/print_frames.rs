//! Prints every example frame as pretty JSON, for writing the protocol docs.
//!
//! Run: `cargo run -p speedy-wire --example print_frames`.

use wire::examples::{client_examples, server_examples};

fn main() {
    println!("# App → engine");
    for m in client_examples() {
        let v: serde_json::Value =
            serde_json::from_str(&wire::encode_json(&m)).expect("valid JSON");
        println!(
            "\n### {}\n```json\n{}\n```",
            m.type_name(),
            serde_json::to_string_pretty(&v).expect("JSON")
        );
    }
    println!("\n# Engine → app");
    for m in server_examples() {
        let v: serde_json::Value =
            serde_json::from_str(&wire::encode_json(&m)).expect("valid JSON");
        println!(
            "\n### {}\n```json\n{}\n```",
            m.type_name(),
            serde_json::to_string_pretty(&v).expect("JSON")
        );
    }
}
