-- Expand: release 0.2.0 prices orders from this catalog instead of trusting
-- the price a client sends, and stores the payment method under its new name,
-- payment_token (a token, never a card), beside payment_method. Release 0.1.0
-- reads neither and runs unchanged on this schema. Release 0.2.0 writes both
-- names, reads payment_token falling back to payment_method, and copies old
-- rows over in small batches (store::Store::backfill_payment_tokens); the
-- contract release drops payment_method once no release reads it. Both
-- backends read this file.
CREATE TABLE catalog (
    sku TEXT NOT NULL,
    currency TEXT NOT NULL,
    name TEXT NOT NULL,
    unit_price_minor BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (sku, currency)
);
INSERT INTO catalog (sku, currency, name, unit_price_minor, updated_at_ms) VALUES
    ('book-1', 'EUR', 'Paperback book', 1250, 0),
    ('book-1', 'USD', 'Paperback book', 1390, 0),
    ('pen-7', 'EUR', 'Fountain pen', 199, 0),
    ('pen-7', 'USD', 'Fountain pen', 219, 0),
    ('sticker-1', 'EUR', 'Sticker', 100, 0),
    ('sticker-1', 'USD', 'Sticker', 110, 0),
    ('notebook-2', 'EUR', 'Notebook', 500, 0),
    ('notebook-2', 'USD', 'Notebook', 550, 0),
    ('mug-3', 'EUR', 'Mug', 700, 0),
    ('mug-3', 'USD', 'Mug', 770, 0),
    ('lamp-5', 'EUR', 'Desk lamp', 1999, 0),
    ('lamp-5', 'USD', 'Desk lamp', 2199, 0);

ALTER TABLE orders ADD COLUMN payment_token TEXT;
