package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNextDoublesWithJitterAndCap(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	for i, upper := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		upper *= time.Millisecond
		d := b.Next()
		if d < upper/2 || d > upper {
			t.Fatalf("wait %d = %v, want in [%v, %v]", i, d, upper/2, upper)
		}
	}
	if got := b.Attempts(); got != 6 {
		t.Fatalf("Attempts = %d, want 6", got)
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after Reset: %v, want at most Min", d)
	}
	var zero Backoff
	if d := zero.Next(); d != 0 {
		t.Fatalf("zero Backoff waits %v", d)
	}
	if d := Nth(time.Second, time.Millisecond, 3); d < 500*time.Millisecond || d > time.Second {
		t.Fatalf("max below min: %v, want about min", d)
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep with a live context reported false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep with a cancelled context reported true")
	}
	if time.Since(start) > time.Second {
		t.Fatal("Sleep did not end with its context")
	}
}
