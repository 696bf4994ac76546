package tedge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Statuses of a thin-edge.io command. Restarting and Verifying are our own
// intermediate states (thin-edge lets an operation have any; mappers act only
// on executing, successful and failed).
const (
	StatusInit       = "init"
	StatusExecuting  = "executing"
	StatusRestarting = "restarting"
	StatusVerifying  = "verifying"
	StatusSuccessful = "successful"
	StatusFailed     = "failed"
)

// Operation is the thin-edge.io operation this package handles.
const Operation = "firmware_update"

// MaxPayload bounds a command message tandem accepts.
const MaxPayload = 64 << 10

// ErrPayload marks a command message tandem cannot act on.
var ErrPayload = errors.New("bad firmware_update command")

// Command is one firmware_update command message. Fields keeps every field
// of the message, known or not, so that each status tandem publishes
// carries the requester's fields unchanged.
type Command struct {
	Fields map[string]json.RawMessage
}

// ParseCommand parses a command message: a JSON object of at most
// MaxPayload bytes whose status, name, version, remoteUrl and tedgeUrl are
// strings when present.
func ParseCommand(b []byte) (*Command, error) {
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrPayload, len(b), MaxPayload)
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&fields); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	if fields == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrPayload)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrPayload)
	}
	c := &Command{Fields: fields}
	for _, k := range []string{"status", "name", "version", "remoteUrl", "tedgeUrl", "reason"} {
		if _, err := c.str(k); err != nil {
			return nil, err
		}
	}
	if c.Status() == "" {
		return nil, fmt.Errorf("%w: no status", ErrPayload)
	}
	return c, nil
}

func (c *Command) str(k string) (string, error) {
	raw, ok := c.Fields[k]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: %s is not a string", ErrPayload, k)
	}
	return s, nil
}

// Get returns the string field k ("" when absent or not a string).
func (c *Command) Get(k string) string {
	s, _ := c.str(k)
	return s
}

// Status is the command's status.
func (c *Command) Status() string { return c.Get("status") }

// With returns a copy of c with the string fields in kv (key, value, ...)
// set; a value "" removes the field.
func (c *Command) With(kv ...string) *Command {
	n := &Command{Fields: make(map[string]json.RawMessage, len(c.Fields)+2)}
	for k, v := range c.Fields {
		n.Fields[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(n.Fields, kv[i])
			continue
		}
		b, _ := json.Marshal(kv[i+1])
		n.Fields[kv[i]] = b
	}
	return n
}

// Marshal encodes the command message (keys sorted).
func (c *Command) Marshal() []byte {
	b, err := json.Marshal(c.Fields)
	if err != nil {
		// Every field came from json.Unmarshal or json.Marshal: valid JSON.
		panic(err)
	}
	return b
}

// Source returns the bundle location: tedgeUrl (thin-edge's local proxy or
// file-transfer cache, which carries the cloud credentials) unless
// preferRemote, else remoteUrl. It must be an http(s) URL: a local path
// from the broker would be opened as root (issue 11, hardening 5).
func (c *Command) Source(preferRemote bool) (string, error) {
	first, second := c.Get("tedgeUrl"), c.Get("remoteUrl")
	if preferRemote {
		first, second = second, first
	}
	src := first
	if src == "" {
		src = second
	}
	if src == "" {
		return "", fmt.Errorf("%w: neither remoteUrl nor tedgeUrl", ErrPayload)
	}
	u, err := url.Parse(src)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: %q is not an http(s) URL", ErrPayload, src)
	}
	return src, nil
}

// Twin is the firmware twin thin-edge.io keeps for the device
// (<root>/<device>/twin/firmware, retained).
type Twin struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	URL     string `json:"url,omitempty"`
}

// Topics are the MQTT topics of one device's firmware_update operation.
type Topics struct {
	Root   string // "te"
	Device string // the device topic id, "device/main//"
}

// ParseTopics checks a topic root and device topic id (four segments, the
// last ones possibly empty, no wildcards).
func ParseTopics(root, device string) (Topics, error) {
	if root == "" || strings.ContainsAny(root, "+#/") {
		return Topics{}, fmt.Errorf("mqtt topic root %q: want one topic level without wildcards, e.g. te", root)
	}
	if strings.Count(device, "/") != 3 || strings.ContainsAny(device, "+#") || strings.HasPrefix(device, "/") {
		return Topics{}, fmt.Errorf("device topic id %q: want four segments, e.g. device/main//", device)
	}
	return Topics{Root: root, Device: device}, nil
}

func (t Topics) base() string { return t.Root + "/" + t.Device }

// Capability is the topic that announces the operation.
func (t Topics) Capability() string { return t.base() + "/cmd/" + Operation }

// Commands is the subscription for the operation's commands.
func (t Topics) Commands() string { return t.Capability() + "/+" }

// Command is the topic of command id.
func (t Topics) Command(id string) string { return t.Capability() + "/" + id }

// Twin is the firmware twin topic.
func (t Topics) Twin() string { return t.base() + "/twin/firmware" }

// CommandID returns the command id of a command topic, false for any other topic.
func (t Topics) CommandID(topic string) (string, bool) {
	id, ok := strings.CutPrefix(topic, t.Capability()+"/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}
