//go:build race

package hints

// raceDetector: the race detector makes every table access some 30 times
// slower, so the longest loops run shorter under it.
const raceDetector = true
