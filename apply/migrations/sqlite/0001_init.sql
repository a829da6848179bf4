-- edgesync sink schema, version 1 (SQLite).
-- Times are UTC ISO-8601 text with nine fraction digits and a Z
-- ("2026-11-26T10:00:00.123456789Z"); data is JSON text (NULL: no data);
-- booleans are 0/1 (TRUE/FALSE).

-- Streams in log mode: one row per (device_id, epoch, seq).
CREATE TABLE edgesync_log (
    device_id   TEXT    NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    stream      TEXT    NOT NULL,
    key         TEXT    NOT NULL DEFAULT '',
    id          TEXT,
    op          TEXT    NOT NULL,
    schema      TEXT,
    data        TEXT,
    captured_at TEXT    NOT NULL,
    applied_at  TEXT    NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
);
CREATE UNIQUE INDEX edgesync_log_producer_id ON edgesync_log (device_id, stream, id) WHERE id IS NOT NULL;

-- Streams in state mode: one row per (device_id, stream, key); the highest
-- (epoch_gen, seq) wins; deleted rows are tombstones.
CREATE TABLE edgesync_state (
    device_id   TEXT    NOT NULL,
    stream      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    epoch_gen   INTEGER NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    id          TEXT,
    deleted     INTEGER NOT NULL DEFAULT FALSE,
    schema      TEXT,
    data        TEXT,
    captured_at TEXT    NOT NULL,
    applied_at  TEXT    NOT NULL,
    PRIMARY KEY (device_id, stream, key)
);

-- The watermark of each (device_id, epoch), written with the records it covers.
CREATE TABLE edgesync_devices (
    device_id       TEXT    NOT NULL,
    epoch           INTEGER NOT NULL,
    epoch_gen       INTEGER NOT NULL,
    applied_through INTEGER NOT NULL DEFAULT 0,
    lost            INTEGER NOT NULL DEFAULT 0,
    duplicates      INTEGER NOT NULL DEFAULT 0,
    first_seen      TEXT    NOT NULL,
    last_seen       TEXT    NOT NULL,
    PRIMARY KEY (device_id, epoch),
    UNIQUE (device_id, epoch_gen)
);

-- Records the sink could not apply; raw is the wire record as CBOR.
CREATE TABLE edgesync_parked (
    device_id TEXT    NOT NULL,
    epoch     INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    stream    TEXT    NOT NULL,
    schema    TEXT,
    reason    TEXT    NOT NULL,
    raw       BLOB    NOT NULL,
    parked_at TEXT    NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
);

-- Producer ids applied to state-mode streams (log-mode streams use the
-- unique index of edgesync_log): a record with a known (device_id, stream, id)
-- is a duplicate.
CREATE TABLE edgesync_state_ids (
    device_id  TEXT    NOT NULL,
    stream     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    epoch      INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    applied_at TEXT    NOT NULL,
    PRIMARY KEY (device_id, stream, id)
);
