package capture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/jsoncbor"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport"
)

type reply struct {
	status int
	header http.Header
	body   string
	first  uint64
	last   uint64
	err    string
}

// post sends one request to h and decodes the answer.
func post(t testing.TB, h http.Handler, method, path, ct string, body []byte, header ...string) reply {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Content-Length" && header[i+1] == "-1" {
			req.ContentLength = -1
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return decodeReply(t, rec.Code, rec.Header(), rec.Body.Bytes())
}

func decodeReply(t testing.TB, status int, h http.Header, body []byte) reply {
	t.Helper()
	r := reply{status: status, header: h, body: string(body)}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d: Content-Type %q, body %q", status, ct, body)
	}
	var v struct {
		First *uint64 `json:"first_seq"`
		Last  *uint64 `json:"last_seq"`
		Error *string `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("status %d: body %q: %v", status, body, err)
	}
	if status == http.StatusOK {
		if v.First == nil || v.Last == nil || v.Error != nil {
			t.Fatalf("200 with body %q", body)
		}
		r.first, r.last = *v.First, *v.Last
	} else {
		if v.Error == nil || v.First != nil {
			t.Fatalf("status %d with body %q", status, body)
		}
		r.err = *v.Error
	}
	return r
}

func ndjson(recs ...string) []byte { return []byte(strings.Join(recs, "\n") + "\n") }

func TestHandlerAppends(t *testing.T) {
	ob := openOutbox(t, "", outbox.Options{})
	m := new(Metrics)
	h := NewHandler(HTTPConfig{}, ob, m, quiet())

	r := post(t, h, "POST", RecordsPath, ContentTypeJSON, []byte(`[{"stream":"temps","key":"s1","data":{"t":1}},{"stream":"temps","key":"s2","id":"x-1","data":{"t":2}},{"stream":"inv","op":"delete","key":"s3","data":null}]`))
	if r.status != 200 || r.first != 1 || r.last != 3 {
		t.Fatalf("json: %d %q, want 200 first 1 last 3", r.status, r.body)
	}
	if r.body != "{\"first_seq\":1,\"last_seq\":3}\n" {
		t.Errorf("body %q", r.body)
	}
	r = post(t, h, "POST", RecordsPath, "application/x-ndjson; charset=utf-8", ndjson(`{"stream":"a","data":4,"schema":"r@2"}`, ``, `{"stream":"a","data":5,"ts":"2026-01-02T03:04:05Z"}`))
	if r.status != 200 || r.first != 4 || r.last != 5 {
		t.Fatalf("ndjson: %d %q, want 200 first 4 last 5", r.status, r.body)
	}
	r = post(t, h, "POST", RecordsPath, ContentTypeCBOR, cb(cmap(2), "stream", "c", "data", []byte{0x42, 0xff, 0xfe}))
	if r.status != 200 || r.first != 6 || r.last != 6 {
		t.Fatalf("cbor: %d %q, want 200 first 6 last 6", r.status, r.body)
	}

	got := readAll(t, ob)
	wantData := []string{`{"t":1}`, `{"t":2}`, `null`, `4`, `5`, `"//4="`}
	if len(got) != len(wantData) {
		t.Fatalf("outbox holds %d records, want %d", len(got), len(wantData))
	}
	for i, rec := range got {
		j, err := jsoncbor.ToJSON(nil, rec.Data)
		if err != nil || string(j) != wantData[i] || rec.Seq != outbox.Seq(i+1) {
			t.Errorf("record %d: seq %d data %s (%v), want %s", i, rec.Seq, j, err, wantData[i])
		}
	}
	if got[1].ID != "x-1" || got[1].Key != "s2" || got[2].Op != outbox.OpDelete || got[3].Schema != "r" || got[3].SchemaVersion != 2 ||
		got[4].CapturedAt != time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano() {
		t.Errorf("fields not stored: %+v", got)
	}
	if m.Requests.Load() != 3 || m.Accepted.Load() != 6 || m.CaptureToDurable.Count() != 6 {
		t.Errorf("metrics: requests %d accepted %d latency count %d, want 3 6 6",
			m.Requests.Load(), m.Accepted.Load(), m.CaptureToDurable.Count())
	}
	for _, reason := range Reasons {
		if n := m.Rejected(reason); n != 0 {
			t.Errorf("rejected %s = %d, want 0", reason, n)
		}
	}
}

func TestHandlerRefuses(t *testing.T) {
	ob := openOutbox(t, "", outbox.Options{})
	m := new(Metrics)
	h := NewHandler(HTTPConfig{MaxRequestBytes: 4096}, ob, m, quiet())
	// Something stored first, so that "unchanged" is not just "empty".
	if r := post(t, h, "POST", RecordsPath, ContentTypeJSON, []byte(`{"stream":"a","data":0}`)); r.status != 200 {
		t.Fatalf("first post: %d %s", r.status, r.body)
	}
	hBig := NewHandler(HTTPConfig{}, ob, m, quiet())
	big := fmt.Sprintf(`{"stream":"a","data":"%s"}`, strings.Repeat("x", transport.MaxDataBytes))
	over := []byte(`[` + strings.Repeat(`{"stream":"a","data":1},`, 200) + `{"stream":"a","data":1}]`)

	tests := []struct {
		name   string
		h      http.Handler
		method string
		path   string
		ct     string
		body   []byte
		header []string
		status int
		reason string
		msg    string
	}{
		{"bad record in the middle", h, "POST", RecordsPath, ContentTypeJSON,
			[]byte(`[{"stream":"a","data":1},{"stream":"b","data":2},{"stream":"a b","data":3},{"stream":"c","data":4}]`), nil,
			400, ReasonBadRequest, `records[2].stream: must match [A-Za-z0-9._-]{1,64}, got "a b"`},
		{"missing data", h, "POST", RecordsPath, ContentTypeNDJSON, ndjson(`{"stream":"a","data":1}`, `{"stream":"a"}`), nil,
			400, ReasonBadRequest, "records[1].data (line 2): missing"},
		{"unknown field", h, "POST", RecordsPath, ContentTypeJSON, []byte(`{"stream":"a","data":1,"tss":"x"}`), nil,
			400, ReasonBadRequest, "records[0].tss: unknown field"},
		{"bad json", h, "POST", RecordsPath, ContentTypeJSON, []byte(`{"stream":"a",`), nil,
			400, ReasonBadRequest, "records[0] (line 1): unexpected end of input"},
		{"bad cbor", h, "POST", RecordsPath, ContentTypeCBOR, []byte{0xa2, 0x66}, nil,
			400, ReasonBadRequest, "unexpected end of CBOR input"},
		{"cbor tag in data", h, "POST", RecordsPath, ContentTypeCBOR, cb(cmap(2), "stream", "a", "data", []byte{0xc0, 0x60}), nil,
			400, ReasonBadRequest, "records[0].data: tag 0"},
		{"empty body", h, "POST", RecordsPath, ContentTypeJSON, nil, nil,
			400, ReasonBadRequest, "body: empty body"},
		{"body over the limit", h, "POST", RecordsPath, ContentTypeJSON, over, nil,
			413, ReasonTooLarge, "request body of 4825 bytes is over the limit of 4096 bytes (ingest.max_request_bytes)"},
		{"body over the limit, length unknown", h, "POST", RecordsPath, ContentTypeJSON, over, []string{"Content-Length", "-1"},
			413, ReasonTooLarge, "request body over the limit of 4096 bytes"},
		{"data over the limit", hBig, "POST", RecordsPath, ContentTypeJSON, []byte(big), nil,
			413, ReasonTooLarge, "records[0].data: is"},
		{"no content type", h, "POST", RecordsPath, "", []byte(`{"stream":"a","data":1}`), nil,
			415, ReasonUnsupported, "unsupported content type: none given"},
		{"text/plain", h, "POST", RecordsPath, "text/plain", []byte(`{"stream":"a","data":1}`), nil,
			415, ReasonUnsupported, `unsupported content type: "text/plain"`},
		{"latin1", h, "POST", RecordsPath, "application/json; charset=iso-8859-1", []byte(`{"stream":"a","data":1}`), nil,
			415, ReasonUnsupported, "charset"},
		{"GET", h, "GET", RecordsPath, "", nil, nil, 405, ReasonBadRequest, "method GET not allowed"},
		{"PUT", h, "PUT", RecordsPath, ContentTypeJSON, []byte(`{"stream":"a","data":1}`), nil, 405, ReasonBadRequest, "use POST"},
		{"other path", h, "POST", "/v1/record", ContentTypeJSON, []byte(`{"stream":"a","data":1}`), nil, 404, ReasonBadRequest, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := m.Rejected(tt.reason)
			r := post(t, tt.h, tt.method, tt.path, tt.ct, tt.body, tt.header...)
			if r.status != tt.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tt.status)
			}
			if !strings.Contains(r.err, tt.msg) {
				t.Errorf("error %q does not contain %q", r.err, tt.msg)
			}
			if got := m.Rejected(tt.reason); got != before+1 {
				t.Errorf("rejected %s: %d, want %d", tt.reason, got, before+1)
			}
			if tt.status == 405 && r.header.Get("Allow") != "POST" {
				t.Errorf("405 without Allow: POST")
			}
			if st := ob.Stats(); st.Head != 1 {
				t.Errorf("outbox head %d after a refused request, want 1", st.Head)
			}
		})
	}
	if got := readAll(t, ob); len(got) != 1 {
		t.Errorf("outbox holds %d records, want 1", len(got))
	}
	if m.Accepted.Load() != 1 {
		t.Errorf("accepted %d, want 1", m.Accepted.Load())
	}
}

// fillOutbox appends until the outbox in block mode is full, even for the
// smallest record.
func fillOutbox(t *testing.T, ob *outbox.Outbox) {
	t.Helper()
	for _, n := range []int{1000, 100, 10, 0} {
		data := jsonCBOR(`"` + strings.Repeat("f", n) + `"`)
		for i := 0; ; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			_, _, err := ob.Append(ctx, []outbox.Record{{Stream: "a", Data: data}})
			cancel()
			if errors.Is(err, outbox.ErrFull) {
				break
			}
			if err != nil {
				t.Fatalf("fill: %v", err)
			}
			if i > 10000 {
				t.Fatal("the outbox does not fill up")
			}
		}
	}
}

func TestHandlerFull(t *testing.T) {
	ob := openOutbox(t, "", outbox.Options{MaxBytes: 64 << 10, WhenFull: outbox.Block})
	fillOutbox(t, ob)
	head := ob.Stats().Head
	m := new(Metrics)
	h := NewHandler(HTTPConfig{BlockTimeout: 150 * time.Millisecond, RetryAfter: 1500 * time.Millisecond}, ob, m, quiet())
	start := time.Now()
	r := post(t, h, "POST", RecordsPath, ContentTypeJSON, []byte(`{"stream":"a","data":1}`))
	waited := time.Since(start)
	if r.status != 503 {
		t.Fatalf("status %d (%s), want 503", r.status, r.body)
	}
	if ra := r.header.Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After %q, want 2", ra)
	}
	if !strings.Contains(r.err, "full") {
		t.Errorf("error %q does not say full", r.err)
	}
	if waited < 150*time.Millisecond {
		t.Errorf("answered after %v, before the block timeout", waited)
	}
	if m.Rejected(ReasonFull) != 1 || ob.Stats().Head != head {
		t.Errorf("rejected full %d, head %d (want 1, %d)", m.Rejected(ReasonFull), ob.Stats().Head, head)
	}

	// A request waiting for space gets it when the sink acknowledges.
	h2 := NewHandler(HTTPConfig{BlockTimeout: 10 * time.Second}, ob, m, quiet())
	done := make(chan reply, 1)
	go func() { done <- post(t, h2, "POST", RecordsPath, ContentTypeJSON, []byte(`{"stream":"a","data":2}`)) }()
	time.Sleep(50 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("answered %d while full", r.status)
	default:
	}
	if _, err := ob.Ack(ob.Epoch(), head); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	select {
	case r := <-done:
		if r.status != 200 || r.first != uint64(head)+1 {
			t.Errorf("after the ack: %d %s, want 200 first_seq %d", r.status, r.body, head+1)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer after space was freed")
	}
}

func TestHandlerClosedOutbox(t *testing.T) {
	ob := openOutbox(t, "", outbox.Options{})
	m := new(Metrics)
	h := NewHandler(HTTPConfig{}, ob, m, quiet())
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}
	r := post(t, h, "POST", RecordsPath, ContentTypeJSON, []byte(`{"stream":"a","data":1}`))
	if r.status != 503 || r.header.Get("Retry-After") != "1" || !strings.Contains(r.err, "outbox: closed") {
		t.Errorf("closed outbox: %d %q Retry-After %q, want 503 naming it", r.status, r.err, r.header.Get("Retry-After"))
	}
	if m.Rejected(ReasonUnavailable) != 1 {
		t.Errorf("rejected unavailable %d, want 1", m.Rejected(ReasonUnavailable))
	}
}

// appenderFunc adapts a function to Appender.
type appenderFunc func(ctx context.Context, recs []outbox.Record, src *outbox.SourcePosition) (outbox.Seq, outbox.Seq, error)

func (f appenderFunc) AppendWithSource(ctx context.Context, recs []outbox.Record, src *outbox.SourcePosition) (outbox.Seq, outbox.Seq, error) {
	return f(ctx, recs, src)
}

func TestHandlerAppendErrors(t *testing.T) {
	tests := []struct {
		err    error
		status int
		reason string
	}{
		{fmt.Errorf("wrapped: %w", outbox.ErrFailed), 503, ReasonUnavailable},
		{outbox.ErrTooLarge, 413, ReasonTooLarge},
		{fmt.Errorf("%w: record 0", outbox.ErrRecordTooLarge), 413, ReasonTooLarge},
		{&outbox.FullError{Reason: "disk"}, 503, ReasonFull},
		{errors.New("something else"), 500, ReasonUnavailable},
	}
	for _, tt := range tests {
		m := new(Metrics)
		h := NewHandler(HTTPConfig{}, appenderFunc(func(context.Context, []outbox.Record, *outbox.SourcePosition) (outbox.Seq, outbox.Seq, error) {
			return 0, 0, tt.err
		}), m, quiet())
		r := post(t, h, "POST", RecordsPath, ContentTypeJSON, []byte(`{"stream":"a","data":1}`))
		if r.status != tt.status || m.Rejected(tt.reason) != 1 || !strings.Contains(r.err, tt.err.Error()) {
			t.Errorf("%v: %d %q (%s %d), want %d %s", tt.err, r.status, r.err, tt.reason, m.Rejected(tt.reason), tt.status, tt.reason)
		}
		if m.Accepted.Load() != 0 || m.CaptureToDurable.Count() != 0 {
			t.Errorf("%v: counted as accepted", tt.err)
		}
	}
}

func TestHandlerToken(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("  s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ob := openOutbox(t, "", outbox.Options{})
	m := new(Metrics)
	cfg := HTTPConfig{TokenFile: tokenFile}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	h := NewHandler(cfg, ob, m, quiet())
	body := []byte(`{"stream":"a","data":1}`)
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer s3cret-toke", "Bearer s3cret-token2", "Basic s3cret-token", "s3cret-token"} {
		var hdr []string
		if auth != "" {
			hdr = []string{"Authorization", auth}
		}
		r := post(t, h, "POST", RecordsPath, ContentTypeJSON, body, hdr...)
		if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %q: %d, want 401 with WWW-Authenticate", auth, r.status)
		}
	}
	// Unauthenticated requests learn nothing else.
	if r := post(t, h, "GET", "/elsewhere", "", nil); r.status != 401 {
		t.Errorf("GET elsewhere without token: %d, want 401", r.status)
	}
	for _, auth := range []string{"Bearer s3cret-token", "bearer s3cret-token", "Bearer  s3cret-token "} {
		if r := post(t, h, "POST", RecordsPath, ContentTypeJSON, body, "Authorization", auth); r.status != 200 {
			t.Errorf("Authorization %q: %d %s, want 200", auth, r.status, r.body)
		}
	}
	if m.Rejected(ReasonUnauthorized) != 9 || ob.Stats().Head != 3 {
		t.Errorf("unauthorized %d head %d, want 9 and 3", m.Rejected(ReasonUnauthorized), ob.Stats().Head)
	}

	// A token file that cannot be read refuses everything (fail closed), and
	// Validate names it.
	bad := HTTPConfig{TokenFile: filepath.Join(dir, "missing")}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "ingest.token_file") {
		t.Errorf("Validate with a missing token file: %v", err)
	}
	hb := NewHandler(bad, ob, nil, quiet())
	if r := post(t, hb, "POST", RecordsPath, ContentTypeJSON, body, "Authorization", "Bearer s3cret-token"); r.status != 503 {
		t.Errorf("missing token file: %d, want 503", r.status)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if err := (&HTTPConfig{TokenFile: empty}).Validate(); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("Validate with an empty token file: %v", err)
	}
}

func TestHTTPConfig(t *testing.T) {
	var c HTTPConfig
	if err := c.Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	c.EnsureDefaults()
	if c.MaxRequestBytes != 16<<20 || c.BlockTimeout != 2*time.Second || c.RetryAfter != time.Second {
		t.Errorf("defaults: %+v", c)
	}
	bad := HTTPConfig{MaxRequestBytes: 10, BlockTimeout: -1, RetryAfter: -1}
	err := bad.Validate()
	for _, key := range []string{"ingest.max_request_bytes", "ingest.block_timeout", "ingest.retry_after"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate: %v, want it to name %s", err, key)
		}
	}
}

// TestHandlerConcurrent posts from many clients over real HTTP: every record
// is stored once, with its own data, and the answers' ranges tile the
// sequence (pooled buffers are never shared between requests).
func TestHandlerConcurrent(t *testing.T) {
	ob := openOutbox(t, "", outbox.Options{})
	m := new(Metrics)
	srv := httptest.NewServer(NewHandler(HTTPConfig{}, ob, m, quiet()))
	defer srv.Close()
	const clients, requests, per = 8, 40, 25
	var mu sync.Mutex
	seqOf := map[string]outbox.Seq{}
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < requests; r++ {
				var b bytes.Buffer
				for i := 0; i < per; i++ {
					fmt.Fprintf(&b, `{"stream":"s%d","key":"c%d-r%d-i%d","data":{"c":%d,"r":%d,"i":%d,"pad":"%s"}}`+"\n",
						c, c, r, i, c, r, i, strings.Repeat("p", (c*7+r*3+i)%200))
				}
				ct := ContentTypeNDJSON
				if r%2 == 1 {
					ct = ContentTypeCBOR
					recs, err := Parse(ContentTypeNDJSON, b.Bytes(), time.Now())
					if err != nil {
						t.Error(err)
						return
					}
					b.Reset()
					b.Write(toCBORBody(recs))
				}
				resp, err := srv.Client().Post(srv.URL+RecordsPath, ct, &b)
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				rp := decodeReply(t, resp.StatusCode, resp.Header, body)
				if rp.status != 200 || rp.last-rp.first+1 != per {
					t.Errorf("client %d request %d: %d %s", c, r, rp.status, body)
					return
				}
				mu.Lock()
				for i := 0; i < per; i++ {
					seqOf[fmt.Sprintf("c%d-r%d-i%d", c, r, i)] = outbox.Seq(rp.first) + outbox.Seq(i)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	all := readAll(t, ob)
	if len(all) != clients*requests*per {
		t.Fatalf("outbox holds %d records, want %d", len(all), clients*requests*per)
	}
	for _, rec := range all {
		var c, r, i int
		if _, err := fmt.Sscanf(rec.Key, "c%d-r%d-i%d", &c, &r, &i); err != nil {
			t.Fatalf("key %q: %v", rec.Key, err)
		}
		if seqOf[rec.Key] != rec.Seq {
			t.Errorf("%s: stored at %d, answered %d", rec.Key, rec.Seq, seqOf[rec.Key])
		}
		want := fmt.Sprintf(`{"c":%d,"r":%d,"i":%d,"pad":"%s"}`, c, r, i, strings.Repeat("p", (c*7+r*3+i)%200))
		if j, _ := jsoncbor.ToJSON(nil, rec.Data); string(j) != want || rec.Stream != fmt.Sprintf("s%d", c) {
			t.Errorf("%s: %s %s, want %s", rec.Key, rec.Stream, j, want)
		}
	}
	if m.Accepted.Load() != uint64(len(all)) {
		t.Errorf("accepted %d, want %d", m.Accepted.Load(), len(all))
	}
}

// toCBORBody writes records as a CBOR request (an array of maps).
func toCBORBody(recs []outbox.Record) []byte {
	b := appendCBORHead(nil, majArray, uint64(len(recs)))
	for _, r := range recs {
		b = appendCBORHead(b, majMap, 3)
		b = cb2(b, "stream", r.Stream)
		b = cb2(b, "key", r.Key)
		b = appendCBORHead(b, majText, 4)
		b = append(b, "data"...)
		b = append(b, r.Data...)
	}
	return b
}

func cb2(b []byte, k, v string) []byte {
	b = appendCBORHead(b, majText, uint64(len(k)))
	b = append(b, k...)
	b = appendCBORHead(b, majText, uint64(len(v)))
	return append(b, v...)
}

// TestHandlerLogsRarely: a flood of bad requests logs once per kind a minute.
func TestHandlerLogsRarely(t *testing.T) {
	ch := new(countingHandler)
	h := NewHandler(HTTPConfig{}, appenderFunc(func(context.Context, []outbox.Record, *outbox.SourcePosition) (outbox.Seq, outbox.Seq, error) {
		return 1, 1, nil
	}), nil, slog.New(ch))
	for i := 0; i < 500; i++ {
		post(t, h, "POST", RecordsPath, ContentTypeJSON, []byte(`{"stream":"a b","data":1}`))
		post(t, h, "POST", RecordsPath, "text/plain", []byte(`x`))
		post(t, h, "POST", RecordsPath, ContentTypeJSON, []byte(`{"stream":"a","data":1}`))
	}
	if n := ch.count(); n != 2 {
		t.Errorf("%d log lines for 1000 bad requests of 2 kinds and 500 good ones, want 2", n)
	}
}

func TestListen(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ln.Addr().(*net.TCPAddr); !ok {
		t.Errorf("tcp listener on %v", ln.Addr())
	}
	ln.Close()

	dir := t.TempDir()
	sock := filepath.Join(dir, "ingest.sock")
	ln, err = Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket %v mode %v, want a socket with 0660", err, fi.Mode())
	}
	// Serve the handler on it and post through it.
	ob := openOutbox(t, "", outbox.Options{})
	srv := &http.Server{Handler: NewHandler(HTTPConfig{}, ob, nil, quiet()), ReadHeaderTimeout: time.Second}
	go srv.Serve(ln)
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := client.Post("http://unix"+RecordsPath, ContentTypeJSON, strings.NewReader(`{"stream":"a","data":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("post over the unix socket: %d", resp.StatusCode)
	}
	client.CloseIdleConnections()

	// A socket in use is not taken over.
	if _, err := Listen("unix:" + sock); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Listen on a socket in use: %v", err)
	}
	srv.Close()

	// A stale socket (its process died) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("the stale socket is gone: %v", err)
	}
	ln, err = Listen("unix:" + stale)
	if err != nil {
		t.Fatalf("Listen on a stale socket: %v", err)
	}
	ln.Close()

	// A regular file is never removed.
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("keep"), 0o600)
	if _, err := Listen("unix:" + regular); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a regular file: %v", err)
	}
	if b, _ := os.ReadFile(regular); string(b) != "keep" {
		t.Errorf("the regular file was touched")
	}
	if _, err := Listen("unix:"); err == nil {
		t.Errorf("Listen(unix:) succeeded")
	}
}

// TestHandlerUnknownLength: a body without Content-Length (chunked) is read
// whole, however it is split.
func TestHandlerUnknownLength(t *testing.T) {
	ob := openOutbox(t, "", outbox.Options{})
	h := NewHandler(HTTPConfig{}, ob, nil, quiet())
	var b strings.Builder
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&b, `{"stream":"a","key":"k%d","data":%d}`+"\n", i, i)
	}
	req := httptest.NewRequest("POST", RecordsPath, io.MultiReader(strings.NewReader(b.String()[:1000]), strings.NewReader(b.String()[1000:])))
	req.ContentLength = -1
	req.Header.Set("Content-Type", ContentTypeNDJSON)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := decodeReply(t, rec.Code, rec.Header(), rec.Body.Bytes())
	if r.status != 200 || r.first != 1 || r.last != 3000 {
		t.Fatalf("%d %s, want 200 with 3000 records", r.status, r.body)
	}
	got := readAll(t, ob)
	if len(got) != 3000 || got[2999].Key != "k2999" || recJSON(t, got[2999]) != "2999" {
		t.Errorf("stored %d records, last %+v", len(got), got[len(got)-1])
	}
}
