//go:build !unix

package estest

import "time"

// cpuTime is not measured here; the cpu-ns/doc metric reads 0.
func cpuTime() time.Duration { return 0 }
