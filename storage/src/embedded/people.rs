//! Profiles, payments with idempotency keys, feedback with rating updates, discount
//! codes and pricing settings.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use wire::model::{DiscountCode, PaymentStatus, PricingSettings, Role};
use wire::{AssociateId, OrderId, PaymentId, UserId};

use crate::ack::Ticket;
use crate::backend::{FeedbackOutcome, PaymentStart};
use crate::embedded::keys::{
    app_feedback_key, external_feedback_key, idempotency_key, redemption_key,
};
use crate::embedded::orders::write_payment;
use crate::embedded::store::SledStore;
use crate::error::StorageError;
use crate::frozen::convert::{decode, encode};
use crate::records::*;

const PRICING_KEY: &[u8] = b"pricing";

impl SledStore {
    /// Inserts or replaces a user profile.
    pub fn put_user(&self, user: &UserProfile) -> Result<Ticket, StorageError> {
        self.inner.users.put(user.id.to_bytes(), user)?;
        Ok(self.commit())
    }

    /// The user's profile.
    pub fn user(&self, id: UserId) -> Result<Option<UserProfile>, StorageError> {
        self.inner.users.get(id.to_bytes())
    }

    /// Every user, oldest first.
    pub fn users(&self) -> Result<Vec<UserProfile>, StorageError> {
        self.inner.users.values().collect()
    }

    /// Inserts or replaces an associate profile.
    pub fn put_associate(&self, associate: &AssociateProfile) -> Result<Ticket, StorageError> {
        self.inner
            .associates
            .put(associate.id.to_bytes(), associate)?;
        Ok(self.commit())
    }

    /// The associate's profile.
    pub fn associate(&self, id: AssociateId) -> Result<Option<AssociateProfile>, StorageError> {
        self.inner.associates.get(id.to_bytes())
    }

    /// Every associate, oldest first.
    pub fn associates(&self) -> Result<Vec<AssociateProfile>, StorageError> {
        self.inner.associates.values().collect()
    }

    /// Stores a new pending payment under the user's idempotency key, or returns the
    /// payment that key already names. Concurrent calls with one key create one payment.
    pub fn begin_payment(&self, record: &PaymentRecord) -> Result<PaymentStart, StorageError> {
        let i = &self.inner;
        let index_key = idempotency_key(record.user_id, &record.idempotency_key);
        let existing = (
            &i.payment_keys,
            &i.payments.tree,
            &i.payments_by_order,
            &i.payments_pending,
        )
            .transaction(|(keys, payments, by_order, pending)| {
                if let Some(id) = keys.get(&index_key)? {
                    let Some(bytes) = payments.get(&id)? else {
                        return Err(ConflictableTransactionError::Abort(StorageError::Corrupt {
                            tree: "payment_keys",
                            detail: "idempotency key names a missing payment".into(),
                        }));
                    };
                    return Ok(Some(bytes));
                }
                keys.insert(index_key.as_slice(), &record.payment_id.to_bytes())?;
                write_payment(payments, by_order, pending, record)?;
                Ok(None)
            })
            .map_err(flatten)?;
        match existing {
            Some(bytes) => Ok(PaymentStart::Existing(decode("payments", &bytes)?)),
            None => Ok(PaymentStart::Created(record.clone(), self.commit())),
        }
    }

    /// The payment a user's idempotency key names, if any.
    pub fn payment_by_key(
        &self,
        user: UserId,
        key: &str,
    ) -> Result<Option<PaymentRecord>, StorageError> {
        match self.inner.payment_keys.get(idempotency_key(user, key))? {
            Some(id) => self.inner.payments.get(id),
            None => Ok(None),
        }
    }

    /// Replaces a payment record (status changes outside an order transition).
    pub fn put_payment(&self, record: &PaymentRecord) -> Result<Ticket, StorageError> {
        let i = &self.inner;
        (&i.payments.tree, &i.payments_by_order, &i.payments_pending)
            .transaction(|(payments, by_order, pending)| {
                write_payment(payments, by_order, pending, record)
            })
            .map_err(flatten)?;
        Ok(self.commit())
    }

