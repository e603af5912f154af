package main

import (
	"os"
	"testing"
	"time"
)

// FuzzParseConfig: no configuration file, however broken, makes loading
// or validating panic; it is accepted or refused with problems.
func FuzzParseConfig(f *testing.F) {
	for _, path := range []string{"../../testdata/redstream.example.yaml", "../../examples/products/redstream.yaml"} {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{"", "streams: []", "streams: [{name: x}]", "redis: {url: 1}", "a: [", "---\n---\n"} {
		f.Add([]byte(s))
	}
	noEnv := func(string) string { return "" }
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			cfg, err := parseConfig(data)
			if err != nil {
				return
			}
			cfg.dir = dir
			cfg.applyEnv(noEnv)
			_ = cfg.validate()
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("loading the config did not finish in 2 s:\n%s", data)
		}
	})
}
