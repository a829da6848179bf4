-- edgesync sink schema, version 1 (PostgreSQL).

-- Streams in log mode: one row per (device_id, epoch, seq).
CREATE TABLE edgesync_log (
    device_id   text        NOT NULL,
    epoch       bigint      NOT NULL,
    seq         bigint      NOT NULL,
    stream      text        NOT NULL,
    key         text        NOT NULL DEFAULT '',
    id          text,
    op          text        NOT NULL,
    schema      text,
    data        jsonb,
    captured_at timestamptz NOT NULL,
    applied_at  timestamptz NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
);
CREATE UNIQUE INDEX edgesync_log_producer_id ON edgesync_log (device_id, stream, id) WHERE id IS NOT NULL;

-- Streams in state mode: one row per (device_id, stream, key); the highest
-- (epoch_gen, seq) wins; deleted rows are tombstones.
CREATE TABLE edgesync_state (
    device_id   text        NOT NULL,
    stream      text        NOT NULL,
    key         text        NOT NULL,
    epoch_gen   bigint      NOT NULL,
    epoch       bigint      NOT NULL,
    seq         bigint      NOT NULL,
    id          text,
    deleted     boolean     NOT NULL DEFAULT false,
    schema      text,
    data        jsonb,
    captured_at timestamptz NOT NULL,
    applied_at  timestamptz NOT NULL,
    PRIMARY KEY (device_id, stream, key)
);

-- The watermark of each (device_id, epoch), written with the records it covers.
CREATE TABLE edgesync_devices (
    device_id       text        NOT NULL,
    epoch           bigint      NOT NULL,
    epoch_gen       bigint      NOT NULL,
    applied_through bigint      NOT NULL DEFAULT 0,
    lost            bigint      NOT NULL DEFAULT 0,
    duplicates      bigint      NOT NULL DEFAULT 0,
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    PRIMARY KEY (device_id, epoch),
    UNIQUE (device_id, epoch_gen)
);

-- Records the sink could not apply; raw is the wire record as CBOR.
CREATE TABLE edgesync_parked (
    device_id text        NOT NULL,
    epoch     bigint      NOT NULL,
    seq       bigint      NOT NULL,
    stream    text        NOT NULL,
    schema    text,
    reason    text        NOT NULL,
    raw       bytea       NOT NULL,
    parked_at timestamptz NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
);

-- Producer ids applied to state-mode streams (log-mode streams use the
-- unique index of edgesync_log): a record with a known (device_id, stream, id)
-- is a duplicate.
CREATE TABLE edgesync_state_ids (
    device_id  text        NOT NULL,
    stream     text        NOT NULL,
    id         text        NOT NULL,
    epoch      bigint      NOT NULL,
    seq        bigint      NOT NULL,
    applied_at timestamptz NOT NULL,
    PRIMARY KEY (device_id, stream, id)
);
