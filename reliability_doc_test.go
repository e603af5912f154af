package redstream_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReliabilityTableNamesRealTests keeps docs/RELIABILITY.md honest:
// every test its guarantee table names exists in the module, and every
// row names at least one.
func TestReliabilityTableNamesRealTests(t *testing.T) {
	doc, err := os.ReadFile("docs/RELIABILITY.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start := strings.Index(text, "## Guarantees and the tests that prove them")
	if start < 0 {
		t.Fatal("docs/RELIABILITY.md has no guarantee table")
	}
	section := text[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}

	defined := map[string]bool{}
	funcRE := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range funcRE.FindAllStringSubmatch(string(src), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	nameRE := regexp.MustCompile("`(Test\\w+)")
	rows := 0
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| **") {
			continue
		}
		rows++
		names := nameRE.FindAllStringSubmatch(line, -1)
		if len(names) == 0 {
			t.Errorf("row names no test: %.80s", line)
		}
		for _, m := range names {
			if !defined[m[1]] {
				t.Errorf("%s is named in docs/RELIABILITY.md but defined in no test file", m[1])
			}
		}
	}
	if rows < 10 {
		t.Fatalf("found %d guarantee rows, want the whole table", rows)
	}
}
