//! Validation at decode: limits on sizes, strings and amounts, coordinates, task types.

use std::collections::HashMap;

use geo::TaskType;

use crate::client_msg::*;
use crate::error::{ErrorCode, WireError};
use crate::model::{Minor, Point, Zone};
use crate::server_msg::*;

/// Size limits the decoder enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest frame accepted, in bytes (16 KiB by default).
    pub max_frame_bytes: usize,
    /// Longest request note, in characters.
    pub max_note_chars: usize,
    /// Longest feedback comment, in characters.
    pub max_comment_chars: usize,
    /// Longest client reference or idempotency key, in bytes.
    pub max_ref_bytes: usize,
    /// Longest discount code, in bytes.
    pub max_code_bytes: usize,
    /// Longest payment instrument, in bytes.
    pub max_instrument_bytes: usize,
    /// Longest cancellation reason, in characters.
    pub max_reason_chars: usize,
    /// Most cells in a service zone.
    pub max_zone_cells: usize,
    /// Largest zone radius in metres.
    pub max_zone_radius_m: u32,
    /// Largest amount (tip, cash) in minor units.
    pub max_amount_minor: Minor,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 16 * 1024,
            max_note_chars: 500,
            max_comment_chars: 1_000,
            max_ref_bytes: 64,
            max_code_bytes: 32,
            max_instrument_bytes: 64,
            max_reason_chars: 200,
            max_zone_cells: 256,
            max_zone_radius_m: 100_000,
            max_amount_minor: 100_000_000,
        }
    }
}

/// The task types the engine offers, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskCatalog {
    by_name: HashMap<String, TaskType>,
    names: Vec<String>,
}

impl TaskCatalog {
    /// A catalog of `names`, numbered in order; at most [`geo::MAX_TASK_TYPES`] names.
    pub fn new<I, S>(names: I) -> Result<Self, WireError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut catalog = TaskCatalog::default();
        for name in names {
            let name = name.into();
            let n = u8::try_from(catalog.names.len()).unwrap_or(u8::MAX);
            let task =
                TaskType::new(n).map_err(|e| WireError::new(ErrorCode::TooLong, e.to_string()))?;
            if name.is_empty() || name.len() > 32 || catalog.by_name.contains_key(&name) {
                return Err(WireError::new(
                    ErrorCode::BadField,
                    format!("task type name {name:?} is empty, longer than 32 bytes or repeated"),
                ));
            }
            catalog.by_name.insert(name.clone(), task);
            catalog.names.push(name);
        }
        Ok(catalog)
    }

    /// The task type called `name`.
    pub fn get(&self, name: &str) -> Option<TaskType> {
        self.by_name.get(name).copied()
    }

    /// The name of `task`.
    pub fn name(&self, task: TaskType) -> Option<&str> {
        self.names.get(task.get() as usize).map(String::as_str)
    }

    /// Every name, in task-type order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// What a decoded frame is checked against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validator {
    /// Size limits.
    pub limits: Limits,
    /// Known task types; with an empty catalog task names are not checked.
    pub catalog: TaskCatalog,
}

impl Validator {
    /// A validator with default limits and `catalog`.
    pub fn new(catalog: TaskCatalog) -> Self {
        Self {
            limits: Limits::default(),
            catalog,
        }
    }

    fn point(&self, field: &str, p: &Point) -> Result<(), WireError> {
        p.to_latlng()
            .map(drop)
            .map_err(|e| WireError::new(ErrorCode::BadCoordinates, format!("{field}: {e}")))
    }

    fn task(&self, field: &str, name: &str) -> Result<(), WireError> {
        if self.catalog.names.is_empty() || self.catalog.get(name).is_some() {
            Ok(())
        } else {
            Err(WireError::new(
                ErrorCode::UnknownTaskType,
                format!("{field}: unknown task type {name:?}"),
            ))
        }
    }

    fn amount(&self, field: &str, amount: Minor) -> Result<(), WireError> {
        if amount < 0 {
            Err(WireError::new(
                ErrorCode::NegativeAmount,
                format!("{field}: {amount} is negative"),
            ))
        } else if amount > self.limits.max_amount_minor {
            Err(WireError::new(
                ErrorCode::AmountTooLarge,
                format!(
                    "{field}: {amount} is above {}",
                    self.limits.max_amount_minor
                ),
            ))
        } else {
            Ok(())
        }
    }
}

/// A string no longer than `max` characters (or bytes, when `bytes` is set).
fn short(field: &str, s: &str, max: usize, unit: Unit) -> Result<(), WireError> {
    let len = match unit {
        Unit::Bytes => s.len(),
        // Characters never outnumber bytes: skip counting when the bytes fit.
        Unit::Chars if s.len() <= max => return Ok(()),
        Unit::Chars => s.chars().count(),
    };
    if len > max {
        return Err(WireError::new(
            ErrorCode::TooLong,
            format!(
                "{field}: {len} {unit} is over the limit of {max}",
                unit = unit.name()
            ),
        ));
    }
    Ok(())
}

fn non_empty(field: &str, s: &str) -> Result<(), WireError> {
    if s.is_empty() {
        Err(WireError::new(
            ErrorCode::BadField,
            format!("{field}: must not be empty"),
        ))
    } else {
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Bytes,
    Chars,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Bytes => "bytes",
            Unit::Chars => "characters",
        }
    }
}

/// Checks a decoded payload beyond what its type guarantees.
pub trait Validate {
    /// Ok if the payload is acceptable under `v`.
    fn validate(&self, v: &Validator) -> Result<(), WireError>;
}

