package fetch

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// job is one unit of Fetch's work: the span [start, end) of the file holding
// ranges[first:last] and the gaps between them. A job is one request, except
// a job of one range longer than MaxRequestSize, which takes several.
type job struct {
	start, end  int64
	first, last int
}

// plan coalesces sorted ranges into jobs: a range joins the job before it if
// the gap is at most gap bytes and the job stays within maxReq bytes.
func plan(ranges []Range, gap, maxReq int64) []job {
	var jobs []job
	for i := 0; i < len(ranges); {
		j := job{start: ranges[i].Off, end: ranges[i].Off + ranges[i].Len, first: i, last: i + 1}
		for i++; i < len(ranges); i++ {
			rg := ranges[i]
			if rg.Off-j.end > gap || rg.Off+rg.Len-j.start > maxReq {
				break
			}
			j.end, j.last = rg.Off+rg.Len, i+1
		}
		jobs = append(jobs, j)
	}
	return jobs
}

func checkRanges(ranges []Range, size int64) error {
	var prevEnd int64
	for i, rg := range ranges {
		switch {
		case rg.Off < 0 || rg.Len <= 0:
			return fmt.Errorf("fetch: range %d (%d+%d) is empty or negative", i, rg.Off, rg.Len)
		case i > 0 && rg.Off < prevEnd:
			return fmt.Errorf("fetch: range %d (%d+%d) is out of order or overlaps range %d", i, rg.Off, rg.Len, i-1)
		case rg.Off > size-rg.Len:
			return fmt.Errorf("fetch: range %d (%d+%d) ends beyond the file's %d bytes", i, rg.Off, rg.Len, size)
		}
		prevEnd = rg.Off + rg.Len
	}
	return nil
}

// target is what every request of one Fetch needs to know about the file.
type target struct {
	url, ifRange string
	size         int64
}

// Fetch gets the given ranges of r (sorted by Off, non-overlapping, Len > 0,
// within r.Size) and calls deliver(i, data) for each, in order of i, with
// exactly the bytes the server sent for ranges[i]. data is valid only during
// the call. deliver runs on the goroutine that called Fetch.
//
// Ranges are coalesced into requests per GapThreshold and MaxRequestSize, up
// to Concurrency requests are in flight and at most Concurrency request
// buffers are held (see the package documentation). Transient failures are
// retried with backoff, resuming after the bytes already received. Every
// request carries If-Range (r.ETag if it is strong, else r.LastModified), so
// a file replaced on the server yields ErrChanged, which is not retried; with
// neither validator there is no If-Range, and a 200 is still ErrChanged. A 206 whose Content-Range does not match
// the request, or a body of the wrong length, is retried and then reported.
//
// If deliver returns an error, Fetch cancels its requests and returns that
// error unchanged. Fetch does not check content: a caller whose digest check
// fails in deliver may call Fetch again for the ranges from the failing one
// on. On any failure the ranges delivered are a prefix of ranges.
func (c *Client) Fetch(ctx context.Context, r *Remote, ranges []Range, deliver func(i int, data []byte) error) error {
	return c.FetchLimited(ctx, r, ranges, Limits{}, deliver)
}

// Limits narrow one Fetch below the Client's settings: a caller whose
// deliver is slower than the network (a patch applier) keeps few bytes
// waiting. Zero fields take the Client's Concurrency and MaxRequestSize.
type Limits struct {
	Concurrency    int
	MaxRequestSize int64
}

