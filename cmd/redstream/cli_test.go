package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVersion prints the version from the build: --version is the version
// command; a binary built in a git checkout names its module version (the
// tag or a pseudo-version), the revision it was built from and that
// commit's time; -ldflags -X main.version sets the version.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		if r := runBin(t, nil, args...); r.code != 0 || !strings.HasPrefix(r.stdout, "redstream ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}

	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD (the test runs in a git checkout): %v", err)
	}
	head := strings.TrimSpace(string(rev))
	// In a linked worktree go build records no VCS stamp (golang/go#58218):
	// the binary must say so, and how to get one.
	dirs, err := exec.Command("git", "rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir").Output()
	if err != nil {
		t.Fatalf("git rev-parse --path-format=absolute --git-dir --git-common-dir: %v", err)
	}
	d := strings.Fields(string(dirs))
	linked := len(d) == 2 && d[0] != d[1]
	dir := t.TempDir()
	for _, c := range []struct {
		name    string
		flags   []string
		version func(string) bool
	}{
		{"checkout", nil, func(v string) bool { return v != "devel" && strings.HasPrefix(v, "v") }},
		{"ldflags", []string{"-ldflags", "-X main.version=v1.2.3-test"}, func(v string) bool { return v == "v1.2.3-test" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			exe := filepath.Join(dir, c.name)
			// -buildvcs=true: stamped even when GOFLAGS says otherwise.
			args := append(append([]string{"build", "-buildvcs=true"}, c.flags...), "-o", exe, ".")
			if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
				t.Fatalf("go %v: %v\n%s", args, err, out)
			}
			out, err := exec.Command(exe, "version").Output()
			if err != nil {
				t.Fatalf("version: %v", err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if linked {
				f := strings.Fields(lines[0])
				hinted := len(lines) == 2 && strings.Contains(lines[1], "linked worktree")
				if c.name == "ldflags" {
					hinted = len(lines) == 1
				}
				if len(f) != 4 || !c.version(f[1]) && f[1] != "devel" || !hinted {
					t.Errorf("built in a linked worktree, version printed:\n%s", out)
				}
				return
			}
			if len(lines) < 3 {
				t.Fatalf("version printed %d lines, want 3:\n%s", len(lines), out)
			}
			f := strings.Fields(lines[0])
			if len(f) != 4 || f[0] != "redstream" || !c.version(f[1]) || !strings.HasPrefix(f[2], "go1.") {
				t.Errorf("version line %q", lines[0])
			}
			if !strings.HasPrefix(lines[1], "revision "+head) {
				t.Errorf("revision line %q, want revision %s", lines[1], head)
			}
			if committed, ok := strings.CutPrefix(lines[2], "committed "); !ok {
				t.Errorf("commit time line %q", lines[2])
			} else if _, err := time.Parse(time.RFC3339, committed); err != nil {
				t.Errorf("commit time %q: %v", committed, err)
			}
		})
	}
}

// TestArguments: every command refuses words after its flags (exit 2,
// naming the word) rather than ignoring them, and -h lists flags only for
// a command that has some.
func TestArguments(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"worker", "extra"},
		{"status", "--json", "extra"},
		{"backfill", "--stream", "products", "extra", "--restart"},
		{"verify", "--stream", "products", "repair"},
		{"dlq", "list", "--stream", "products", "extra"},
		{"dlq", "replay", "--all", "extra"},
		{"dlq", "drop", "--all", "extra"},
		{"version", "extra"},
		{"--version", "extra"},
	} {
		r := runBin(t, nil, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, `unexpected argument "`) {
			t.Errorf("%v: exit %d, stderr %q; want %d and the argument named", args, r.code, r.stderr, exitUsage)
		}
	}
	r := runBin(t, nil, "version", "-h")
	if r.code != 0 || r.stderr != "Usage: redstream version\n" {
		t.Errorf("version -h: exit %d, stderr %q; want the usage line alone", r.code, r.stderr)
	}
	r = runBin(t, nil, "status", "-h")
	if r.code != 0 || !strings.Contains(r.stderr, "Flags:\n  -config file") {
		t.Errorf("status -h: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestRedisUnreachableOutput: when Redis does not answer, the output is
// ours, one line with the error; go-redis's own lines about its pool go to
// our log at debug level.
func TestRedisUnreachableOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vars := map[string]string{"REDIS_URL": "redis://" + freeAddr(t) + "/0"}
	path := writeFile(t, dir, "info.yaml", validConfig+validStream)
	r := runBin(t, vars, "status", "--config", path)
	if r.code != exitFailure {
		t.Fatalf("status: exit %d, want %d\n%s", r.code, exitFailure, r.stderr)
	}
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 ||
		!strings.HasPrefix(lines[0], "redstream: connect to Redis: ") || !strings.Contains(lines[0], "connection refused") {
		t.Errorf("status with Redis down: stderr %q; want one line, our error", r.stderr)
	}

	path = writeFile(t, dir, "debug.yaml", validConfig+validStream+"log:\n  level: debug\n  format: json\n")
	r = runBin(t, vars, "status", "--config", path)
	if r.code != exitFailure {
		t.Fatalf("status (debug): exit %d, want %d\n%s", r.code, exitFailure, r.stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if !strings.HasPrefix(line, `{"time":`) && !strings.HasPrefix(line, "redstream: connect to Redis: ") {
			t.Errorf("status (debug) with Redis down: a line in another format: %q", line)
		}
	}
	if !strings.Contains(r.stderr, `"level":"DEBUG","msg":"redis: connection pool: failed to dial`) ||
		!strings.Contains(r.stderr, `"logger":"go-redis"`) {
		t.Errorf("status (debug): go-redis's lines are not in the log:\n%s", r.stderr)
	}
}