impl Validate for Location {
    fn validate(&self, v: &Validator) -> Result<(), WireError> {
        v.point("point", &self.point)
    }
}

impl Validate for GoOnline {
    fn validate(&self, v: &Validator) -> Result<(), WireError> {
        if self.skills.len() > geo::MAX_TASK_TYPES as usize {
            return Err(WireError::new(
                ErrorCode::TooLong,
                "skills: too many task types",
            ));
        }
        self.skills.iter().try_for_each(|s| v.task("skills", s))
    }
}

impl Validate for GoOffline {
    fn validate(&self, _: &Validator) -> Result<(), WireError> {
        Ok(())
    }
}

impl Validate for SetZone {
    fn validate(&self, v: &Validator) -> Result<(), WireError> {
        match &self.zone {
            None => Ok(()),
            Some(Zone::Circle { centre, radius_m }) => {
                v.point("zone.centre", centre)?;
                if *radius_m == 0 || *radius_m > v.limits.max_zone_radius_m {
                    return Err(WireError::new(
                        ErrorCode::BadField,
                        format!(
                            "zone.radius_m: must be in 1..={}",
                            v.limits.max_zone_radius_m
                        ),
                    ));
                }
                Ok(())
            }
            Some(Zone::Cells { cells }) => {
                if cells.is_empty() || cells.len() > v.limits.max_zone_cells {
                    return Err(WireError::new(
                        ErrorCode::TooLong,
                        format!(
                            "zone.cells: must hold 1..={} cells",
                            v.limits.max_zone_cells
                        ),
                    ));
                }
                for c in cells {
                    if c.len() > 16 || c.parse::<h3o::CellIndex>().is_err() {
                        return Err(WireError::new(
                            ErrorCode::BadField,
                            format!("zone.cells: {c:?} is not an H3 cell"),
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

impl Validate for TaskRequest {
    fn validate(&self, v: &Validator) -> Result<(), WireError> {
        let l = &v.limits;
        non_empty("client_ref", &self.client_ref)?;
        short("client_ref", &self.client_ref, l.max_ref_bytes, Unit::Bytes)?;
        v.task("task", &self.task)?;
        v.point("pickup", &self.pickup)?;
        if let Some(note) = &self.note {
            short("note", note, l.max_note_chars, Unit::Chars)?;
        }
        if let Some(code) = &self.discount_code {
            non_empty("discount_code", code)?;
            short("discount_code", code, l.max_code_bytes, Unit::Bytes)?;
        }
        Ok(())
    }
}

macro_rules! always_valid {
    ($($t:ty),* $(,)?) => {
        $(
            impl Validate for $t {
                fn validate(&self, _: &Validator) -> Result<(), WireError> {
                    Ok(())
                }
            }
        )*
    };
}

// Frames whose every field is fully checked by its type (ids, enums, integers).
always_valid!(
    CancelRequest,
    Accept,
    Decline,
    EnRoute,
    Arrived,
    Complete,
    Heartbeat
);

impl Validate for Start {
    fn validate(&self, _: &Validator) -> Result<(), WireError> {
        if self.pin.len() == 4 && self.pin.bytes().all(|b| b.is_ascii_digit()) {
            Ok(())
        } else {
            Err(WireError::new(ErrorCode::BadField, "pin: must be 4 digits"))
        }
    }
}

impl Validate for CancelOrder {
    fn validate(&self, v: &Validator) -> Result<(), WireError> {
        match &self.reason {
            Some(r) => short("reason", r, v.limits.max_reason_chars, Unit::Chars),
            None => Ok(()),
        }
    }
}

impl Validate for Pay {
    fn validate(&self, v: &Validator) -> Result<(), WireError> {
        let l = &v.limits;
        if self.method == crate::model::PaymentMethod::Cash {
            return Err(WireError::new(
                ErrorCode::BadField,
                "method: cash is confirmed by the associate with cash_received",
            ));
        }
        non_empty("instrument", &self.instrument)?;
        short(
            "instrument",
            &self.instrument,
            l.max_instrument_bytes,
            Unit::Bytes,
        )?;
        non_empty("idempotency_key", &self.idempotency_key)?;
        short(
            "idempotency_key",
            &self.idempotency_key,
            l.max_ref_bytes,
            Unit::Bytes,
        )?;
        if let Some(tip) = self.tip_minor {
            v.amount("tip_minor", tip)?;
        }
        Ok(())
    }
}

impl Validate for CashReceived {
    fn validate(&self, v: &Validator) -> Result<(), WireError> {
        v.amount("amount_minor", self.amount_minor)
    }
}

impl Validate for Feedback {
    fn validate(&self, v: &Validator) -> Result<(), WireError> {
        if !(1..=5).contains(&self.rating) {
            return Err(WireError::new(
                ErrorCode::BadField,
                "rating: must be 1 to 5",
            ));
        }
        match &self.comment {
            Some(c) => short("comment", c, v.limits.max_comment_chars, Unit::Chars),
            None => Ok(()),
        }
    }
}

// Engine frames: apps trust the engine, so only the decoder's size limit and the
// types themselves apply.
always_valid!(
    Welcome,
    Status,
    RequestReceived,
    Offer,
    OfferEnded,
    Allotted,
    NoAssociate,
    RequestCancelled,
    OrderFrame,
    OrderUpdate,
    PeerLocation,
    InvoiceFrame,
    PaymentResult,
    OrderClosed,
    FeedbackRequest,
    FeedbackRecorded,
    ErrorFrame,
    ServerHeartbeat,
    Shutdown,
);
