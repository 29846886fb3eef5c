-- limits.orders_per_phone_per_day counts a phone's orders of the last 24
-- hours at every order creation: an index on (phone, created_at) keeps that
-- one range read however many orders the phone had before.
CREATE INDEX orders_phone_created ON orders (phone, created_at);
