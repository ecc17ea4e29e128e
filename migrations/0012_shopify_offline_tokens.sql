-- Expiring offline Admin API tokens, one pair per shop. A refresh token works until its
-- replacement is used, so the pair a refresh returns is committed here before it is used, and
-- refreshes of one shop are serialised by locking its row (see the worker's shopify::token_store).
-- Tokens are stored as they are, like the sevDesk token in the settings: protect the database.
CREATE TABLE shopify_offline_tokens (
    shop               text PRIMARY KEY,
    access_token       text        NOT NULL,
    access_expires_at  timestamptz NOT NULL,
    refresh_token      text        NOT NULL,
    -- NULL when Shopify did not say (a seed given without its lifetime).
    refresh_expires_at timestamptz,
    -- Set when Shopify refused the refresh token (used up, revoked, expired): the chain is dead
    -- until an operator seeds a new pair.
    refused_at         timestamptz,
    refused_reason     text,
    -- The configured refresh token (HOOKLINE_SHOPIFY_REFRESH_TOKEN) this chain started from: a
    -- seed is used once, so only a different one re-seeds a dead chain.
    seed               text,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
