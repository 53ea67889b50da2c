//! Task types and the skills bitset.

use crate::error::GeoError;

/// How many distinct task types the index supports (the width of [`Skills`]).
pub const MAX_TASK_TYPES: u8 = 32;

/// A task type, such as companion, helper or errand, as a small number below [`MAX_TASK_TYPES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "u8", into = "u8")
)]
pub struct TaskType(u8);

impl TaskType {
    /// Validates a task type number.
    pub fn new(n: u8) -> Result<Self, GeoError> {
        if n < MAX_TASK_TYPES {
            Ok(Self(n))
        } else {
            Err(GeoError::InvalidTaskType(n))
        }
    }

    /// The task type's number.
    pub fn get(self) -> u8 {
        self.0
    }

    /// The task type's bit in a [`Skills`] set.
    pub(crate) fn bit(self) -> u32 {
        1 << self.0
    }
}

impl TryFrom<u8> for TaskType {
    type Error = GeoError;

    fn try_from(n: u8) -> Result<Self, GeoError> {
        Self::new(n)
    }
}

impl From<TaskType> for u8 {
    fn from(t: TaskType) -> u8 {
        t.0
    }
}

/// The set of task types an associate performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct Skills(u32);

impl Skills {
    /// The empty set.
    pub const EMPTY: Skills = Skills(0);

    /// A set from its raw bits (bit n set means task type n).
    pub fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether the set holds `task`.
    pub fn contains(self, task: TaskType) -> bool {
        self.0 & task.bit() != 0
    }

    /// The set with `task` added.
    #[must_use]
    pub fn with(self, task: TaskType) -> Self {
        Self(self.0 | task.bit())
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The number of task types in the set.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The task types in the set, in increasing order.
    pub fn iter(self) -> impl Iterator<Item = TaskType> {
        (0..MAX_TASK_TYPES)
            .filter(move |n| self.0 & (1 << n) != 0)
            .map(TaskType)
    }
}

impl FromIterator<TaskType> for Skills {
    fn from_iter<I: IntoIterator<Item = TaskType>>(iter: I) -> Self {
        iter.into_iter().fold(Skills::EMPTY, Skills::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_type_range() {
        assert!(TaskType::new(31).is_ok());
        assert_eq!(TaskType::new(32), Err(GeoError::InvalidTaskType(32)));
    }

    #[test]
    fn set_operations() {
        let s: Skills = [1, 4, 31]
            .into_iter()
            .map(|n| TaskType::new(n).unwrap())
            .collect();
        assert_eq!(s.len(), 3);
        assert!(s.contains(TaskType::new(4).unwrap()));
        assert!(!s.contains(TaskType::new(5).unwrap()));
        assert_eq!(
            s.iter().map(TaskType::get).collect::<Vec<_>>(),
            vec![1, 4, 31]
        );
        assert!(Skills::EMPTY.is_empty());
    }
}
