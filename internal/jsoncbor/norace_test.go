//go:build !race

package jsoncbor

const raceEnabled = false
