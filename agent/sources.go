package agent

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/edgesync/edgesync/capture"
)

// startSources starts the local MQTT and file sources.
func (a *Agent) startSources(ctx context.Context, g *errgroup.Group) error {
	for i, sc := range a.cfg.Sources.MQTT {
		src, err := capture.NewMQTTSource(sc, a.ob, a.capture, a.log.With("source", fmt.Sprintf("mqtt[%d]", i)))
		if err != nil {
			return fmt.Errorf("sources.mqtt[%d]: %w", i, err)
		}
		g.Go(func() error { return src.Run(ctx) })
	}
	for i, fc := range a.cfg.Sources.Files {
		src, err := capture.NewFileSource(fc, a.ob, a.ob, a.capture, a.log.With("source", fmt.Sprintf("files[%d]", i)))
		if err != nil {
			return fmt.Errorf("sources.files[%d]: %w", i, err)
		}
		g.Go(func() error { return src.Run(ctx) })
	}
	return nil
}