    /// The payment.
    pub fn payment(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StorageError> {
        self.inner.payments.get(id.to_bytes())
    }

    /// Every payment for an order, any status, oldest first (from the by-order index).
    pub fn payments_for(&self, order: OrderId) -> Result<Vec<PaymentRecord>, StorageError> {
        let mut out = Vec::new();
        for key in self
            .inner
            .payments_by_order
            .scan_prefix(order.to_bytes())
            .keys()
        {
            let key = key?;
            let payment = self
                .inner
                .payments
                .get(&key[16..])?
                .ok_or(StorageError::Corrupt {
                    tree: "payments_by_order",
                    detail: "index names a missing payment".into(),
                })?;
            out.push(payment);
        }
        Ok(out)
    }

    /// Payments still pending (for recovery to resolve with the gateway), from their index.
    pub fn pending_payments(&self) -> Result<Vec<PaymentRecord>, StorageError> {
        let mut out = Vec::new();
        for key in self.inner.payments_pending.iter().keys() {
            let key = key?;
            match self.inner.payments.get(&key)? {
                Some(p) if p.status == PaymentStatus::Pending => out.push(p),
                Some(_) | None => {
                    return Err(StorageError::Corrupt {
                        tree: "payments_pending",
                        detail: "index names a payment that is not pending".into(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Stores feedback and updates the rated party's rating in one step. App feedback is
    /// once per party per order; external feedback once per order, rated party and
    /// source. A repeat changes nothing and returns the rating already recorded.
    pub fn add_feedback(&self, record: &FeedbackRecord) -> Result<FeedbackOutcome, StorageError> {
        let i = &self.inner;
        let order = self
            .order(record.order_id)?
            .ok_or(StorageError::NotFound { what: "order" })?;
        // The entry's own key, and the key that makes a repeat find it.
        let (key, once): (Vec<u8>, Option<Vec<u8>>) = match &record.source {
            FeedbackSource::App => (
                app_feedback_key(record.order_id, record.about).to_vec(),
                None,
            ),
            FeedbackSource::External { source } => {
                let mut k = record.order_id.to_bytes().to_vec();
                k.push(2);
                k.extend_from_slice(&record.id.to_bytes());
                (
                    k,
                    Some(external_feedback_key(record.order_id, record.about, source)),
                )
            }
        };
        let rating = u64::from(record.rating);
        let existing = (
            &i.feedback.tree,
            &i.feedback_external,
            &i.users.tree,
            &i.associates.tree,
        )
            .transaction(|(feedback, external, users, associates)| {
                let earlier = match &once {
                    Some(once) => match external.get(once)? {
                        Some(k) => Some(k),
                        None => {
                            external.insert(once.as_slice(), key.as_slice())?;
                            None
                        }
                    },
                    None => feedback
                        .get(&key)?
                        .map(|_| sled::IVec::from(key.as_slice())),
                };
                if let Some(k) = earlier {
                    return Ok(feedback.get(&k)?);
                }
                feedback.insert(key.as_slice(), encode(record))?;
                match record.about {
                    Role::User => {
                        add_rating::<UserProfile>(users, order.user_id.to_bytes(), "users", rating)?
                    }
                    Role::Associate => add_rating::<AssociateProfile>(
                        associates,
                        order.associate_id.to_bytes(),
                        "associates",
                        rating,
                    )?,
                }
                Ok(None)
            })
            .map_err(flatten)?;
        match existing {
            None => Ok(FeedbackOutcome::Recorded(self.commit())),
            Some(bytes) => Ok(FeedbackOutcome::AlreadyRated(Box::new(decode(
                "feedback", &bytes,
            )?))),
        }
    }

    /// Every piece of feedback on an order.
    pub fn feedback_for(&self, order: OrderId) -> Result<Vec<FeedbackRecord>, StorageError> {
        self.inner.feedback.scan_prefix(order.to_bytes()).collect()
    }

    /// Inserts or replaces a discount code.
    pub fn put_discount(&self, code: &DiscountCode) -> Result<Ticket, StorageError> {
        self.inner.discounts.put(code.code.as_bytes(), code)?;
        Ok(self.commit())
    }

    /// The discount code.
    pub fn discount(&self, code: &str) -> Result<Option<DiscountCode>, StorageError> {
        self.inner.discounts.get(code.as_bytes())
    }

    /// Every discount code.
    pub fn discounts(&self) -> Result<Vec<DiscountCode>, StorageError> {
        self.inner.discounts.values().collect()
    }

    /// Whether the user has already redeemed `code`.
    pub fn redeemed(&self, code: &str, user: UserId) -> Result<bool, StorageError> {
        Ok(self
            .inner
            .redemptions
            .contains_key(redemption_key(code, user))?)
    }

    /// Records that `user` redeemed `code` on `order`; false if they already had on
    /// another order (redeeming again for the same order is allowed, so billing may retry).
    pub fn redeem(&self, code: &str, user: UserId, order: OrderId) -> Result<bool, StorageError> {
        let swapped = self.inner.redemptions.compare_and_swap(
            redemption_key(code, user),
            None::<&[u8]>,
            Some(&order.to_bytes()[..]),
        )?;
        Ok(match swapped {
            Ok(()) => true,
            Err(existing) => existing.current.as_deref() == Some(&order.to_bytes()[..]),
        })
    }

    /// The pricing settings, if ever stored.
    pub fn pricing(&self) -> Result<Option<PricingSettings>, StorageError> {
        self.inner.pricing.get(PRICING_KEY)
    }

    /// Replaces the pricing settings.
    pub fn put_pricing(&self, settings: &PricingSettings) -> Result<Ticket, StorageError> {
        self.inner.pricing.put(PRICING_KEY, settings)?;
        Ok(self.commit())
    }
}

/// Unwraps a transaction's error.
fn flatten(e: TransactionError<StorageError>) -> StorageError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StorageError::Db(e),
    }
}

/// A profile that carries a rating.
trait Rated: crate::frozen::convert::Stored {
    fn add_rating(&mut self, rating: u64);
}

impl Rated for UserProfile {
    fn add_rating(&mut self, rating: u64) {
        self.rating_sum += rating;
        self.rating_count += 1;
    }
}

impl Rated for AssociateProfile {
    fn add_rating(&mut self, rating: u64) {
        self.rating_sum += rating;
        self.rating_count += 1;
    }
}

/// Adds `rating` to the profile at `id` in `tree`, inside a transaction.
fn add_rating<P: Rated>(
    tree: &sled::transaction::TransactionalTree,
    id: [u8; 16],
    name: &'static str,
    rating: u64,
) -> Result<(), ConflictableTransactionError<StorageError>> {
    let Some(bytes) = tree.get(id)? else {
        return Err(ConflictableTransactionError::Abort(
            StorageError::NotFound { what: name },
        ));
    };
    let mut profile: P = decode(name, &bytes).map_err(ConflictableTransactionError::Abort)?;
    profile.add_rating(rating);
    tree.insert(&id, encode(&profile))?;
    Ok(())
}

impl SledStore {
    /// Stores a new user profile; `AlreadyExists` if one has that id.
    pub fn create_user(&self, user: &UserProfile) -> Result<Ticket, StorageError> {
        self.insert_new(&self.inner.users, user.id.to_bytes(), user, "user")
    }

    /// Stores a new associate profile; `AlreadyExists` if one has that id.
    pub fn create_associate(&self, associate: &AssociateProfile) -> Result<Ticket, StorageError> {
        self.insert_new(
            &self.inner.associates,
            associate.id.to_bytes(),
            associate,
            "associate",
        )
    }

    fn insert_new<V: crate::frozen::convert::Stored>(
        &self,
        table: &crate::embedded::table::Table<V>,
        key: [u8; 16],
        value: &V,
        what: &'static str,
    ) -> Result<Ticket, StorageError> {
        match table
            .tree
            .compare_and_swap(key, None::<&[u8]>, Some(encode(value)))?
        {
            Ok(()) => Ok(self.commit()),
            Err(_) => Err(StorageError::AlreadyExists { what }),
        }
    }
}
