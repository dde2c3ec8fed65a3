-- Releases of the Premiere panel and the state behind the signed update manifests.

-- One row per published package. A version names one package per product (the download URL is
-- /downloads/{product}/{version}), so it lives on exactly one channel. Rows are never deleted:
-- a yanked release stays for the record (and its download count) but leaves manifests and pages.
CREATE TABLE releases (
    id                bigserial PRIMARY KEY,
    product           text NOT NULL CHECK (product IN ('cep', 'uxp')),
    channel           text NOT NULL CHECK (channel IN ('stable', 'beta')),
    version           text NOT NULL,
    storage_key       text NOT NULL,
    filename          text NOT NULL,
    sha256            text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size              bigint NOT NULL CHECK (size > 0),
    notes_md          text NOT NULL DEFAULT '',
    notes_html        text NOT NULL DEFAULT '',
    min_host_version  text,
    rollout_percent   smallint NOT NULL DEFAULT 100 CHECK (rollout_percent BETWEEN 0 AND 100),
    -- Changing the percent keeps the salt, so installs already offered stay offered as it grows.
    rollout_salt      text NOT NULL,
    -- Dev builds (./scripts/dev) are self-signed or unsigned; pages say so.
    dev_build         boolean NOT NULL DEFAULT false,
    signed            boolean NOT NULL,
    published_at      timestamptz NOT NULL DEFAULT now(),
    -- An operator on the CLI has no account: the label says who (an admin's email, "cli:<user>").
    published_by      uuid,
    published_by_label text NOT NULL,
    yanked_at         timestamptz,
    downloads         bigint NOT NULL DEFAULT 0,
    UNIQUE (product, version)
);
CREATE INDEX releases_channel_idx ON releases (product, channel, published_at DESC);

-- One row per manifest (product, channel): its serial only ever grows, by one per change that
-- alters the manifest's content, in the same transaction as the change (a missing row is serial 0).
-- Panels refuse a serial lower than one they have seen, so an old manifest cannot be replayed.
CREATE TABLE update_manifests (
    product     text NOT NULL CHECK (product IN ('cep', 'uxp')),
    channel     text NOT NULL CHECK (channel IN ('stable', 'beta')),
    serial      bigint NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product, channel)
);

-- The oldest panel version the API still serves, per product (426 panel_outdated below it).
CREATE TABLE panel_min_versions (
    product      text PRIMARY KEY CHECK (product IN ('cep', 'uxp')),
    min_version  text NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT now()
);
