//! "The call belongs to the order": before a keyed secret is
//! joined with an order's card, the call it was keyed on must be one that
//! the order's own flow brought to it:
//!
//! - every flow: the order's `mode` is the call's kind, and a
//!   `call_attempts` row ties the channel to the order (written when the
//!   callback was placed, or when a transfer or inbound call claimed it);
//! - transfer: the code the call presented is the order's (cleared only
//!   when the order ends, so a used code never matches);
//! - inbound: the mobile the caller ID named (read once by the inbound
//!   flow with [`CallerNumber`](crate::domain::CallerNumber): carriers'
//!   `+86`, `0086`, `86` and trunk `0` prefixes taken off) is the order's
//!   phone;
//!   a call whose caller ID is no mobile (withheld, a landline) was
//!   identified by the order code it keyed instead (`Via::InboundByCode`),
//!   and the claim that code made is what ties it to the order.
//!
//! A call that fails any of these is refused with `order_expired` (to that
//! call, the order cannot be paid) and nothing reaches the issuer. The order
//! itself is left to its own call, untouched.

use super::BankMatcher;
use super::{CallRef, Via};
use crate::bank::IssuerLink;
use crate::domain::ResultCode;
use crate::ivr::Verdict;
use crate::store::OrderRow;

impl<I: IssuerLink> BankMatcher<I> {
    /// Whether `call` may pay `order` (see the module docs); `placed`:
    /// whether a `call_attempts` row ties the call's channel to the order
    /// ([`Store::order_with_call`](crate::store::Store::order_with_call)).
    pub(super) fn call_belongs(&self, order: &OrderRow, call: CallRef<'_>, placed: bool) -> bool {
        if order.mode != call.via.mode() {
            return false;
        }
        let same_call = match call.via {
            Via::Callback => true,
            Via::Transfer { code } | Via::Assisted { code } => order
                .call_code
                .as_deref()
                .is_some_and(|c| same(c.as_bytes(), code.as_bytes())),
            Via::Inbound { caller } => caller.as_str() == order.phone,
            Via::InboundByCode => true,
        };
        same_call && placed
    }

    /// Refuses a verification from a call that does not belong to `order`;
    /// the order is left to its own call, with a line in its audit log.
    pub(super) async fn refuse_foreign_call(
        &self,
        order: &OrderRow,
        call: CallRef<'_>,
    ) -> anyhow::Result<Verdict> {
        tracing::warn!(
            order = %order.id,
            channel = %call.channel_id,
            via = ?call.via,
            "verification refused: the call does not belong to the order"
        );
        let detail = "refused a verification from a call not of this order";
        self.store
            .append_event(&order.id, "matcher", detail, self.now_ms())
            .await?;
        Ok(Verdict::Failed(ResultCode::OrderExpired))
    }
}

/// Constant-time comparison (the transfer code is a bearer token).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
