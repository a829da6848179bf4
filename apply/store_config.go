package apply

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgesync/edgesync/internal/pgwire"
)

// Kind is the database behind a Store.
type Kind string

// The store kinds.
const (
	KindSQLite   Kind = "sqlite"
	KindPostgres Kind = "postgres"
)

// StoreKind tells which database a store URL names: sqlite:///abs/path.db or
// postgres://… (also postgresql://…). The sink's config validation uses it to
// refuse shared_group with SQLite.
func StoreKind(storeURL string) (Kind, error) {
	// A PostgreSQL URL may list several hosts (h1:5432,h2:5432), which
	// url.Parse refuses: tell it by its scheme; Validate checks the rest.
	if scheme, _, ok := strings.Cut(storeURL, "://"); ok {
		switch strings.ToLower(scheme) {
		case "postgres", "postgresql":
			return KindPostgres, nil
		}
	}
	u, err := url.Parse(storeURL)
	if err != nil {
		return "", fmt.Errorf("%q: %w", redactURL(storeURL), err)
	}
	switch strings.ToLower(u.Scheme) {
	case "sqlite":
		if u.Host != "" || u.Opaque != "" || !filepath.IsAbs(u.Path) || strings.HasSuffix(u.Path, "/") {
			return "", fmt.Errorf("%q: want sqlite:///absolute/path.db", storeURL)
		}
		if u.RawQuery != "" {
			return "", fmt.Errorf("%q: sqlite URLs take no parameters", storeURL)
		}
		return KindSQLite, nil
	case "postgres", "postgresql":
		return KindPostgres, nil
	case "":
		return "", errors.New("must not be empty; want sqlite:///path.db or postgres://user@host:5432/db")
	}
	return "", fmt.Errorf("%q: unknown scheme %q; want sqlite:// or postgres://", redactURL(storeURL), u.Scheme)
}

// redactURL hides a password written in a URL (as user:password@ or as
// password=), for error messages and logs.
func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return "(unparsable URL)"
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	auth, tail := rest[:end], rest[end:]
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		user := auth[:at]
		if i := strings.IndexByte(user, ':'); i >= 0 {
			user = user[:i] + ":xxxxx"
		}
		auth = user + auth[at:]
	}
	path, query, hasQuery := strings.Cut(tail, "?")
	if strings.ContainsAny(path, "@") || strings.Count(s, "@") > strings.Count(auth, "@") {
		// An @ past the host: a password with a / or ? not percent-encoded.
		return scheme + "://(a URL with a password that is not percent-encoded)"
	}
	if hasQuery {
		params := strings.Split(query, "&")
		for i, kv := range params {
			if k, _, ok := strings.Cut(kv, "="); ok && strings.EqualFold(k, "password") {
				params[i] = k + "=xxxxx"
			}
		}
		path += "?" + strings.Join(params, "&")
	}
	return scheme + "://" + auth + path
}

// StoreConfig is the store block of the sink configuration.
type StoreConfig struct {
	// URL is sqlite:///absolute/path.db or postgres://user@host:5432/db
	// (libpq's URL form and parameters, see pgwire.ParseURL; postgresql://
	// works too). Required.
	URL string `yaml:"url"`
	// PasswordFile holds the PostgreSQL password (trailing newline ignored),
	// so that it stays out of the URL; it overrides a password in the URL.
	// Default "": the password comes from the URL, PGPASSWORD or ~/.pgpass.
	PasswordFile string `yaml:"password_file"`
	// GapWait is how long a batch that starts past its device's watermark is
	// held before it is answered gap: the batch in front is usually a moment
	// late, being committed by another sink of the shared group or queued
	// behind it in this one. The sink holds such a batch without blocking the
	// others and tries it again as soon as the batch in front was applied
	// here or at another sink, otherwise every 5 to 40ms; it waits as long
	// as the device's watermark moves, and answers gap once it has not moved
	// for GapWait (see Sink). Store.Apply, used without the sink runner,
	// retries for GapWait, PostgreSQL only, sleeping between tries.
	// Default 2s; zero answers gap at once.
	GapWait time.Duration `yaml:"gap_wait"`
	// MaxConns is the PostgreSQL connection pool size. Default 0: the
	// larger of 4 and the number of CPUs.
	MaxConns int `yaml:"max_conns"`
}

// DefaultStoreConfig returns the defaults; URL must still be set.
func DefaultStoreConfig() StoreConfig {
	return StoreConfig{GapWait: 2 * time.Second}
}

// Validate reports every problem of c at once, naming each key as written in
// the sink configuration (store.url, store.gap_wait, …).
func (c *StoreConfig) Validate() error {
	var errs []error
	kind, err := StoreKind(c.URL)
	if err != nil {
		errs = append(errs, fmt.Errorf("store.url: %w", err))
	}
	if kind == KindPostgres {
		// The URL's parameters, as the connection will read them; no
		// connection is made.
		if _, err := pgwire.ParseURL(c.URL); err != nil {
			errs = append(errs, fmt.Errorf("store.url: %s", strings.TrimPrefix(err.Error(), "pgwire: ")))
		}
	}
	if c.PasswordFile != "" && kind == KindSQLite {
		errs = append(errs, errors.New("store.password_file: only for postgres:// URLs"))
	}
	if c.GapWait < 0 {
		errs = append(errs, fmt.Errorf("store.gap_wait: %v: must be >= 0", c.GapWait))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("store.max_conns: %d: must be >= 0", c.MaxConns))
	}
	return errors.Join(errs...)
}

// Open validates c, opens the store and applies any pending schema
// migrations.
func (c StoreConfig) Open(ctx context.Context) (*Store, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	kind, _ := StoreKind(c.URL)
	var (
		be  backend
		err error
	)
	switch kind {
	case KindSQLite:
		u, _ := url.Parse(c.URL)
		be, err = openSQLite(ctx, u.Path)
	case KindPostgres:
		be, err = openPostgres(ctx, c)
	}
	if err != nil {
		return nil, err
	}
	s := &Store{be: be, kind: kind}
	if kind == KindPostgres {
		s.gapWait = c.GapWait
	}
	return s, nil
}

// OpenStore opens the store at storeURL with DefaultStoreConfig's settings
// and applies any pending schema migrations. passwordFile is used only for
// PostgreSQL ("" for none).
func OpenStore(ctx context.Context, storeURL, passwordFile string) (*Store, error) {
	c := DefaultStoreConfig()
	c.URL = storeURL
	c.PasswordFile = passwordFile
	return c.Open(ctx)
}
