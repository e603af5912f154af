package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = ""

// buildInfo is what the binary knows about its own build.
type buildInfo struct {
	version  string // see buildVersion
	revision string // vcs.revision: the commit built from; "" when not recorded
	time     string // vcs.time: that commit's time (RFC 3339)
	modified bool   // vcs.modified: the work tree had uncommitted changes
	goVer    string
}

// readBuildInfo returns the build's version and VCS stamp, from
// main.version and runtime/debug.ReadBuildInfo.
//
// The version is main.version when set; else the module version the
// binary was built from: v1.2.3 for go install …@v1.2.3, and for a build
// in a checkout (Go 1.24 and later) the tag or a pseudo-version made of
// the commit's time and hash, +dirty with uncommitted changes; else
// "devel". The revision is recorded by go build in a git checkout unless
// -buildvcs=false (or GOFLAGS=-buildvcs=false) is in effect, or the
// checkout is a linked worktree (git worktree add), whose .git is a file
// that go build does not recognise (golang/go#58218).
func readBuildInfo() buildInfo {
	b := buildInfo{version: version, goVer: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if b.version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.revision = s.Value
			case "vcs.time":
				b.time = s.Value
			case "vcs.modified":
				b.modified = s.Value == "true"
			}
		}
	}
	if b.version == "" {
		b.version = "devel"
	}
	return b
}

// buildVersion returns the version for logs and metrics labels: the
// version of readBuildInfo, or for a "devel" build with a VCS stamp,
// devel-<first 12 digits of the revision>, +dirty when modified.
func buildVersion() string {
	b := readBuildInfo()
	if b.version != "devel" || b.revision == "" {
		return b.version
	}
	v := "devel-" + b.revision[:min(12, len(b.revision))]
	if b.modified {
		v += "+dirty"
	}
	return v
}

// print writes the version line, then the revision and the commit time
// when the build recorded them:
//
//	redstream v1.2.3 go1.26.8 linux/amd64
//	revision 87b5b0c50b3ab89f54c78026ce9e54274a1055dd (modified)
//	committed 2026-12-03T04:07:00Z
func (b buildInfo) print(w io.Writer) {
	fmt.Fprintf(w, "redstream %s %s %s/%s\n", b.version, b.goVer, runtime.GOOS, runtime.GOARCH)
	if b.revision == "" {
		if b.version == "devel" {
			fmt.Fprintln(w, "no module version or VCS revision in the build info: build in a git checkout, without -buildvcs=false, to record the revision (Go records none in a linked worktree: golang/go#58218)")
		}
		return
	}
	mod := ""
	if b.modified {
		mod = " (modified: uncommitted changes were built)"
	}
	fmt.Fprintf(w, "revision %s%s\n", b.revision, mod)
	if b.time != "" {
		fmt.Fprintf(w, "committed %s\n", b.time)
	}
}

func runVersion(_ context.Context, e *env, args []string) int {
	fs := e.flagSet("version", "")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	readBuildInfo().print(e.stdout)
	return exitOK
}
