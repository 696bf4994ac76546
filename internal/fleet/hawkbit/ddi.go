// Package hawkbit is tandem's client for Eclipse hawkBit's Direct Device
// Integration (DDI) API, the controller protocol that hawkBit and other fleet
// servers (Memfault's Linux OTA endpoint among them) speak: the device polls
// its controller base resource, takes the deployment actions it finds there,
// installs their bundle through fleet.Agent (delta download, resume, trial
// boot) and reports closed/success only after the new group committed itself
// under the health check, closed/failure with the reason after a rollback.
//
// ddi.go is the wire model: the JSON documents of the DDI API, parsed with a
// size limit and strict types (unknown fields are accepted: the protocol adds
// them over time), and the feedback the device sends.
package hawkbit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxDocument bounds one JSON document read from the server.
const MaxDocument = 1 << 20

// Link is a hypermedia link of a DDI document.
type Link struct {
	Href string `json:"href"`
}

// Base is the controller base resource: the polling interval and links to
// what the server wants from the device.
type Base struct {
	Config struct {
		Polling struct {
			Sleep string `json:"sleep"` // HH:MM:SS
		} `json:"polling"`
	} `json:"config"`
	Links map[string]Link `json:"_links"`
}

// Sleep is the polling interval the server asks for (0 if none).
func (b *Base) Sleep() time.Duration {
	d, _ := parseSleep(b.Config.Polling.Sleep)
	return d
}

// Link returns the href of the named link ("" if absent).
func (b *Base) Link(name string) string { return b.Links[name].Href }

// Handling values of Deployment.Download and .Update.
const (
	Skip    = "skip"
	Attempt = "attempt"
	Forced  = "forced"
)

// Maintenance window values.
const (
	WindowAvailable   = "available"
	WindowUnavailable = "unavailable"
)

// Deployment is a deploymentBase resource: one action.
type Deployment struct {
	ID         string `json:"id"`
	Deployment struct {
		Download          string  `json:"download"`
		Update            string  `json:"update"`
		MaintenanceWindow string  `json:"maintenanceWindow,omitempty"`
		Chunks            []Chunk `json:"chunks"`
	} `json:"deployment"`
}

