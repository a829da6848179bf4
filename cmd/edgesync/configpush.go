//go:build !nosink

package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"gopkg.in/yaml.v3"

	"github.com/edgesync/edgesync/apply"
	"github.com/edgesync/edgesync/internal/mqttx"
	"github.com/edgesync/edgesync/resync"
	"github.com/edgesync/edgesync/transport/wire"
)

func init() {
	register(command{name: "config push", summary: "publish a versioned (and, with a key, signed) remote configuration", run: runConfigPush})
}

func runConfigPush(args []string) int {
	fs := newFlags("config push", "publish a versioned (and, with --key, signed) remote configuration, retained, for one device or the fleet",
		"config push --config SINKFILE --device ID --file CFG [--key KEYFILE] [--version N] [--wait 15s]")
	configPath := fs.String("config", "", "the sink's configuration file (for the broker and topic prefix)")
	device := fs.String("device", "", `the device id, or "_fleet" for every device`)
	file := fs.String("file", "", "YAML with the agent configuration keys to override")
	keyFile := fs.String("key", "", "ed25519 private key (edgesync keygen) to sign with")
	version := fs.Uint64("version", 0, "configuration version; default: one above the version published now")
	wait := fs.Duration("wait", 15*time.Second, "how long to wait for the device's config status (0: do not wait)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !requireFlag("config", *configPath) || !requireFlag("device", *device) || !requireFlag("file", *file) {
		return exitUsage
	}
	fleet := *device == wire.FleetID
	if !fleet && !wire.ValidDeviceID(*device) {
		fmt.Fprintf(os.Stderr, "edgesync config push: --device: %q is not a device id (or _fleet)\n", *device)
		return exitUsage
	}
	cfg, err := apply.LoadSinkConfig(*configPath)
	if err != nil {
		return configError(err)
	}
	body, err := os.ReadFile(*file)
	if err != nil {
		return exitFor(err)
	}
	var probe map[string]any
	if err := yaml.Unmarshal(body, &probe); err != nil {
		fmt.Fprintf(os.Stderr, "edgesync config push: --file: not YAML: %v\n", err)
		return exitUsage
	}
	topic := wire.ConfigTopic(cfg.TopicPrefix, *device)
	if fleet {
		topic = wire.FleetConfigTopic(cfg.TopicPrefix)
	}
	b := cfg.Broker
	b.ClientID = fmt.Sprintf("edgesync-config-push-%d", time.Now().UnixNano())
	conn, err := mqttx.New(b, mqttx.Options{ClientID: b.ClientID, CleanSession: true, Logger: quietLogger()})
	if err != nil {
		return exitFor(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+*wait)
	defer cancel()
	client := conn.Client()
	if err := mqttx.WaitToken(ctx, client.Connect(), 15*time.Second); err != nil {
		return exitFor(fmt.Errorf("connect to %s: %w", b.URL, err))
	}
	defer client.Disconnect(250)

	// The version now published (retained), to go one above it.
	current := make(chan *wire.Config, 1)
	_ = mqttx.WaitToken(ctx, client.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		if c, err := wire.DecodeConfig(m.Payload()); err == nil {
			select {
			case current <- c:
			default:
			}
		}
	}), 10*time.Second)
	var prev uint64
	select {
	case c := <-current:
		prev = c.Version
	case <-time.After(time.Second):
	}
	v := *version
	if v == 0 {
		v = prev + 1
	} else if v <= prev {
		fmt.Fprintf(os.Stderr, "edgesync config push: --version %d is not above the published version %d; devices would ignore it\n", v, prev)
		return exitUsage
	}
	msg := &wire.Config{V: wire.Version, Target: *device, Version: v, Body: body, IssuedAt: time.Now().UnixNano()}
	if *keyFile != "" {
		key, err := resync.LoadPrivateKey(*keyFile)
		if err != nil {
			return exitFor(err)
		}
		if err := msg.Sign(key, wire.KeyIDOf(key.Public().(ed25519.PublicKey))); err != nil {
			return exitFor(err)
		}
	}
	payload, err := wire.EncodeConfig(nil, msg)
	if err != nil {
		return exitFor(err)
	}
	// Watch the device's status before publishing, so that no answer is missed.
	statuses := make(chan *wire.ConfigStatus, 16)
	if !fleet && *wait > 0 {
		_ = mqttx.WaitToken(ctx, client.Subscribe(wire.ConfigStatusTopic(cfg.TopicPrefix, *device), 1, func(_ mqtt.Client, m mqtt.Message) {
			if s, err := wire.DecodeConfigStatus(m.Payload()); err == nil {
				select {
				case statuses <- s:
				default:
				}
			}
		}), 10*time.Second)
	}
	if err := mqttx.WaitToken(ctx, client.Publish(topic, 1, true, payload), 15*time.Second); err != nil {
		return exitFor(fmt.Errorf("publish: %w", err))
	}
	signed := "unsigned"
	if len(msg.Signature) > 0 {
		signed = "signed by key " + msg.KeyID
	}
	fmt.Printf("published %s version %d (%s) on %s\n", *device, v, signed, topic)
	if fleet || *wait == 0 {
		return exitOK
	}
	deadline := time.After(*wait)
	for {
		select {
		case s := <-statuses:
			if s.Version != v {
				continue // an older, retained status
			}
			if s.Applied {
				fmt.Printf("%s applied version %d\n", *device, v)
				return exitOK
			}
			fmt.Fprintf(os.Stderr, "%s refused version %d: %s\n", *device, v, s.Error)
			return exitFailure
		case <-deadline:
			fmt.Printf("no answer from %s within %v (offline? it applies the retained configuration when it connects)\n", *device, *wait)
			return exitOK
		}
	}
}
