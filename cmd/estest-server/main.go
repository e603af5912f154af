// Command estest-server serves the project's in-memory Elasticsearch 8 test
// server (package elastic/estest) on a loopback port, for demos and manual
// tests without a real Elasticsearch. It keeps everything in memory, speaks
// the subset of the REST API the estest package documents, and is not a
// substitute for Elasticsearch.
//
// Usage:
//
//	estest-server [-listen 127.0.0.1:9200] [-url-file FILE]
//
// It prints its URL on stdout (and writes it to -url-file, when given, once
// it accepts connections) and runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redstream-go/redstream/elastic/estest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("estest-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9200", "`address` to listen on; port 0 picks a free port")
	urlFile := fs.String("url-file", "", "write the server's URL to this `file` once it listens")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "estest-server: %v\n", err)
		return 1
	}
	url := "http://" + ln.Addr().String()
	srv := &http.Server{Handler: estest.NewHandler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	if *urlFile != "" {
		if err := os.WriteFile(*urlFile, []byte(url+"\n"), 0o644); err != nil {
			fmt.Fprintf(stderr, "estest-server: %v\n", err)
			_ = srv.Close()
			<-done
			return 1
		}
	}
	fmt.Fprintf(stdout, "estest-server: the in-memory Elasticsearch test server listens on %s\n", url)
	select {
	case err := <-done:
		fmt.Fprintf(stderr, "estest-server: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		fmt.Fprintf(stderr, "estest-server: shutdown: %v\n", err)
		return 1
	}
	<-done
	return 0
}
