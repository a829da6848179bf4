// Package scaletest holds the end-to-end tests of horizontal scale at the
// sink: several `edgesync sink` processes in one shared subscription group
// (shared_group) on a real mosquitto, writing to one real PostgreSQL, fed by
// several `edgesync agent` processes through their ingest API.
//
// The tests prove that every record is applied exactly once while sinks are
// killed with SIGKILL, and measure what a shared group costs: records per
// second with one sink and with three, and the share of batches the agents
// had to send again. docs/SCALING.md reports the figures and the command.
//
// The package has no code outside its tests.
package scaletest
