// Package cbormsg reads and writes the small CBOR messages of the protocol
// by hand, without reflection and without github.com/fxamacker/cbor/v2, which
// costs about 330 KB of every arm binary: maps with integer keys whose values
// are integers, booleans, text and byte strings, maps of text, and arrays of
// small arrays.
//
// Guarantees:
//
//   - The Append functions write core deterministic CBOR (RFC 8949 section
//     4.2.1): shortest heads, definite lengths. A nil byte slice is written
//     as null, as package cbor writes it.
//   - Wellformed accepts exactly what package cbor's DecMode.Wellformed
//     accepts with the same limits, and returns the same error text.
//   - Unmarshal accepts exactly what package cbor's DecMode.Unmarshal accepts
//     into the equivalent struct (every field tagged keyasint) with
//     DupMapKeyEnforcedAPF, UTF8RejectInvalid, IndefLengthForbidden,
//     TagsForbidden, ByteStringToStringForbidden and
//     FieldNameByteStringForbidden, stores the same values, and returns an
//     error with the same text. That includes package cbor's leniency:
//     unknown keys (integers and text) are skipped, null leaves a field
//     alone (or sets a slice or map to nil), simple values decode into
//     integer fields, and an array of small integers into a byte slice.
//     Tests check all of it against package cbor.
//
// Every function is safe for concurrent use. Decoded byte slices and
// strings never alias the input.
package cbormsg
