package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeConfig loads the configuration the README shows for the
// worker, with the repository's examples next to it as they are in a
// checkout: it is valid, and its mapping file exists and is read.
func TestReadmeConfig(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## The sync worker")
	if !ok {
		t.Fatal("README.md has no section on the sync worker")
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	if !ok {
		t.Fatal("README.md shows no worker configuration")
	}
	block, _, _ = strings.Cut(block, "```")
	dir := t.TempDir()
	examples, err := filepath.Abs(filepath.Join("..", "..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(examples, filepath.Join(dir, "examples")); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, dir, "redstream.yaml", block)
	cfg, err := loadConfig(path, noEnv)
	if err != nil {
		t.Fatalf("the README's configuration:\n%s\ndoes not load: %v", block, err)
	}
	for _, s := range cfg.Streams {
		if s.Mapping != "" && len(s.mapping) == 0 {
			t.Errorf("stream %s: mapping %s not read", s.Name, s.Mapping)
		}
	}
}
