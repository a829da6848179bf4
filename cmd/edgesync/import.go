//go:build !nosink

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/edgesync/edgesync/internal/atomicfile"
	"github.com/edgesync/edgesync/resync"
	"github.com/edgesync/edgesync/transport/wire"
)

func init() {
	register(command{name: "import", summary: "apply resync bundles at the sink, idempotently; write a signed receipt", run: runImport})
}

func runImport(args []string) int {
	fs := newFlags("import", "apply resync bundles at the sink, idempotently, and write a signed receipt that can travel back",
		"import --config SINKFILE [--receipt PATH] BUNDLE...")
	configPath := fs.String("config", "", "the sink's configuration file (YAML)")
	receiptPath := fs.String("receipt", "", "where to write the receipt (default: BUNDLE.receipt next to each bundle)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !requireFlag("config", *configPath) {
		return exitUsage
	}
	bundles := fs.Args()
	if len(bundles) == 0 {
		fmt.Fprintln(os.Stderr, "edgesync import: name at least one bundle")
		return exitUsage
	}
	if *receiptPath != "" && len(bundles) > 1 {
		fmt.Fprintln(os.Stderr, "edgesync import: --receipt names one file; with several bundles each gets BUNDLE.receipt")
		return exitUsage
	}
	ctx := context.Background()
	cfg, store, code := openSinkStore(ctx, *configPath)
	if store == nil {
		return code
	}
	defer store.Close()
	var key []byte
	if cfg.Resync.KeyFile != "" {
		k, err := resync.LoadPrivateKey(cfg.Resync.KeyFile)
		if err != nil {
			return configError(fmt.Errorf("config: resync.key_file: %w", err))
		}
		key = k
	}
	policy := cfg.Policy
	failed := false
	for _, path := range bundles {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "edgesync import:", err)
			failed = true
			continue
		}
		res, err := resync.Import(f, func(device string, b *wire.Batch) (uint64, uint8, error) {
			r, err := store.Apply(ctx, device, b, &policy)
			if err != nil {
				return 0, 0, err
			}
			return r.AppliedThrough, r.Status, nil
		})
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "edgesync import: %s: %v\n", path, err)
			failed = true
			continue
		}
		fmt.Printf("%s: device %s epoch %d: %d records in %d batches; applied through %d (%s)\n",
			path, res.Device, res.Epoch, res.Records, res.Batches, res.AppliedThrough, resync.StatusName(res.Status))
		if key == nil {
			fmt.Println("  no receipt: set resync.key_file in the sink configuration to sign receipts")
			continue
		}
		rc := res.Receipt(cfg.SinkID, time.Now())
		if err := resync.SignReceipt(rc, key); err != nil {
			return exitFor(err)
		}
		b, err := resync.EncodeReceipt(rc)
		if err != nil {
			return exitFor(err)
		}
		out := *receiptPath
		if out == "" {
			out = path + ".receipt"
		}
		if err := atomicfile.Write(out, 0o644, func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
			return exitFor(err)
		}
		fmt.Printf("  receipt: %s (carry it back and run: edgesync ack-import --config FILE %s)\n", out, out)
	}
	if failed {
		return exitFailure
	}
	return exitOK
}