// Chunk is one software module of a deployment.
type Chunk struct {
	Part      string     `json:"part"`
	Version   string     `json:"version"`
	Name      string     `json:"name"`
	Artifacts []Artifact `json:"artifacts"`
	Metadata  []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"metadata,omitempty"`
}

// Artifact is one file of a chunk.
type Artifact struct {
	Filename string            `json:"filename"`
	Hashes   map[string]string `json:"hashes"`
	Size     int64             `json:"size"`
	Links    map[string]Link   `json:"_links"`
}

// URL returns the artifact's download link, https preferred.
func (a *Artifact) URL() string {
	if h := a.Links["download"].Href; h != "" {
		return h
	}
	return a.Links["download-http"].Href
}

// CancelAction is a cancelAction resource.
type CancelAction struct {
	ID           string `json:"id"`
	CancelAction struct {
		StopID string `json:"stopId"`
	} `json:"cancelAction"`
}

// Execution values of Feedback.
const (
	Proceeding = "proceeding"
	Closed     = "closed"
	Canceled   = "canceled"
	Rejected   = "rejected"
	Downloaded = "downloaded"
	Download   = "download"
	Scheduled  = "scheduled"
	Resumed    = "resumed"
)

// Finished values of Feedback.
const (
	None    = "none"
	Success = "success"
	Failure = "failure"
)

// Feedback is the body of a feedback POST.
type Feedback struct {
	// ID is the action id: a JSON number when it is one (older servers
	// read it as a number), else a string.
	ID        any            `json:"id,omitempty"`
	Timestamp int64          `json:"timestamp,omitempty"` // milliseconds since the epoch
	Time      string         `json:"time,omitempty"`      // older servers: yyyyMMdd'T'HHmmss
	Status    FeedbackStatus `json:"status"`
}

// FeedbackStatus is the status of a Feedback.
type FeedbackStatus struct {
	Execution string         `json:"execution"`
	Result    FeedbackResult `json:"result"`
	Code      int            `json:"code,omitempty"`
	Details   []string       `json:"details,omitempty"`
}

// FeedbackResult is the result of a FeedbackStatus.
type FeedbackResult struct {
	Finished string    `json:"finished"`
	Progress *Progress `json:"progress,omitempty"`
}

// Progress counts steps (tandem sends per cent of the bytes written).
type Progress struct {
	Cnt int `json:"cnt"`
	Of  int `json:"of"`
}

// ConfigData is the body of a configData PUT.
type ConfigData struct {
	Mode string            `json:"mode"` // merge, replace or remove
	Data map[string]string `json:"data"`
	// Status is sent for older servers, which require it.
	Status *FeedbackStatus `json:"status,omitempty"`
}

// decode reads one JSON document of at most MaxDocument bytes from r into v.
func decode(r io.Reader, what string, v any) error { return DecodeJSON(r, what, MaxDocument, v) }

// DecodeJSON reads one JSON document of at most max bytes from r into v,
// the way a server's documents are read: unknown fields are accepted; a
// wrong type or trailing data is an error naming what and the field.
func DecodeJSON(r io.Reader, what string, max int, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(b) > max {
		return fmt.Errorf("%s: larger than %d bytes", what, max)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return fmt.Errorf("%s: field %s: want %s, got a JSON %s", what, te.Field, te.Type, te.Value)
		case errors.As(err, &se):
			return fmt.Errorf("%s: invalid JSON at byte %d: %s", what, se.Offset, se.Error())
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%s: empty body", what)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if dec.More() {
		return fmt.Errorf("%s: data after the JSON document", what)
	}
	return nil
}

// ParseBase parses a controller base resource.
func ParseBase(r io.Reader) (*Base, error) {
	b := &Base{}
	if err := decode(r, "controller base", b); err != nil {
		return nil, err
	}
	if s := b.Config.Polling.Sleep; s != "" {
		if _, err := parseSleep(s); err != nil {
			return nil, fmt.Errorf("controller base: config.polling.sleep: %w", err)
		}
	}
	for name, l := range b.Links {
		if err := checkHref(l.Href); err != nil {
			return nil, fmt.Errorf("controller base: _links.%.64s: %w", name, err)
		}
	}
	return b, nil
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

// ParseDeployment parses a deploymentBase resource.
func ParseDeployment(r io.Reader) (*Deployment, error) {
	d := &Deployment{}
	if err := decode(r, "deploymentBase", d); err != nil {
		return nil, err
	}
	dp := &d.Deployment
	switch {
	case d.ID == "":
		return nil, fmt.Errorf("deploymentBase: no action id")
	case len(d.ID) > maxID:
		return nil, fmt.Errorf("deploymentBase: action id of %d bytes, longer than %d: refused", len(d.ID), maxID)
	case !oneOf(dp.Download, Skip, Attempt, Forced):
		return nil, fmt.Errorf("deploymentBase %s: deployment.download %.32q: want skip, attempt or forced", d.ID, dp.Download)
	case !oneOf(dp.Update, Skip, Attempt, Forced):
		return nil, fmt.Errorf("deploymentBase %s: deployment.update %.32q: want skip, attempt or forced", d.ID, dp.Update)
	case !oneOf(dp.MaintenanceWindow, "", WindowAvailable, WindowUnavailable):
		return nil, fmt.Errorf("deploymentBase %s: deployment.maintenanceWindow %.32q: want available or unavailable", d.ID, dp.MaintenanceWindow)
	}
	for i, c := range dp.Chunks {
		for j, a := range c.Artifacts {
			if a.Size < 0 {
				return nil, fmt.Errorf("deploymentBase %s: chunk %d artifact %d: negative size", d.ID, i, j)
			}
			for name, l := range a.Links {
				if err := checkHref(l.Href); err != nil {
					return nil, fmt.Errorf("deploymentBase %s: chunk %d artifact %.64q: _links.%.64s: %w", d.ID, i, a.Filename, name, err)
				}
			}
		}
	}
	return d, nil
}

// ParseCancel parses a cancelAction resource.
func ParseCancel(r io.Reader) (*CancelAction, error) {
	c := &CancelAction{}
	if err := decode(r, "cancelAction", c); err != nil {
		return nil, err
	}
	if c.ID == "" {
		return nil, fmt.Errorf("cancelAction: no action id")
	}
	if c.CancelAction.StopID == "" {
		c.CancelAction.StopID = c.ID
	}
	if len(c.ID) > maxID || len(c.CancelAction.StopID) > maxID {
		return nil, fmt.Errorf("cancelAction: action id longer than %d bytes: refused", maxID)
	}
	return c, nil
}

func checkHref(h string) error {
	if h == "" {
		return fmt.Errorf("empty href")
	}
	if len(h) > maxHref {
		return fmt.Errorf("href of %d bytes, longer than %d: refused", len(h), maxHref)
	}
	u, err := url.Parse(h)
	if err != nil {
		return fmt.Errorf("href %.128q: not a URL", h)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("href %.128q: want an http or https URL", h)
	}
	return nil
}

var sleepRe = regexp.MustCompile(`^(\d{1,3}):(\d{2}):(\d{2})$`)

// parseSleep parses an HH:MM:SS interval.
func parseSleep(s string) (time.Duration, error) {
	m := sleepRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%.32q: want HH:MM:SS", s)
	}
	h, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	se, _ := strconv.Atoi(m[3])
	if mi > 59 || se > 59 {
		return 0, fmt.Errorf("%q: minutes and seconds must be below 60", s)
	}
	return time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute + time.Duration(se)*time.Second, nil
}

// FormatSleep formats d as HH:MM:SS.
func FormatSleep(d time.Duration) string {
	s := int64(d / time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
}

// ActionID returns the action id at the end of a deploymentBase or
// cancelAction link: .../deploymentBase/{id}?c=...
func ActionID(href string) string {
	u, err := url.Parse(href)
	if err != nil {
		return ""
	}
	id := path.Base(u.Path)
	if id == "." || id == "/" || strings.Contains(id, "/") {
		return ""
	}
	return id
}
