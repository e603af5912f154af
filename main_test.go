package redstream_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaves a goroutine behind: every
// worker must stop, and release what it holds, when its context ends.
//
// GORM's prepared-statement cache (PrepareStmt mode) starts an expiry
// goroutine that it never stops, by its own design (gorm internal/lru); it
// is GORM's, not ours, and is the one exception.
func TestMain(m *testing.M) {
	if os.Getenv(killChildEnv) != "" {
		killChild() // a process TestKilledBeforePublish starts and kills
		return
	}
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("gorm.io/gorm/internal/lru.NewLRU[...].func1"),
	)
}
