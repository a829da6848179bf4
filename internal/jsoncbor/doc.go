// Package jsoncbor transcodes a record's data between JSON text and CBOR
// without building Go values: the ingest API turns JSON (or CBOR) into one
// canonical CBOR item, which the outbox stores and the wire ships; the sink
// turns it back into JSON text for its data column (jsonb in PostgreSQL,
// TEXT in SQLite).
//
// # API
//
//   - FromJSON(dst, src) transcodes one JSON value to canonical CBOR.
//   - FromCBOR(dst, src) checks one CBOR item and re-encodes it canonically.
//   - ToJSON(dst, src) turns a CBOR item into compact JSON text.
//   - Valid(src) reports whether FromCBOR would accept src.
//
// Each appends to dst and returns the extended slice, like strconv.Append*;
// with a reused dst they allocate nothing for objects of up to 16 keys. On
// error they return dst unchanged in length and an *Error carrying the byte
// offset into src and a sentinel (ErrSyntax, ErrMalformed, ErrUnsupported,
// ErrRange, ErrInvalidUTF8, ErrDuplicateKey, ErrDepth, ErrTooLarge) for
// errors.Is. All functions are safe for concurrent use.
//
// # Limits
//
// Arrays and objects nest at most MaxDepth (64) deep. FromJSON, FromCBOR
// and Valid refuse inputs longer than MaxLen (1 MiB) with ErrTooLarge.
// Definite CBOR lengths are checked against the remaining input before any
// work, so memory and time are linear in the input.
//
// # JSON to CBOR (FromJSON)
//
// The input is RFC 8259 JSON text: one value, optionally surrounded by
// space, tab, CR and LF. No byte-order mark, comments, NaN, or trailing
// commas. The output is the canonical form:
//
//   - object: map (major 5) with definite length, keys as text strings in
//     their original order (not sorted). A key that occurs twice in one
//     object (compared after unescaping) is ErrDuplicateKey.
//   - array: array (major 4) with definite length.
//   - string: text string (major 3). Escapes are decoded; a surrogate pair
//     \uD83D\uDE00 becomes one code point; a lone surrogate and invalid
//     UTF-8 are ErrInvalidUTF8. U+0000 is accepted, as RFC 8259 allows,
//     but PostgreSQL jsonb refuses "\u0000" (SQLSTATE 22P05): a PostgreSQL
//     sink must park such a record.
//   - number written without fraction and exponent (an integer literal):
//     in [-2^63, 2^64-1] a CBOR integer (major 0 or 1); "-0" is the integer
//     0. Outside that range, a float as below.
//   - number with a fraction or exponent ("1.0", "1e2"), or an integer
//     literal out of range: float64 (correctly rounded; a value beyond
//     float64 such as 1e400 is ErrRange, one below its smallest subnormal
//     becomes 0), written as the shortest of float16, float32 and float64
//     that holds the value exactly (RFC 8949 preferred serialization), so
//     21.5 takes 3 bytes and 0.1 takes 9. Integral floats stay floats.
//   - true, false, null: simple values 21, 20, 22.
//
// Every head (length, integer, count) uses its shortest form and every
// length is definite, so the same JSON value always yields the same bytes.
//
// # CBOR to canonical CBOR (FromCBOR, Valid)
//
// The input must be exactly one well-formed CBOR item (RFC 8949) that JSON
// can represent. The output is what FromJSON produces for the JSON text
// ToJSON makes of the input, so both ingest paths store the same bytes for
// the same data:
//
//   - integers of major 0, and of major 1 down to -2^63, stay integers
//     (with the shortest head); major 1 below -2^63 becomes a float64.
//   - float16, float32, float64: kept as floats, rewritten in the shortest
//     exact width. NaN and ±Inf are ErrUnsupported.
//   - text strings: UTF-8 checked (ErrInvalidUTF8); indefinite-length
//     strings are joined into one definite-length string.
//   - byte strings: become text strings holding their standard base64
//     encoding with padding (RFC 4648 section 4).
//   - arrays and maps: indefinite lengths become definite. Map keys must be
//     text strings (anything else is ErrUnsupported and names the key's
//     type); duplicates are ErrDuplicateKey; order is kept.
//   - false, true, null stay. undefined, other simple values and every tag
//     (including bignums, dates and the self-describe tag 55799) are
//     ErrUnsupported; the message names the tag number or simple value.
//   - not well-formed (truncated, reserved additional information 28-30,
//     a misplaced break, a chunk of the wrong type, a two-byte simple value
//     below 32, data after the item): ErrMalformed.
//
// # CBOR to JSON (ToJSON)
//
// ToJSON accepts what FromCBOR accepts (any length) and writes compact JSON
// with no insignificant whitespace, keys in order:
//
//   - integers in decimal, the full CBOR range (-2^64 .. 2^64-1).
//   - floats with the shortest digits that parse back to the same float64
//     (strconv 'f' -1; 'e' below 1e-6 and from 1e21 on, as in
//     encoding/json, with the exponent written 1e-7 and 1e+21). An integral
//     float in plain form gets ".0" ("1.0", "-0.0", "100000000000000000000.0")
//     so that FromJSON reads it back as a float: FromJSON(ToJSON(x)) equals
//     FromCBOR(x) exactly. PostgreSQL 15 jsonb and SQLite json() accept
//     all of these forms (checked); jsonb keeps "1.0" as 1.0 but prints
//     1e+21 in plain digits and -0.0 as 0.0.
//   - strings: '"' and '\' escaped with a backslash; control characters
//     below U+0020 as \b \f \n \r \t or \u00XX; everything else, including
//     U+2028, U+2029 and '<', '>', '&', written as UTF-8.
//   - byte strings in base64 as above.
//
// For JSON input, JSON -> CBOR -> JSON yields the compact form of the input
// with escapes normalized as above, and numbers normalized: "1.50" becomes
// 1.5, "1e2" becomes 100.0, "-0" becomes 0, integer literals beyond the
// integer range become floats.
package jsoncbor
