// Package pgwire is a small PostgreSQL client: the frontend/backend
// protocol version 3, just what the sink's PostgreSQL store needs, and no
// more, because every byte of the binary counts on a gateway (pgx, which it
// replaced, cost 3.3 MB of the 20 MB budget; see docs/BENCHMARKS.md).
//
// What it does:
//   - connects over TCP or a unix socket, with sslmode disable, allow,
//     prefer (the default), require, verify-ca or verify-full, and client
//     certificates;
//   - authenticates with trust, password, md5 or SCRAM-SHA-256 (no channel
//     binding, no GSSAPI, Kerberos or SSPI);
//   - takes its settings from a postgres:// or postgresql:// URL with the
//     libpq query parameters listed in ParseURL, the PG* environment
//     variables and ~/.pgpass, as libpq does;
//   - runs statements with the extended query protocol, prepares each SQL
//     text once per connection and caches it (one round trip per statement
//     after the first), sends arrays in binary and everything else as text,
//     and reads results as text;
//   - runs scripts of several statements (migrations, BEGIN, COMMIT) with
//     the simple query protocol.
//
// Limits, written down: verify-full needs the host name in the server
// certificate's subject alternative names (Go ignores a CN-only
// certificate, which libpq accepts); array arguments must match the
// parameter's element type exactly (write $1::bigint[], $2::text[],
// $3::timestamptz[]); a nil []string is sent as an empty array, not NULL;
// timestamps before year 1 or after 9999 do not decode. Connection poolers
// in transaction mode are not supported (prepared statements are per
// session; a moved session makes them fail, never run another's).
//
// A Conn is not safe for concurrent use; pool connections above it. A
// context that ends during a call breaks the connection (its deadline is
// set in the past), which the caller then closes: the server ends the
// statement when it notices the socket went.
package pgwire
