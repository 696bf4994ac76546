package hawkbit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/retry"
)

// ErrGone is returned for a 410 answer: the action no longer exists on the
// server (it was deleted or closed there); the device forgets it.
var ErrGone = errors.New("the action is gone on the server (410)")

// ErrAuth is returned for 401 and 403 answers.
var ErrAuth = errors.New("the server refused the credentials")

// Client speaks DDI for one controller (device).
type Client struct {
	// Server is the server's base URL without the tenant, e.g.
	// https://hawkbit.example.com or https://device.memfault.com/api/v0/hawkbit.
	Server       string
	Tenant       string
	ControllerID string
	// Authorization is the header value: "TargetToken <t>" or
	// "GatewayToken <t>" ("" = none, e.g. with a client certificate).
	Authorization string
	HTTP          *http.Client
	// Retry is how one request retries transient failures (connection
	// errors, 408, 429, 5xx); the zero Policy is retry.Default.
	Retry retry.Policy
	// Log receives one record per retried failure (nil = discard).
	Log *slog.Logger

	etag string
	base *Base
}

// BaseURL is the controller base resource.
func (c *Client) BaseURL() string {
	return strings.TrimRight(c.Server, "/") + "/" + url.PathEscape(c.Tenant) + "/controller/v1/" + url.PathEscape(c.ControllerID)
}

// FeedbackURL is the feedback resource of an action; kind is
// "deploymentBase" or "cancelAction".
func (c *Client) FeedbackURL(kind, id string) string {
	return c.BaseURL() + "/" + kind + "/" + url.PathEscape(id) + "/feedback"
}

// Poll reads the controller base resource. With the ETag of the last
// answer it asks If-None-Match; a 304 returns the cached resource and
// changed false.
func (c *Client) Poll(ctx context.Context) (b *Base, changed bool, err error) {
	h := http.Header{}
	if c.etag != "" && c.base != nil {
		h.Set("If-None-Match", c.etag)
	}
	resp, body, err := c.do(ctx, http.MethodGet, c.BaseURL(), nil, h)
	if err != nil {
		return nil, false, err
	}
	if resp.StatusCode == http.StatusNotModified && c.base != nil {
		return c.base, false, nil
	}
	if err := wantStatus(resp, body, http.StatusOK); err != nil {
		return nil, false, fmt.Errorf("poll %s: %w", c.BaseURL(), err)
	}
	b, err = ParseBase(bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	c.base, c.etag = b, resp.Header.Get("ETag")
	return b, true, nil
}

// Deployment reads a deploymentBase resource.
func (c *Client) Deployment(ctx context.Context, href string) (*Deployment, error) {
	body, err := c.get(ctx, href)
	if err != nil {
		return nil, err
	}
	return ParseDeployment(bytes.NewReader(body))
}

// Cancel reads a cancelAction resource.
func (c *Client) Cancel(ctx context.Context, href string) (*CancelAction, error) {
	body, err := c.get(ctx, href)
	if err != nil {
		return nil, err
	}
	return ParseCancel(bytes.NewReader(body))
}

func (c *Client) get(ctx context.Context, href string) ([]byte, error) {
	resp, body, err := c.do(ctx, http.MethodGet, href, nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusGone {
		return nil, fmt.Errorf("get %s: %w", href, ErrGone)
	}
	if err := wantStatus(resp, body, http.StatusOK); err != nil {
		return nil, fmt.Errorf("get %s: %w", href, err)
	}
	return body, nil
}

// Feedback posts fb for action id (kind "deploymentBase" or
// "cancelAction"). A 410 is ErrGone.
func (c *Client) Feedback(ctx context.Context, kind, id string, fb Feedback) error {
	if fb.ID == nil {
		fb.ID = id
		if n, err := strconv.ParseInt(id, 10, 64); err == nil {
			fb.ID = n
		}
	}
	return c.send(ctx, http.MethodPost, c.FeedbackURL(kind, id), fb)
}

// ConfigData puts the device's attributes (mode merge) to href.
func (c *Client) ConfigData(ctx context.Context, href string, data map[string]string) error {
	return c.send(ctx, http.MethodPut, href, ConfigData{Mode: "merge", Data: data,
		Status: &FeedbackStatus{Execution: Closed, Result: FeedbackResult{Finished: Success}}})
}

func (c *Client) send(ctx context.Context, method, href string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	resp, body, err := c.do(ctx, method, href, b, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusGone {
		return fmt.Errorf("%s %s: %w", strings.ToLower(method), href, ErrGone)
	}
	if err := wantStatus(resp, body, http.StatusOK, http.StatusCreated, http.StatusNoContent); err != nil {
		return fmt.Errorf("%s %s: %w", strings.ToLower(method), href, err)
	}
	return nil
}

func wantStatus(resp *http.Response, body []byte, codes ...int) error {
	for _, c := range codes {
		if resp.StatusCode == c {
			return nil
		}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg != "" {
		msg = ": " + strings.Join(strings.Fields(msg), " ")
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("%w (%s)%s", ErrAuth, resp.Status, msg)
	}
	return fmt.Errorf("server answered %s%s", resp.Status, msg)
}

// do sends one request, retrying transient failures (retry.Policy). The
// body of the answer is read (at most MaxDocument bytes) and returned.
func (c *Client) do(ctx context.Context, method, href string, body []byte, h http.Header) (*http.Response, []byte, error) {
	client := c.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	what := strings.ToLower(method) + " " + href
	var resp *http.Response
	var data []byte
	err := c.Retry.Do(ctx, func() error {
		req, err := http.NewRequestWithContext(ctx, method, href, bytes.NewReader(body))
		if err != nil {
			return err
		}
		for k, v := range h {
			req.Header[k] = v
		}
		req.Header.Set("Accept", "application/hal+json, application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json;charset=UTF-8")
		}
		if c.Authorization != "" {
			req.Header.Set("Authorization", c.Authorization)
		}
		r, err := client.Do(req)
		if err != nil {
			return retry.Transient(fmt.Errorf("%s: %w", what, err), 0)
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, MaxDocument+1))
		r.Body.Close()
		switch {
		case err != nil:
			return retry.Transient(fmt.Errorf("%s: %w", what, err), 0)
		case len(b) > MaxDocument:
			return fmt.Errorf("%s: answer larger than %d bytes", what, MaxDocument)
		case retry.TransientStatus(r.StatusCode):
			return retry.StatusError(fmt.Errorf("%s: %s", what, r.Status), r)
		}
		resp, data = r, b
		return nil
	}, func(_ int, wait time.Duration, err error) {
		if c.Log != nil {
			c.Log.Warn(fmt.Sprintf("%v; retrying in %s", err, wait.Round(time.Millisecond)))
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return resp, data, nil
}
