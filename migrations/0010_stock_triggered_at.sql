-- Shopify's Triggered-At of the applied stock change (millisecond precision). `updated_at` has
-- one-second precision, so two changes of one level within a second tie on it; this orders
-- them. NULL when not known (reconciled changes, rows written before this column).
ALTER TABLE warehouse_stock ADD COLUMN source_triggered_at timestamptz;
