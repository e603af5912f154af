//go:build !unix

package elastic_test

import "time"

// cpuTime is not measured here; the cpu-ns/msg metric reads 0.
func cpuTime() time.Duration { return 0 }
