package redstream_test

import (
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
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("gorm.io/gorm/internal/lru.NewLRU[...].func1"),
	)
}
