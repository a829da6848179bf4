//go:build race

package jsoncbor

// raceEnabled: the race detector makes sync.Pool drop items at random.
const raceEnabled = true
