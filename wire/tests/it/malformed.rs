//! A corpus of malformed frames: every one gets a typed error, never a panic.

use serde_json::{Map, Value};
use wire::examples::{client_examples, server_examples};
use wire::{ClientMessage, Encoding, ErrorCode, ServerMessage, decode, encode, encode_json};

use crate::validator;

fn decode_client(bytes: &[u8]) -> Result<ClientMessage, wire::WireError> {
    decode(Encoding::Json, bytes, &validator())
}

fn example_objects() -> Vec<Map<String, Value>> {
    client_examples()
        .iter()
        .map(|m| match serde_json::from_str(&encode_json(m)).unwrap() {
            Value::Object(o) => o,
            other => panic!("not an object: {other}"),
        })
        .collect()
}

/// Every path to a value inside `v`, as a list of keys.
fn paths(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(o) = v {
        for (k, child) in o {
            let mut p = prefix.clone();
            p.push(k.clone());
            out.push(p.clone());
            paths(child, p, out);
        }
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Map<String, Value> {
    let mut cur = v;
    for key in &path[..path.len() - 1] {
        cur = cur.get_mut(key).unwrap();
    }
    cur.as_object_mut().unwrap()
}

fn mutations(mutate: impl Fn(&mut Map<String, Value>, &str)) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for obj in example_objects() {
        let root = Value::Object(obj);
        let mut all = Vec::new();
        paths(&root, vec![], &mut all);
        for path in all.into_iter().filter(|p| p != &["type"]) {
            let mut v = root.clone();
            let key = path.last().unwrap().clone();
            mutate(at_mut(&mut v, &path), &key);
            out.push((
                format!("{}:{}", root["type"], path.join(".")),
                serde_json::to_vec(&v).unwrap(),
            ));
        }
    }
    out
}

#[test]
fn every_prefix_of_every_frame_is_an_error() {
    for m in client_examples() {
        let json = encode(Encoding::Json, &m);
        for cut in 0..json.len() {
            let e = decode_client(&json[..cut]).unwrap_err();
            assert!(
                matches!(e.code, ErrorCode::BadFrame | ErrorCode::UnknownType),
                "{e}"
            );
        }
        let bin = encode(Encoding::Binary, &m);
        for cut in 0..bin.len() {
            assert!(decode::<ClientMessage>(Encoding::Binary, &bin[..cut], &validator()).is_err());
        }
    }
    for m in server_examples() {
        let bin = encode(Encoding::Binary, &m);
        for cut in 0..bin.len() {
            assert!(decode::<ServerMessage>(Encoding::Binary, &bin[..cut], &validator()).is_err());
        }
    }
}

#[test]
fn removing_a_field_is_missing_field_unless_it_is_optional() {
    for (name, frame) in mutations(|o, key| {
        o.remove(key);
    }) {
        match decode_client(&frame) {
            Err(e) => assert!(
                matches!(e.code, ErrorCode::MissingField | ErrorCode::BadField),
                "{name}: {e}"
            ),
            // Accepted: the field must be optional, so it comes back empty.
            Ok(m) => {
                let back: Value = serde_json::from_str(&encode_json(&m)).unwrap();
                let key = name.rsplit(['.', ':']).next().unwrap();
                let mut found = Vec::new();
                find_key(&back, key, &mut found);
                assert!(
                    found
                        .iter()
                        .all(|v| v.is_null() || v == &Value::Array(vec![])),
                    "{name}: required field dropped silently: {back}"
                );
            }
        }
    }
}

fn find_key(v: &Value, key: &str, out: &mut Vec<Value>) {
    if let Value::Object(o) = v {
        for (k, child) in o {
            if k == key {
                out.push(child.clone());
            }
            find_key(child, key, out);
        }
    }
}

#[test]
fn wrong_types_are_bad_fields() {
    for wrong in [
        Value::Bool(true),
        Value::from("x"),
        Value::from(vec![1, 2]),
        Value::from(1.5),
    ] {
        for (name, frame) in mutations(|o, key| {
            let old = o[key].clone();
            let same_kind = std::mem::discriminant(&old) == std::mem::discriminant(&wrong);
            o[key] = if same_kind {
                Value::Object(Map::new())
            } else {
                wrong.clone()
            };
        }) {
            if let Err(e) = decode_client(&frame) {
                assert!(
                    matches!(
                        e.code,
                        ErrorCode::BadField
                            | ErrorCode::MissingField
                            | ErrorCode::BadCoordinates
                            | ErrorCode::TooLong
                            | ErrorCode::UnknownTaskType
                    ),
                    "{name}: {e}"
                );
            }
        }
    }
}

#[test]
fn huge_and_negative_numbers_are_refused_or_checked() {
    for huge in [
        "1e300",
        "-1e300",
        "18446744073709551616",
        "-1",
        "1e-400",
        "-0",
    ] {
        let huge: Value = serde_json::from_str(huge).unwrap_or(Value::Null);
        for (name, frame) in mutations(|o, key| {
            if o[key].is_number() {
                o[key] = huge.clone();
            }
        }) {
            match decode_client(&frame) {
                Ok(m) => {
                    // Accepted only where the value fits its field and passes validation.
                    let back = encode_json(&m);
                    assert!(decode_client(back.as_bytes()).is_ok(), "{name}: {back}");
                }
                Err(e) => assert!(
                    matches!(
                        e.code,
                        ErrorCode::BadField
                            | ErrorCode::BadCoordinates
                            | ErrorCode::NegativeAmount
                            | ErrorCode::AmountTooLarge
                    ),
                    "{name}: {e}"
                ),
            }
        }
    }
}

#[test]
fn invalid_utf8_is_its_own_error() {
    for m in client_examples() {
        let json = encode(Encoding::Json, &m);
        // Corrupt the first byte of every string value.
        for (i, w) in json.windows(2).enumerate() {
            if w == b":\"" {
                let mut bad = json.clone();
                bad.insert(i + 2, 0xFF);
                assert_eq!(
                    decode_client(&bad).unwrap_err().code,
                    ErrorCode::InvalidUtf8
                );
            }
        }
    }
}

#[test]
fn garbage_is_an_error() {
    let v = validator();
    for junk in [
        &b""[..],
        b" ",
        b"null",
        b"\"location\"",
        b"{\"type\":null}",
        b"{\"type\":\"location\",\"type\":\"location\"}",
        b"{\"type\":\"\"}",
        b"\x00\x01\x02",
        b"{\"type\":\"location\",\"point\":{\"lat\":NaN,\"lng\":0}}",
        b"{\"type\":\"location\",\"point\":null}",
    ] {
        assert!(
            decode::<ClientMessage>(Encoding::Json, junk, &v).is_err(),
            "{junk:?}"
        );
    }
}
