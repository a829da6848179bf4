// Package capture takes records in on the gateway: the HTTP ingest API
// (POST /v1/records), a local MQTT source and a file tail source. Each
// validates records as the contract requires, transcodes their data to CBOR
// once (internal/jsoncbor), and appends them to the outbox.
//
// # The ingest API
//
// Parse decodes a request body: application/json (one record object or an
// array of them), application/x-ndjson (one object a line, blank lines
// ignored) or application/cbor (one map or an array of maps, text keys). A
// record is {"stream", "key", "id", "op", "schema", "ts", "data"}; stream
// and data are required. Unknown fields are refused, so that a misspelt
// field is not silently lost; so is a field given twice. JSON null in key,
// id, op, schema or ts means absent; "schema": "" means no schema. A
// hand-written scanner finds the fields without reflection; the data's text
// goes whole to jsoncbor (BenchmarkParseJSON measures it against
// encoding/json: about four times faster, a third of the allocations).
//
// NewHandler serves POST /v1/records:
//
//   - 200 {"first_seq": N, "last_seq": M}: every record of the request was
//     appended, and only once outbox.Append returned: so only once stored as
//     outbox.durability promises (synced to disk in fsync mode). Seqs are
//     the outbox's, consecutive.
//   - 400 {"error": "records[3].stream: ..."}: bad input, naming the
//     record's index (0-based; 0 for a single object) and the field; syntax
//     errors give the line (and column).
//   - 401: a token file is configured and the request lacks
//     "Authorization: Bearer <token>" (compared in constant time).
//   - 404 another path; 405 another method than POST.
//   - 413: the body is over ingest.max_request_bytes, or a record's data is
//     over transport.MaxDataBytes as CBOR (or over 1 MiB as text).
//   - 415: the content type is none of the three (or its charset is not
//     UTF-8).
//   - 503 with Retry-After: the outbox is full in block mode and stayed
//     full for ingest.block_timeout; or it is closed or failed.
//
// A request is all or nothing: on any answer but 200, nothing of it was
// stored (except that when the outbox fails in the middle of a commit, the
// outbox cannot say; producers that retry should set "id", which the sink
// applies at most once). Retrying a request that got no answer (a crash, a
// timeout) may store it twice; ids make that harmless too.
//
// Nothing is logged per record or request: the first rejection of each
// kind is logged, then at most one a minute with a count. Metrics counts
// requests, accepted records and rejections by reason, and the latency from
// arrival to durable.
//
// `edgesync put` uses FillDefaults to write its --stream, --key and --schema
// into the records that leave them out, and checks the result with Parse
// before sending it.
//
// # Sources
//
// MQTTSource subscribes to a broker on the gateway and makes a record of
// every message: stream and key from templates over the topic's levels
// ("{2}"), the payload as data (or as a whole record object). A message is
// acknowledged to the broker only once appended (at least once: a crash
// between append and PUBACK captures it twice). Invalid messages are
// acknowledged and counted, never blocking the queue.
//
// FileSource follows an NDJSON file through rotation and truncation, and
// stores its position in the same outbox batch as the records, so that a
// crash neither loses nor duplicates a line.
//
// # Concurrency
//
// Parse, ParseDefaults and FillDefaults are safe for concurrent use. The
// handler serves concurrent requests; each is appended on its own (the
// outbox groups concurrent appends into one synced commit). A source's Run
// may be called once; Stats may be called at any time.
package capture
