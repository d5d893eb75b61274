-- Token lifetimes (`aitrader token create --expires 30d`, `aitrader token rotate`).
-- expires_at: NULL = never; from then on the gateway refuses the token, saying it expired.
-- replaced_by: the token a rotation issued in its place (the old one stops at rotation, or at
-- the end of the grace period, through revoked_at / expires_at).
ALTER TABLE aitrader.api_tokens
    ADD COLUMN expires_at  TIMESTAMPTZ,
    ADD COLUMN replaced_by UUID REFERENCES aitrader.api_tokens (id);