// FetchLimited is Fetch with at most lim.Concurrency requests in flight,
// each of at most lim.MaxRequestSize bytes (so at most their product of
// request buffers held).
func (c *Client) FetchLimited(ctx context.Context, r *Remote, ranges []Range, lim Limits, deliver func(i int, data []byte) error) error {
	if r == nil || r.Size < 0 {
		return fmt.Errorf("fetch: Fetch needs a Remote of known size from Open")
	}
	if err := checkRanges(ranges, r.Size); err != nil {
		return err
	}
	if len(ranges) == 0 {
		return nil
	}
	tg := target{url: r.URL, size: r.Size, ifRange: r.LastModified}
	// If-Range needs a strong validator; a server compares a weak ETag
	// as a mismatch and would answer every request with the whole file.
	if r.ETag != "" && !strings.HasPrefix(r.ETag, "W/") {
		tg.ifRange = r.ETag
	}
	maxReq, conc := c.maxRequestSize(), c.concurrency()
	if lim.MaxRequestSize > 0 {
		maxReq = min(maxReq, lim.MaxRequestSize)
	}
	if lim.Concurrency > 0 {
		conc = min(conc, lim.Concurrency)
	}
	jobs := plan(ranges, c.gapThreshold(), maxReq)
	conc = min(conc, len(jobs))

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// A job's ranges are delivered as soon as their bytes are in, not when
	// the whole request is: an interrupted install keeps what arrived.
	type result struct {
		buf    []byte
		err    error
		done   chan struct{}
		filled atomic.Int64  // bytes of buf received, from its start
		more   chan struct{} // a signal that filled grew
	}
	results := make([]result, len(jobs))
	for k := range results {
		results[k].done = make(chan struct{})
		results[k].more = make(chan struct{}, 1)
	}
	// A slot is taken, in job order, before a job is handed to a worker and
	// given back once its ranges are delivered: at most conc buffers exist.
	slots := make(chan struct{}, conc)
	work := make(chan int)
	free := make(chan []byte, conc)
	var wg sync.WaitGroup
	wg.Add(1 + conc)
	go func() {
		defer wg.Done()
		defer close(work)
		for k := range jobs {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case work <- k:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range conc {
		go func() {
			defer wg.Done()
			for k := range work {
				j := jobs[k]
				var buf []byte
				select {
				case buf = <-free:
				default:
				}
				if n := j.end - j.start; int64(cap(buf)) >= n {
					buf = buf[:n]
				} else {
					buf = make([]byte, n)
				}
				res := &results[k]
				res.buf = buf
				err := c.fetchJob(ctx, tg, j.start, buf, maxReq, func(n int64) {
					res.filled.Store(n)
					select {
					case res.more <- struct{}{}:
					default:
					}
				})
				if err != nil {
					cancel(err)
				}
				res.err = err
				close(res.done)
			}
		}()
	}
	finish := func(err error) error {
		cancel(err)
		wg.Wait()
		return err
	}
	for k, j := range jobs {
		res := &results[k]
		for i := j.first; i < j.last; i++ {
			o := ranges[i].Off - j.start
			for res.filled.Load() < o+ranges[i].Len {
				select {
				case <-res.more:
					continue
				case <-res.done:
				case <-ctx.Done():
					return finish(context.Cause(ctx))
				}
				if res.err != nil {
					return finish(context.Cause(ctx))
				}
				break
			}
			// filled is stored after the bytes were written: they are stable.
			buf := res.buf
			if err := deliver(i, buf[o:o+ranges[i].Len:o+ranges[i].Len]); err != nil {
				return finish(err)
			}
		}
		<-res.done
		if res.err != nil {
			return finish(context.Cause(ctx))
		}
		buf := res.buf
		res.buf = nil
		select {
		case free <- buf:
		default:
		}
		<-slots
	}
	return finish(nil)
}

// fetchJob fills buf with the file's bytes from offset start, in requests
// of at most maxReq bytes, each retried on its own.
func (c *Client) fetchJob(ctx context.Context, tg target, start int64, buf []byte, maxReq int64, progress func(int64)) error {
	for o := int64(0); o < int64(len(buf)); o += maxReq {
		dst := buf[o:min(o+maxReq, int64(len(buf)))]
		off := start + o
		got := 0
		err := c.do(ctx, func() error {
			if got == len(dst) {
				return nil // all in; the last attempt failed after its body
			}
			base := o + int64(got)
			n, err := c.getRange(ctx, tg, off+int64(got), dst[got:], func(n int) { progress(base + int64(n)) })
			got += n
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// getRange sends one request for the bytes [off, off+len(dst)) and fills
// dst. It returns how many bytes of dst are valid, also on error.
func (c *Client) getRange(ctx context.Context, tg target, off int64, dst []byte, progress func(int)) (int, error) {
	end := off + int64(len(dst)) - 1
	rng := fmt.Sprintf("bytes=%d-%d", off, end)
	resp, b, err := c.get(ctx, tg.url, rng, tg.ifRange)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		if tg.ifRange != "" {
			return 0, fmt.Errorf("%w: GET %s (%s) with If-Range %s answered %s", ErrChanged, tg.url, rng, tg.ifRange, resp.Status)
		}
		return 0, fmt.Errorf("%w: GET %s (%s) answered %s (Range ignored; no validator for If-Range)", ErrChanged, tg.url, rng, resp.Status)
	case http.StatusRequestedRangeNotSatisfiable:
		return 0, fmt.Errorf("%w: GET %s (%s) of a %d-byte file answered %s", ErrChanged, tg.url, rng, tg.size, resp.Status)
	default:
		b.drainClose()
		return 0, statusErr(tg.url, rng, resp)
	}
	cr := resp.Header.Get("Content-Range")
	s, e, size, err := parseContentRange(cr)
	if err != nil || s != off || e != end || (size >= 0 && size != tg.size) {
		return 0, transient(fmt.Errorf("fetch: %s: 206 with Content-Range %q, want bytes %d-%d/%d", what(tg.url, rng), cr, off, end, tg.size))
	}
	if err := checkEncoding(tg.url, rng, resp.Header); err != nil {
		return 0, err
	}
	return b.readExactly(tg.url, rng, dst, resp.ContentLength, progress)
}
