//! A typed view of one sled tree: values are stored in their on-disk layouts, never as
//! raw bytes outside this crate.

use std::marker::PhantomData;

use crate::error::StorageError;
use crate::frozen::convert::{Stored, decode, encode};

/// One sled tree holding values of type `V`.
#[derive(Debug, Clone)]
pub(crate) struct Table<V> {
    pub(crate) name: &'static str,
    pub(crate) tree: sled::Tree,
    _v: PhantomData<fn() -> V>,
}

impl<V: Stored> Table<V> {
    pub(crate) fn open(db: &sled::Db, name: &'static str) -> Result<Self, StorageError> {
        Ok(Self {
            name,
            tree: db.open_tree(name)?,
            _v: PhantomData,
        })
    }

    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<V, StorageError> {
        decode(self.name, bytes)
    }

    pub(crate) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<V>, StorageError> {
        self.tree.get(key)?.map(|b| self.decode(&b)).transpose()
    }

    pub(crate) fn put(&self, key: impl AsRef<[u8]>, value: &V) -> Result<(), StorageError> {
        self.tree.insert(key.as_ref(), encode(value))?;
        Ok(())
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = Result<V, StorageError>> + '_ {
        self.tree.iter().values().map(|r| self.decode(&r?))
    }

    pub(crate) fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<V, StorageError>> + '_ {
        self.tree
            .scan_prefix(prefix)
            .values()
            .map(|r| self.decode(&r?))
    }
}
