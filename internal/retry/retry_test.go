package retry

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestDo(t *testing.T) {
	var waits []time.Duration
	p := Policy{Attempts: 3, Min: time.Second, Max: 4 * time.Second,
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}
	boom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		errs      []error
		wantErr   bool
		wantTries int
	}{
		{"success first", []error{nil}, false, 1},
		{"transient then success", []error{Transient(boom, 0), nil}, false, 2},
		{"permanent stops", []error{boom, nil}, true, 1},
		{"budget spent", []error{Transient(boom, 0), Transient(boom, 0), Transient(boom, 0), nil}, true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tries := 0
			err := p.Do(context.Background(), func() error { tries++; return tc.errs[tries-1] }, nil)
			if (err != nil) != tc.wantErr || tries != tc.wantTries {
				t.Fatalf("err %v after %d tries; want error %v after %d", err, tries, tc.wantErr, tc.wantTries)
			}
			if err != nil && !errors.Is(err, boom) {
				t.Fatalf("error %v does not wrap the attempt's", err)
			}
		})
	}
}

func TestWait(t *testing.T) {
	p := Policy{Min: time.Second, Max: 8 * time.Second, MaxRetryAfter: time.Minute}
	for n, hi := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 9: 8 * time.Second} {
		for range 50 {
			if d := p.Wait(n, 0); d < hi/2 || d > hi {
				t.Fatalf("Wait(%d) = %v, want in [%v, %v]", n, d, hi/2, hi)
			}
		}
	}
	if d := p.Wait(1, 30*time.Second); d != 30*time.Second {
		t.Errorf("Retry-After 30s: %v", d)
	}
	if d := p.Wait(1, time.Hour); d != time.Minute {
		t.Errorf("Retry-After 1h: %v, want the cap", d)
	}
}

func TestStatusError(t *testing.T) {
	base := errors.New("x")
	h := http.Header{"Retry-After": {"7"}}
	if after, ok := IsTransient(StatusError(base, &http.Response{StatusCode: 429, Header: h})); !ok || after != 7*time.Second {
		t.Errorf("429: %v %v", after, ok)
	}
	if _, ok := IsTransient(StatusError(base, &http.Response{StatusCode: 500, Header: h})); !ok {
		t.Error("500 not transient")
	}
	if _, ok := IsTransient(StatusError(base, &http.Response{StatusCode: 404, Header: h})); ok {
		t.Error("404 transient")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"120": 2 * time.Minute, " 5 ": 5 * time.Second, "99999999999999999999": 365 * 24 * time.Hour,
		"Thu, 01 Jan 2026 00:00:30 GMT": 30 * time.Second, "Wed, 31 Dec 2025 00:00:00 GMT": 0,
	} {
		if got, ok := ParseRetryAfter(in, now); !ok || got != want {
			t.Errorf("ParseRetryAfter(%q) = %v %v, want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "-1", "soon", "1.5"} {
		if _, ok := ParseRetryAfter(in, now); ok {
			t.Errorf("ParseRetryAfter(%q) accepted", in)
		}
	}
}
