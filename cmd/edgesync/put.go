package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/edgesync/edgesync/agent"
)

func init() {
	register(command{name: "put", summary: "send records to the running agent: one JSON object, or NDJSON on stdin", run: runPut})
}

func runPut(args []string) int {
	fs := newFlags("put", "send records to the running agent's ingest API: one JSON object (--data or stdin), or NDJSON on stdin",
		"put --config FILE [--stream S] [--key K] [--schema NAME@V] [--data JSON] < records.ndjson")
	configPath := fs.String("config", "", "the agent's configuration file (YAML)")
	stream := fs.String("stream", "", "stream for records that have none")
	key := fs.String("key", "", "key for records that have none")
	schema := fs.String("schema", "", "schema (NAME@VERSION) for records that have none")
	data := fs.String("data", "", "one record as JSON (instead of stdin)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, code := loadAgentConfig(*configPath)
	if cfg == nil {
		return code
	}
	var in io.Reader = os.Stdin
	if *data != "" {
		in = strings.NewReader(*data)
	}
	body, n, err := fillDefaults(in, *stream, *key, *schema)
	if err != nil {
		fmt.Fprintln(os.Stderr, "edgesync put:", err)
		return exitUsage
	}
	if n == 0 {
		fmt.Fprintln(os.Stderr, "edgesync put: no records on the input")
		return exitUsage
	}
	client, url := ingestClient(cfg)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	if cfg.Ingest.TokenFile != "" {
		tok, err := os.ReadFile(cfg.Ingest.TokenFile)
		if err != nil {
			return exitFor(fmt.Errorf("ingest.token_file: %w", err))
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := client.Do(req)
	if err != nil {
		return exitFor(fmt.Errorf("put: is the agent running? %w", err))
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "edgesync put: %s: %s", resp.Status, out)
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return exitUsage
		}
		return exitFailure
	}
	os.Stdout.Write(out)
	return exitOK
}

// ingestClient talks to the ingest listener, or to the control socket when
// ingest.listen is "" (the control socket serves /v1/records too).
func ingestClient(cfg *agent.Config) (*http.Client, string) {
	l := cfg.Ingest.Listen
	switch {
	case l == "":
		return agent.ControlClient(cfg.Control.Socket, 60*time.Second), "http://agent/v1/records"
	case strings.HasPrefix(l, "unix:"):
		return agent.ControlClient(strings.TrimPrefix(l, "unix:"), 60*time.Second), "http://agent/v1/records"
	}
	host := l
	if strings.HasPrefix(host, ":") || strings.HasPrefix(host, "0.0.0.0:") || strings.HasPrefix(host, "[::]:") {
		host = "127.0.0.1" + host[strings.LastIndex(host, ":"):]
	}
	return &http.Client{Timeout: 60 * time.Second}, "http://" + host + "/v1/records"
}

// fillDefaults reads one JSON object or NDJSON and fills missing stream, key
// and schema. It returns NDJSON.
func fillDefaults(in io.Reader, stream, key, schema string) ([]byte, int, error) {
	raw, err := io.ReadAll(in)
	if err != nil {
		return nil, 0, err
	}
	var out bytes.Buffer
	n := 0
	add := func(obj map[string]json.RawMessage, where string) error {
		for k, v := range map[string]string{"stream": stream, "key": key, "schema": schema} {
			if _, ok := obj[k]; !ok && v != "" {
				b, _ := json.Marshal(v)
				obj[k] = b
			}
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		out.Write(b)
		out.WriteByte('\n')
		n++
		return nil
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var arr []map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &arr); err != nil {
			return nil, 0, fmt.Errorf("input: %w", err)
		}
		for i, o := range arr {
			if err := add(o, fmt.Sprintf("records[%d]", i)); err != nil {
				return nil, 0, err
			}
		}
		return out.Bytes(), n, nil
	}
	// One object (possibly spread over lines) or NDJSON.
	var one map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &one); err == nil {
		if err := add(one, "input"); err != nil {
			return nil, 0, err
		}
		return out.Bytes(), n, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		l := bytes.TrimSpace(sc.Bytes())
		if len(l) == 0 {
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(l, &obj); err != nil {
			return nil, 0, fmt.Errorf("line %d: not a JSON object: %w", line, err)
		}
		if err := add(obj, fmt.Sprintf("line %d", line)); err != nil {
			return nil, 0, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	return out.Bytes(), n, nil
}
