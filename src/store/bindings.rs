//! Phones bound to cards (bound payment, DESIGN.md flow 4): created by the
//! matcher after a card's first successful payment, read when an order
//! carries only the phone, listed and deleted by the merchant. Every query
//! is scoped to one merchant.

use super::{typed, Result, Store};
use crate::domain::CardKind;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A phone bound to a card after its first successful payment.
#[derive(Debug, Clone)]
pub struct BindingRow {
    /// voicepay's id, `bnd_` + 24 hex digits.
    pub id: String,
    /// The card number, sealed (`Vault`, column `card_number`).
    pub card_enc: String,
    /// First six and last four digits.
    pub card_masked: String,
    /// Debit (PIN) or credit (expiry + CVN2).
    pub card_type: CardKind,
    /// Keyed HMAC of the card number (hex): counts wrong PINs per card.
    pub card_fp: String,
    /// The cardholder ID number, sealed (column `id_number`).
    pub id_enc: String,
    /// The ID number, masked (first six and last four characters).
    pub id_masked: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A binding to create: the card fields are copied from the paid order, so
/// the card stays sealed all the way.
#[derive(Debug, Clone)]
pub struct NewBinding<'a> {
    /// The new id, `bnd_` + 24 hex digits.
    pub id: &'a str,
    /// The merchant whose order was paid; bindings are per merchant.
    pub merchant_id: &'a str,
    /// The phone to bind, normalised (11 digits).
    pub phone: &'a str,
    /// The order's sealed card number.
    pub card_enc: &'a str,
    /// The order's masked card number.
    pub card_masked: &'a str,
    /// The order's card kind.
    pub card_type: CardKind,
    /// The order's card fingerprint.
    pub card_fp: &'a str,
    /// The order's sealed ID number.
    pub id_enc: &'a str,
    /// The order's masked ID number.
    pub id_masked: &'a str,
    /// Unix milliseconds.
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, card_enc, card_masked, card_type, card_fp, id_enc, id_masked, created_at";

fn binding(r: AnyRow) -> sqlx::Result<BindingRow> {
    Ok(BindingRow {
        id: r.try_get("id")?,
        card_enc: r.try_get("card_enc")?,
        card_masked: r.try_get("card_masked")?,
        card_type: typed::<CardKind>("card_type", r.try_get("card_type")?)?,
        card_fp: r.try_get("card_fp")?,
        id_enc: r.try_get("id_enc")?,
        id_masked: r.try_get("id_masked")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// The card bound to `phone` for this merchant; `None` when unbound.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error, or a
    /// `card_type` that is not a card kind.
    pub async fn binding_for_phone(
        &self,
        merchant_id: &str,
        phone: &str,
    ) -> Result<Option<BindingRow>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM bindings WHERE merchant_id = $1 AND phone = $2"
        ))
        .bind(merchant_id)
        .bind(phone)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(binding).transpose()?)
    }

    /// This merchant's bindings for `phone`, oldest first (at most one
    /// today: a phone binds one card per merchant).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error, or a
    /// `card_type` that is not a card kind.
    pub async fn bindings_for_phone(
        &self,
        merchant_id: &str,
        phone: &str,
    ) -> Result<Vec<BindingRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM bindings WHERE merchant_id = $1 AND phone = $2 \
             ORDER BY created_at, id"
        ))
        .bind(merchant_id)
        .bind(phone)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(binding).collect::<sqlx::Result<_>>()?)
    }

    /// Whether one of this merchant's orders whose `merchant_order_id`
    /// starts with `reference_prefix` was paid (`succeeded`) from `phone`
    /// with the card that is bound to `phone` now: proof that whoever placed
    /// those orders holds the bound card and answered that phone. The demo
    /// page allows a phone-only payment to such a browser session only.
    /// `reference_prefix` is letters and digits (anything else: `false`).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn paid_with_bound_card(
        &self,
        merchant_id: &str,
        phone: &str,
        reference_prefix: &str,
    ) -> Result<bool> {
        if reference_prefix.is_empty()
            || reference_prefix.len() > 32
            || !reference_prefix.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Ok(false);
        }
        // The length is a number we computed, not input: written into the
        // statement because PostgreSQL has no substr(text, bigint).
        let found = sqlx::query(&format!(
            "SELECT o.id FROM orders o JOIN bindings b \
               ON b.merchant_id = o.merchant_id AND b.phone = o.phone AND b.card_fp = o.card_fp \
             WHERE o.merchant_id = $1 AND o.phone = $2 AND o.status = $3 \
               AND substr(o.merchant_order_id, 1, {}) = $4 LIMIT 1",
            reference_prefix.len()
        ))
        .bind(merchant_id)
        .bind(phone)
        .bind(crate::domain::OrderStatus::Succeeded.as_str())
        .bind(reference_prefix)
        .fetch_optional(&self.read)
        .await?;
        Ok(found.is_some())
    }

    /// Binds the phone unless this merchant already bound it to a card
    /// (the first binding stays). Returns whether this call created it; an
    /// existing binding is `Ok(false)`, not a conflict.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn bind_card_if_unbound(&self, b: &NewBinding<'_>) -> Result<bool> {
        self.bind_card(b, None).await
    }

    /// [`Store::bind_card_if_unbound`] after order `order_id`'s payment:
    /// when the binding is created, the `bank` entry `note` is appended to
    /// that order's audit log in the same transaction (one write).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error
    /// (nothing is written).
    pub async fn bind_card_noting(
        &self,
        b: &NewBinding<'_>,
        order_id: &str,
        note: &str,
    ) -> Result<bool> {
        self.bind_card(b, Some((order_id.to_owned(), note.to_owned())))
            .await
    }

    async fn bind_card(&self, b: &NewBinding<'_>, note: Option<(String, String)>) -> Result<bool> {
        let fields = [
            b.id,
            b.merchant_id,
            b.phone,
            b.card_enc,
            b.card_masked,
            b.card_type.as_str(),
            b.card_fp,
            b.id_enc,
            b.id_masked,
        ]
        .map(str::to_owned);
        let created_at = b.created_at;
        self.write_tx(move |tx| {
            let (fields, note) = (fields.clone(), note.clone());
            Box::pin(async move {
                let mut q = sqlx::query(
                    "INSERT INTO bindings (id, merchant_id, phone, card_enc, card_masked, card_type, \
                        card_fp, id_enc, id_masked, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (merchant_id, phone) DO NOTHING",
                );
                for f in fields {
                    q = q.bind(f);
                }
                let done = q.bind(created_at).execute(&mut **tx).await?;
                let created = done.rows_affected() == 1;
                if let (true, Some((order_id, note))) = (created, note) {
                    super::authorizations::insert_event(tx, &order_id, "bank", &note, created_at)
                        .await?;
                }
                Ok(created)
            })
        })
        .await
    }

    /// Deletes the binding if it is this merchant's. Returns whether it was
    /// (false for an unknown id or another merchant's binding).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn delete_binding(&self, merchant_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM bindings WHERE id = $1 AND merchant_id = $2")
            .bind(id)
            .bind(merchant_id)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
