use super::{Result, Store};
use sqlx::Row;

/// A phone bound to a card after its first successful payment.
#[derive(Debug, Clone)]
pub struct BindingRow {
    pub id: String,
    pub card_enc: String,
    pub card_masked: String,
    pub card_type: String,
    pub card_fp: String,
    pub id_enc: String,
    pub id_masked: String,
}

impl Store {
    /// The card bound to `phone` for this merchant.
    pub async fn binding_for_phone(
        &self,
        merchant_id: &str,
        phone: &str,
    ) -> Result<Option<BindingRow>> {
        let row = sqlx::query(
            "SELECT id, card_enc, card_masked, card_type, card_fp, id_enc, id_masked \
             FROM bindings WHERE merchant_id = $1 AND phone = $2",
        )
        .bind(merchant_id)
        .bind(phone)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(BindingRow {
                id: r.try_get("id")?,
                card_enc: r.try_get("card_enc")?,
                card_masked: r.try_get("card_masked")?,
                card_type: r.try_get("card_type")?,
                card_fp: r.try_get("card_fp")?,
                id_enc: r.try_get("id_enc")?,
                id_masked: r.try_get("id_masked")?,
            })
        })
        .transpose()
    }
}
