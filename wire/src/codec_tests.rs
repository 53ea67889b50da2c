use super::*;
use crate::examples::{client_examples, server_examples};
use crate::{ClientMessage, ServerMessage, TaskCatalog};

fn validator() -> Validator {
    Validator::new(TaskCatalog::new(["companion", "helper", "errand"]).unwrap())
}

#[test]
fn examples_cover_every_type_in_order() {
    let names: Vec<_> = client_examples().iter().map(|m| m.type_name()).collect();
    assert_eq!(names, ClientMessage::TYPES);
    let names: Vec<_> = server_examples().iter().map(|m| m.type_name()).collect();
    assert_eq!(names, ServerMessage::TYPES);
}

#[test]
fn every_example_round_trips_in_both_encodings() {
    let v = validator();
    for encoding in [Encoding::Json, Encoding::Binary] {
        for m in client_examples() {
            let bytes = encode(encoding, &m);
            assert_eq!(
                decode::<ClientMessage>(encoding, &bytes, &v),
                Ok(m.clone()),
                "{encoding:?}"
            );
        }
        for m in server_examples() {
            let bytes = encode(encoding, &m);
            assert_eq!(
                decode::<ServerMessage>(encoding, &bytes, &v),
                Ok(m.clone()),
                "{encoding:?}"
            );
        }
    }
}

#[test]
fn frames_stay_small_enough_to_queue_by_value() {
    assert!(
        std::mem::size_of::<ServerMessage>() <= 128,
        "{}",
        std::mem::size_of::<ServerMessage>()
    );
    assert!(
        std::mem::size_of::<ClientMessage>() <= 128,
        "{}",
        std::mem::size_of::<ClientMessage>()
    );
}

#[test]
fn json_is_flat_with_type_first() {
    let json = encode_json(&ClientMessage::from(crate::GoOffline {}));
    assert_eq!(json, r#"{"type":"go_offline"}"#);
    let json = encode_json(&client_examples()[0]);
    assert_eq!(
        json,
        r#"{"type":"location","point":{"lat":12.9716,"lng":77.5946},"accuracy_m":8}"#
    );
    let v: serde_json::Value = serde_json::from_str(&encode_json(&server_examples()[5])).unwrap();
    assert_eq!(v["type"], "allotted");
    assert_eq!(v["order"]["state"], "allotted");
}

#[test]
fn json_accepts_fields_in_any_order_and_ignores_unknown_ones() {
    let v = validator();
    let m: ClientMessage = decode(
        Encoding::Json,
        br#"{"point":{"lng":77.5,"lat":12.9},"extra":[1,{"a":2}],"type":"location"}"#,
        &v,
    )
    .unwrap();
    assert!(
        matches!(m, ClientMessage::Location(l) if l.point.lat == 12.9 && l.accuracy_m.is_none())
    );
    // Spacing and escapes in the tag take the general path to the same frame.
    for text in [
        r#"{ "type": "location", "point": {"lat": 12.9, "lng": 77.5}}"#,
        r#"{"type":"loc\u0061tion","point":{"lat":12.9,"lng":77.5}}"#,
    ] {
        let m: ClientMessage = decode(Encoding::Json, text.as_bytes(), &v).unwrap();
        assert!(
            matches!(m, ClientMessage::Location(l) if l.point.lng == 77.5),
            "{text}"
        );
    }
}

fn code_of(encoding: Encoding, bytes: &[u8]) -> ErrorCode {
    decode::<ClientMessage>(encoding, bytes, &validator())
        .unwrap_err()
        .code
}

#[test]
fn each_failure_has_its_code() {
    use ErrorCode::*;
    let j = |s: &str| code_of(Encoding::Json, s.as_bytes());
    assert_eq!(j("{"), BadFrame);
    assert_eq!(j("[]"), BadFrame);
    assert_eq!(j("42"), BadFrame);
    assert_eq!(j(r#"{"point":{"lat":1,"lng":2}}"#), UnknownType);
    assert_eq!(j(r#"{"type":"teleport"}"#), UnknownType);
    assert_eq!(j(r#"{"type":7}"#), UnknownType);
    assert_eq!(j(r#"{"type":"location"}"#), MissingField);
    assert_eq!(
        j(r#"{"type":"location","point":{"lat":"x","lng":2}}"#),
        BadField
    );
    assert_eq!(
        j(r#"{"type":"location","point":{"lat":91,"lng":2}}"#),
        BadCoordinates
    );
    assert_eq!(
        j(r#"{"type":"location","point":{"lat":1e400,"lng":2}}"#),
        BadField
    );
    assert_eq!(
        j(r#"{"type":"request","client_ref":"r","task":"juggling","pickup":{"lat":1,"lng":2}}"#),
        UnknownTaskType
    );
    let long_note = "n".repeat(501);
    assert_eq!(
        j(&format!(
            r#"{{"type":"request","client_ref":"r","task":"helper","pickup":{{"lat":1,"lng":2}},"note":"{long_note}"}}"#
        )),
        TooLong
    );
    let oid = "01930000-0000-7000-8000-000000000004";
    assert_eq!(
        j(&format!(
            r#"{{"type":"pay","order_id":"{oid}","method":"card","instrument":"4242","idempotency_key":"k","tip_minor":-5}}"#
        )),
        NegativeAmount
    );
    assert_eq!(
        j(&format!(
            r#"{{"type":"feedback","order_id":"{oid}","rating":6}}"#
        )),
        BadField
    );
    assert_eq!(
        j(&format!(
            r#"{{"type":"start","order_id":"{oid}","pin":"12a4"}}"#
        )),
        BadField
    );
    assert_eq!(
        code_of(Encoding::Json, b"{\"type\":\"loc\xffation\"}"),
        InvalidUtf8
    );
    let big = format!(r#"{{"type":"heartbeat","pad":"{}"}}"#, "x".repeat(17_000));
    assert_eq!(j(&big), FrameTooLarge);
    let deep = format!(
        r#"{{"type":"location","point":{}{}}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    assert_eq!(j(&deep), BadField);
    // Deep nesting in a field nobody reads is skipped without recursion trouble.
    let deep = format!(
        r#"{{"type":"heartbeat","x":{}{}}}"#,
        "[".repeat(8000),
        "]".repeat(8000)
    );
    let decoded = decode::<ClientMessage>(Encoding::Json, deep.as_bytes(), &validator());
    assert!(
        matches!(decoded, Ok(_) | Err(WireError { code: BadFrame, .. })),
        "{decoded:?}"
    );
}

#[test]
fn binary_failures_have_codes() {
    use ErrorCode::*;
    let b = |bytes: &[u8]| code_of(Encoding::Binary, bytes);
    assert_eq!(b(&[]), BadFrame);
    assert_eq!(b(&[200]), UnknownType);
    let mut ok = encode(Encoding::Binary, &client_examples()[0]);
    ok.push(0);
    assert_eq!(b(&ok), BadFrame);
    // NaN travels in binary; validation catches it.
    let nan = ClientMessage::from(crate::Location {
        point: crate::model::Point {
            lat: f64::NAN,
            lng: 0.0,
        },
        accuracy_m: None,
    });
    assert_eq!(b(&encode(Encoding::Binary, &nan)), BadCoordinates);
}

#[test]
fn a_second_type_field_is_refused_whichever_path_reads_the_frame() {
    let dup = r#"{"type":"location","point":{"lat":12.9,"lng":77.5},"type":"pay"}"#;
    assert_eq!(
        code_of(Encoding::Json, dup.as_bytes()),
        ErrorCode::UnknownType
    );
}
