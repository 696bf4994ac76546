package config

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestParseAdversarial feeds documents built to be slow or deep, each close
// to MaxFileSize: they must fail with an ordinary one-line error.
func TestParseAdversarial(t *testing.T) {
	n := MaxFileSize
	tests := map[string][]byte{
		"nested arrays": []byte("a = " + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + "\n"),
		"nested inline": []byte("a = " + strings.Repeat("{b=", 9000) + "1" + strings.Repeat("}", 9000) + "\n"),
		"deep arrays":   []byte("a = " + strings.Repeat("[", n/2-10) + "\n"),
		"dotted key":    []byte(strings.Repeat("a.", n/2-10) + "a = 1\n"),
		"long header":   []byte("[" + strings.Repeat("a.", n/2-10) + "a]\n"),
		"long array":    []byte("reboot-command = [" + strings.Repeat(`"x",`, n/4-10) + "]\n"),
		"many lines":    bytes.Repeat([]byte("\n"), n),
		"many headers":  bytes.Repeat([]byte("[slots.a]\n"), n/10-1),
		"many slots":    repeatUntil(n, `compatible = "x"`+"\n", "slots.s%d = { type = \"directory\", path = \"/d/%d\" }\n"),
		"many groups":   repeatUntil(n, `compatible = "x"`+"\n", "groups.g%d.slots.s = \"system-a%d\"\n"),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if len(data) > MaxFileSize {
				t.Fatalf("test document is %d bytes", len(data))
			}
			_, err := Parse(testFile, data)
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			checkParseError(t, data, err)
		})
	}
}

func repeatUntil(n int, head, format string) []byte {
	var b bytes.Buffer
	b.WriteString(head)
	for i := 0; b.Len() < n-200; i++ {
		fmt.Fprintf(&b, format, i, i)
	}
	return b.Bytes()
}

func TestParseMaxKeys(t *testing.T) {
	// Exactly MaxKeys keys: compatible, boot-flow, boot-flow.type, slots
	// and 3 per slot (its name, type and path).
	var b bytes.Buffer
	b.WriteString("compatible = \"x\"\n[boot-flow]\ntype = \"grub\"\n[slots]\n")
	keys := 4
	for i := 0; keys+3 <= MaxKeys; i++ {
		name := fmt.Sprintf("s%d", i)
		if i < 2 {
			name = "system-" + string(rune('a'+i))
		}
		fmt.Fprintf(&b, "%s = { type = \"file\", path = \"/d/%d\" }\n", name, i)
		keys += 3
	}
	if keys != MaxKeys {
		t.Fatalf("test document has %d keys", keys)
	}
	if _, err := Parse(testFile, b.Bytes()); err != nil {
		t.Fatalf("%d keys: %v", keys, err)
	}
	b.WriteString("extra = { type = \"file\", path = \"/extra\" }\n")
	_, err := Parse(testFile, b.Bytes())
	want := fmt.Sprintf("%s:%d:1: too many keys: the limit is %d", testFile, 4+(MaxKeys-4)/3+1, MaxKeys)
	if err == nil || err.Error() != want {
		t.Errorf("error\n got: %v\nwant: %s", err, want)
	}
}
