// Package wire is edgesync's wire protocol: the bytes of every MQTT message
// between agent and sink, their limits, and the topics they travel on. The
// byte-level description is docs/PROTOCOL.md; the test vectors under
// testdata/vectors freeze it.
//
// Messages and topics ({p} the topic prefix, {d} the device id):
//
//	Batch         {p}/{d}/up             agent to sink: compression byte + CBOR (zstd)
//	Ack           {p}/{d}/ack            sink to agent: CBOR
//	State         {p}/{d}/state          agent to cloud: CBOR, retained, also the last will
//	Cmd           {p}/{d}/cmd            cloud to agent: CBOR
//	Config        {p}/{d}/config and {p}/_fleet/config: CBOR, retained, optionally signed
//	ConfigStatus  {p}/{d}/config/status  agent to cloud: CBOR, retained
//
// Guarantees:
//
//   - Every message carries the protocol version V. Decoders refuse any V but
//     Version with an error matching ErrVersion.
//   - Encoders write core deterministic CBOR (RFC 8949 section 4.2.1): equal
//     messages give equal bytes (for zstd batches, with the same version of
//     the zstd library).
//   - Encoders validate before writing: what an encoder accepts, the decoder
//     accepts. Decoders validate everything they return: a decoded message
//     obeys every rule its Validate method documents. Neither checks what
//     the caller must (that the payload's device is the topic's; that a
//     config's signature verifies with a trusted key).
//   - Limits bound memory: a payload over its limit is refused before it is
//     parsed; a zstd batch body is refused from its frame header when it
//     declares more than MaxDecodedBytes, and decompression stops at the
//     first block past what it declared, so a zip bomb costs at most
//     MaxDecodedBytes plus one block. The batch decoder checks the number
//     of records and drops against the bytes left before it allocates room
//     for them; other messages are bounded by small CBOR array and map
//     limits; record data nests at most MaxDataDepth deep.
//   - Every error matches one sentinel (ErrTooLarge, ErrVersion,
//     ErrCompression, ErrMalformed, ErrInvalid, ErrTopic, ErrUnsigned,
//     ErrSignature); all but the last two are a *FieldError naming the
//     message and the field, such as
//     `wire: batch: records[3].stream: invalid "a b"`.
//   - Decoders do not alias their input: a decoded message stays valid after
//     the payload's buffer is reused. DecodeBatchInto reuses the memory of
//     the Batch it decodes into.
//
// Every function is safe for concurrent use. The shared zstd encoder lets
// one EncodeAll run at a time (it holds about 1 MiB); decoders run up to
// min(GOMAXPROCS, 4) decompressions at once. Both are built on first use.
package wire
