//go:build !race

package hints

const raceDetector = false
