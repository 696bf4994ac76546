package fetch

import (
	"github.com/tandem-ota/tandem/internal/retry"

	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/testutil"
)

type accessEntry struct {
	status          int
	bytes           int64
	rng, ifRangeHdr string
}

// readAccessLog waits until the log has n entries (nginx writes an entry
// after the response is sent, possibly after the client has it all) and
// parses them.
func readAccessLog(t *testing.T, path string, n int) []accessEntry {
	t.Helper()
	var lines []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(lines) >= n || time.Now().After(deadline) {
			break
		}
	}
	if len(lines) != n {
		t.Fatalf("access log has %d entries, want %d", len(lines), n)
	}
	var es []accessEntry
	for _, l := range lines {
		var e accessEntry
		if _, err := fmt.Sscanf(l, "%d %d %q %q", &e.status, &e.bytes, &e.rng, &e.ifRangeHdr); err != nil {
			t.Fatalf("access log line %q: %v", l, err)
		}
		es = append(es, e)
	}
	return es
}

// TestNginx runs Open and Fetch against a real nginx and checks the bytes
// and that tandem counts exactly the body bytes nginx says it sent.
func TestNginx(t *testing.T) {
	root := t.TempDir()
	data := testData(5<<20, 20)
	file := filepath.Join(root, "image.bin")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "norange"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "norange", "image.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	base, accessLog := testutil.StartNginx(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	sl := &sleeper{}
	c := &Client{Concurrency: 3, MaxRequestSize: 256 << 10, Retry: retry.Policy{Sleep: sl.sleep}}
	remote, first, body, err := c.Open(ctx, base+"/image.bin", 4096)
	if err != nil || body != nil {
		t.Fatalf("Open: %v (body %v)", err, body)
	}
	if remote.Size != int64(len(data)) || remote.ETag == "" || strings.HasPrefix(remote.ETag, "W/") || remote.LastModified == "" {
		t.Errorf("remote %+v", remote)
	}
	if !bytes.Equal(first, data[:4096]) {
		t.Errorf("first bytes: %d, want data[:4096]", len(first))
	}
	ranges := randomRanges(21, int64(len(data)), 400<<10, 48<<10)
	got, err := fetchAll(ctx, c, remote, ranges)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, data, ranges, got)

	st := c.Stats()
	t.Logf("%d ranges: %+v", len(ranges), st)
	if st.Retries != 0 {
		t.Errorf("%d retries against a healthy nginx", st.Retries)
	}
	entries := readAccessLog(t, accessLog, int(st.Requests))
	var sent int64
	for i, e := range entries {
		sent += e.bytes
		if e.status != 206 || !closedRange.MatchString(e.rng) {
			t.Errorf("request %d: %d for Range %q", i, e.status, e.rng)
		}
		wantIfRange := remote.ETag
		if i == 0 {
			wantIfRange = "-" // the probe
		}
		if e.ifRangeHdr != wantIfRange {
			t.Errorf("request %d: If-Range %q, want %q", i, e.ifRangeHdr, wantIfRange)
		}
	}
	if entries[0].rng != "bytes=0-4095" {
		t.Errorf("probe Range %q", entries[0].rng)
	}
	if sent != st.BytesReceived {
		t.Errorf("nginx sent %d body bytes, tandem received %d", sent, st.BytesReceived)
	}

	t.Run("no range support", func(t *testing.T) {
		c := &Client{}
		remote, _, body, err := c.Open(ctx, base+"/norange/image.bin", 4096)
		if !errors.Is(err, ErrNoRange) {
			t.Fatalf("Open: %v, want ErrNoRange", err)
		}
		defer body.Close()
		all, err := io.ReadAll(body)
		if err != nil || !bytes.Equal(all, data) || remote.Size != int64(len(data)) {
			t.Fatalf("body: %d bytes (err %v), size %d; want the whole %d-byte file", len(all), err, remote.Size, len(data))
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, _, _, err := (&Client{}).Open(ctx, base+"/missing.bin", 4096)
		if err == nil || !strings.Contains(err.Error(), "404") {
			t.Fatalf("Open: %v, want a 404 error", err)
		}
	})
	t.Run("file replaced", func(t *testing.T) {
		if err := os.WriteFile(file, testData(len(data), 22), 0o644); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Hour)
		if err := os.Chtimes(file, later, later); err != nil {
			t.Fatal(err)
		}
		c := &Client{Retry: retry.Policy{Sleep: sl.sleep}, Concurrency: 1}
		_, err := fetchAll(ctx, c, remote, ranges[:3])
		if !errors.Is(err, ErrChanged) {
			t.Fatalf("Fetch: %v, want ErrChanged", err)
		}
		if st := c.Stats(); st.Requests != 1 {
			t.Errorf("%d requests, want 1", st.Requests)
		}
	})
}
