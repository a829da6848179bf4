package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/edgesync/edgesync/agent"
	"github.com/edgesync/edgesync/internal/atomicfile"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/resync"
	"github.com/edgesync/edgesync/transport/wire"
)

func init() {
	register(command{name: "export", summary: "write a resync bundle (for a USB stick) of every unacknowledged record", run: runExport})
	register(command{name: "ack-import", summary: "on the device: verify an import receipt, then trim the outbox as if the sink had acknowledged", run: runAckImport})
	register(command{name: "keygen", summary: "create an ed25519 key pair (import receipts, signed remote configuration)", run: runKeygen})
}

func runExport(args []string) int {
	fs := newFlags("export", "write a resync bundle of every unacknowledged record; works whether the agent runs or not",
		"export --config FILE --out PATH [--from SEQ]")
	configPath := fs.String("config", "", "the agent's configuration file (YAML)")
	out := fs.String("out", "", "where to write the bundle (for example /media/usb/gw-0001.bundle)")
	from := fs.Uint64("from", 0, "export from this sequence number (records kept by outbox.retain_acked included); default: the acknowledged watermark")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !requireFlag("config", *configPath) || !requireFlag("out", *out) {
		return exitUsage
	}
	cfg, err := agent.Load(*configPath)
	if err != nil {
		return configError(err)
	}
	var sum string
	err = atomicfile.Write(*out, 0o644, func(w io.Writer) error {
		// The running agent exports through its control socket.
		c := agent.ControlClient(cfg.Control.Socket, 0)
		url := "http://agent/v1/export"
		if *from > 0 {
			url += "?from=" + strconv.FormatUint(*from, 10)
		}
		resp, err := c.Post(url, "application/json", nil)
		if err == nil {
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				return fmt.Errorf("export: the agent answered %s: %s", resp.Status, b)
			}
			n, err := io.Copy(w, resp.Body)
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			if e := resp.Trailer.Get("X-Edgesync-Error"); e != "" {
				return fmt.Errorf("export: %s", e)
			}
			sum = fmt.Sprintf("%d bytes from the running agent", n)
			return nil
		}
		// No agent: read the outbox directly.
		oo := cfg.OutboxOptions()
		oo.Logger = quietLogger()
		if _, serr := os.Stat(cfg.OutboxDir()); serr != nil {
			return fmt.Errorf("export: no outbox at %s: %v", cfg.OutboxDir(), serr)
		}
		ob, oerr := outbox.Open(cfg.OutboxDir(), oo)
		if oerr != nil {
			return oerr
		}
		defer ob.Close()
		s, xerr := resync.Export(w, ob, cfg.DeviceID, outbox.Seq(*from), cfg.ExportOptions())
		if xerr != nil {
			return xerr
		}
		sum = fmt.Sprintf("%d records (%d..%d) in %d batches, %d bytes, sha256 %s",
			s.Records, s.First, s.Last, s.Batches, s.Bytes, hex.EncodeToString(s.SHA256[:]))
		return nil
	})
	if err != nil {
		return exitFor(err)
	}
	fmt.Printf("wrote %s: %s\n", *out, sum)
	return exitOK
}

func runAckImport(args []string) int {
	fs := newFlags("ack-import", "verify an import receipt's signature, then treat it as an acknowledgement and trim the outbox",
		"ack-import --config FILE RECEIPT")
	configPath := fs.String("config", "", "the agent's configuration file (YAML)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "edgesync ack-import: name one receipt file")
		return exitUsage
	}
	cfg, code := loadAgentConfig(*configPath)
	if cfg == nil {
		return code
	}
	if len(cfg.Resync.TrustedKeys) == 0 {
		// A configuration problem, found before anything is read or opened.
		fmt.Fprintf(os.Stderr, "edgesync ack-import: config: resync.trusted_keys: empty in %s, so no receipt can be "+
			"verified; add the sink's public key (the .pub of edgesync keygen)\n", *configPath)
		return exitUsage
	}
	receipt, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return exitFor(err)
	}
	c := agent.ControlClient(cfg.Control.Socket, 30*time.Second)
	resp, err := c.Post("http://agent/v1/ack-import", "application/cbor", bytes.NewReader(receipt))
	if err == nil {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if resp.StatusCode != http.StatusOK {
			fmt.Fprintf(os.Stderr, "edgesync ack-import: %s", b)
			return exitFailure
		}
		fmt.Printf("acknowledged by the running agent: %s", b)
		return exitOK
	}
	// No agent running: open the outbox.
	oo := cfg.OutboxOptions()
	oo.Logger = quietLogger()
	ob, err := outbox.Open(cfg.OutboxDir(), oo)
	if err != nil {
		return exitFor(err)
	}
	defer ob.Close()
	res, rc, err := agent.AckImport(cfg, ob, receipt)
	if err != nil {
		return exitFor(err)
	}
	fmt.Printf("acknowledged: epoch %d through %d (sink %s); watermark now %d\n", rc.Epoch, rc.AppliedThrough, rc.SinkID, res.Watermark)
	return exitOK
}

func runKeygen(args []string) int {
	fs := newFlags("keygen", "create an ed25519 key pair: the sink signs import receipts with the private key (resync.key_file), devices trust the public key (resync.trusted_keys)",
		"keygen --out PREFIX   (writes PREFIX.key, mode 0600, and PREFIX.pub)")
	out := fs.String("out", "", "path prefix of the key files")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !requireFlag("out", *out) {
		return exitUsage
	}
	for _, p := range []string{*out + ".key", *out + ".pub"} {
		if _, err := os.Stat(p); err == nil {
			return exitFor(fmt.Errorf("keygen: %s exists; not overwriting a key", p))
		} else if !errors.Is(err, os.ErrNotExist) {
			return exitFor(err)
		}
	}
	pub, priv := resync.GenerateKey()
	if err := resync.WritePrivateKey(*out+".key", priv); err != nil {
		return exitFor(err)
	}
	if err := resync.WritePublicKey(*out+".pub", pub); err != nil {
		return exitFor(err)
	}
	fmt.Printf("wrote %s.key (private, keep it on the sink) and %s.pub (public, key id %s)\n", *out, *out, wire.KeyIDOf(pub))
	return exitOK
}
