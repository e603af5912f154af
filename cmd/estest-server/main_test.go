package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServe(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "url")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"-listen", "127.0.0.1:0", "-url-file", file}, &stdout, &stderr) }()
	var url string
	deadline := time.Now().Add(30 * time.Second)
	for url == "" {
		if b, err := os.ReadFile(file); err == nil {
			url = strings.TrimSpace(string(b))
		} else if time.Now().After(deadline) {
			t.Fatalf("no URL file: %v", err)
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	client := &http.Client{Transport: &http.Transport{}}
	res, err := client.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	client.CloseIdleConnections()
	if res.StatusCode != 200 || res.Header.Get("X-Elastic-Product") != "Elasticsearch" {
		t.Errorf("GET /: %s, product %q", res.Status, res.Header.Get("X-Elastic-Product"))
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("exit %d: %s", c, stderr.String())
	}
}
