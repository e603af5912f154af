// Package backoff is the one retry backoff of the module: capped
// exponential waits with jitter, and a sleep that ends with its context.
// The workers, the Elasticsearch handler and the binary's clients all use
// it.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a capped exponential backoff with jitter. The first wait is
// about Min; each further one doubles, up to Max. Jitter picks each wait
// uniformly in [d/2, d], so that workers failing together do not retry in
// step. The zero Backoff waits 0. A Backoff belongs to one goroutine.
type Backoff struct {
	Min, Max time.Duration
	n        int
}

// New returns a Backoff from lo to hi (hi is raised to lo when lower).
func New(lo, hi time.Duration) Backoff { return Backoff{Min: lo, Max: hi} }

// Next returns the wait before the next retry and counts the attempt.
func (b *Backoff) Next() time.Duration {
	d := Nth(b.Min, b.Max, b.n)
	b.n++
	return d
}

// Attempts returns how many waits Next has given since the last Reset.
func (b *Backoff) Attempts() int { return b.n }

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Nth returns the wait before retry n (from 0): lo doubled n times,
// capped at hi, with jitter over its upper half.
func Nth(lo, hi time.Duration, n int) time.Duration {
	hi = max(hi, lo)
	d := lo
	for i := 0; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits for d or until ctx ends, and reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
