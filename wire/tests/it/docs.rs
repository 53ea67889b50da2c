//! The protocol docs cover every frame: docs/asyncapi.yaml names every message, and every
//! example in docs/PROTOCOL.md decodes and is the canonical encoding of its frame.

use std::collections::BTreeSet;

use wire::examples::{client_examples, server_examples};
use wire::{ClientMessage, Encoding, ErrorCode, ServerMessage, decode};
use yaml_rust2::{Yaml, YamlLoader};

use crate::validator;

fn read(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `name` of every message in `components.messages` under the given direction's
/// channel operation, as listed in the AsyncAPI document.
fn asyncapi_message_names(doc: &Yaml, operation: &str) -> BTreeSet<String> {
    let messages = &doc["operations"][operation]["messages"];
    let list = messages
        .as_vec()
        .unwrap_or_else(|| panic!("operations.{operation}.messages"));
    list.iter()
        .map(|m| {
            let reference = m["$ref"].as_str().expect("message $ref");
            let key = reference.rsplit('/').next().unwrap();
            let message = &doc["components"]["messages"][key];
            let name = message["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{key} has no name"));
            let payload = &message["payload"];
            assert!(!payload.is_badvalue(), "{key} has no payload");
            name.to_owned()
        })
        .collect()
}

#[test]
fn asyncapi_lists_every_message_type() {
    let docs = YamlLoader::load_from_str(&read("docs/asyncapi.yaml")).expect("valid YAML");
    let doc = &docs[0];
    assert!(
        doc["asyncapi"].as_str().unwrap().starts_with("3."),
        "AsyncAPI 3"
    );
    let sent = asyncapi_message_names(doc, "sendClientFrame");
    let received = asyncapi_message_names(doc, "receiveServerFrame");
    let want_client: BTreeSet<String> =
        ClientMessage::TYPES.iter().map(|s| s.to_string()).collect();
    let want_server: BTreeSet<String> =
        ServerMessage::TYPES.iter().map(|s| s.to_string()).collect();
    assert_eq!(sent, want_client);
    assert_eq!(received, want_server);
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_vec()
        .expect("ErrorCode enum");
    let codes: BTreeSet<&str> = codes.iter().filter_map(Yaml::as_str).collect();
    let want: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, want);
}

/// Which way the frames under a heading travel.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Direction {
    FromApp,
    FromEngine,
}

/// The JSON code blocks of a markdown document, each with the direction of the section
/// (`## App → engine` or `## Engine → app`) it sits in.
fn json_blocks(md: &str) -> Vec<(Option<Direction>, String)> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut direction = None;
    for line in md.lines() {
        if cur.is_none() && line.starts_with("## ") {
            direction = if line.contains("App → engine") {
                Some(Direction::FromApp)
            } else if line.contains("Engine → app") {
                Some(Direction::FromEngine)
            } else {
                None
            };
        }
        match (&mut cur, line.trim_start()) {
            (None, l) if l.starts_with("```json") => cur = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => out.push((direction, cur.take().unwrap())),
            (Some(buf), _) => {
                buf.push_str(line);
                buf.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn protocol_md_shows_every_frame_exactly() {
    let md = read("docs/PROTOCOL.md");
    let v = validator();
    let mut seen = BTreeSet::new();
    for (direction, block) in json_blocks(&md) {
        let value: serde_json::Value =
            serde_json::from_str(&block).unwrap_or_else(|e| panic!("{e}: {block}"));
        let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
            continue;
        };
        let compact = serde_json::to_vec(&value).unwrap();
        match direction {
            Some(Direction::FromApp) => {
                let m: ClientMessage =
                    decode(Encoding::Json, &compact, &v).unwrap_or_else(|e| panic!("{kind}: {e}"));
                let canonical = client_examples()
                    .into_iter()
                    .find(|e| e.type_name() == kind);
                assert_eq!(
                    Some(m),
                    canonical,
                    "PROTOCOL.md {kind} differs from examples.rs"
                );
            }
            Some(Direction::FromEngine) => {
                let m: ServerMessage =
                    decode(Encoding::Json, &compact, &v).unwrap_or_else(|e| panic!("{kind}: {e}"));
                let canonical = server_examples()
                    .into_iter()
                    .find(|e| e.type_name() == kind);
                assert_eq!(
                    Some(m),
                    canonical,
                    "PROTOCOL.md {kind} differs from examples.rs"
                );
            }
            None => continue,
        }
        seen.insert((direction, kind.to_owned()));
    }
    for t in ClientMessage::TYPES {
        assert!(
            seen.contains(&(Some(Direction::FromApp), t.to_string())),
            "no example of app frame {t}"
        );
    }
    for t in ServerMessage::TYPES {
        assert!(
            seen.contains(&(Some(Direction::FromEngine), t.to_string())),
            "no example of engine frame {t}"
        );
    }
    for code in ErrorCode::ALL {
        let code = code.as_str();
        assert!(
            md.contains(&format!("`{code}`")),
            "PROTOCOL.md lacks error code {code}"
        );
    }
}
