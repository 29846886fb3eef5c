//! Phones bound to cards (bound payment, DESIGN.md flow 4): created by the
//! matcher after a card's first successful payment, read when an order
//! carries only the phone, listed and deleted by the merchant. Every query
//! is scoped to one merchant.

use super::{Result, Store};
use crate::domain::CardKind;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A phone bound to a card after its first successful payment.
#[derive(Debug, Clone)]
pub struct BindingRow {
    pub id: String,
    pub card_enc: String,
    pub card_masked: String,
    pub card_type: CardKind,
    pub card_fp: String,
    pub id_enc: String,
    pub id_masked: String,
    pub created_at: i64,
}

/// A binding to create: the card fields are copied from the paid order, so
/// the card stays sealed all the way.
#[derive(Debug, Clone)]
pub struct NewBinding<'a> {
    pub id: &'a str,
    pub merchant_id: &'a str,
    pub phone: &'a str,
    pub card_enc: &'a str,
    pub card_masked: &'a str,
    pub card_type: CardKind,
    pub card_fp: &'a str,
    pub id_enc: &'a str,
    pub id_masked: &'a str,
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, card_enc, card_masked, card_type, card_fp, id_enc, id_masked, created_at";

fn binding(r: AnyRow) -> sqlx::Result<BindingRow> {
    Ok(BindingRow {
        id: r.try_get("id")?,
        card_enc: r.try_get("card_enc")?,
        card_masked: r.try_get("card_masked")?,
        card_type: CardKind::try_from(r.try_get::<String, _>("card_type")?).map_err(|e| {
            sqlx::Error::ColumnDecode {
                index: "card_type".into(),
                source: Box::new(e),
            }
        })?,
        card_fp: r.try_get("card_fp")?,
        id_enc: r.try_get("id_enc")?,
        id_masked: r.try_get("id_masked")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// The card bound to `phone` for this merchant.
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

    /// Binds the phone unless this merchant already bound it to a card
    /// (the first binding stays). Returns whether this call created it.
    pub async fn bind_card_if_unbound(&self, b: &NewBinding<'_>) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO bindings (id, merchant_id, phone, card_enc, card_masked, card_type, \
                card_fp, id_enc, id_masked, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (merchant_id, phone) DO NOTHING",
        )
        .bind(b.id)
        .bind(b.merchant_id)
        .bind(b.phone)
        .bind(b.card_enc)
        .bind(b.card_masked)
        .bind(b.card_type.as_str())
        .bind(b.card_fp)
        .bind(b.id_enc)
        .bind(b.id_masked)
        .bind(b.created_at)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the binding if it is this merchant's. Returns whether it was.
    pub async fn delete_binding(&self, merchant_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM bindings WHERE id = $1 AND merchant_id = $2")
            .bind(id)
            .bind(merchant_id)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
