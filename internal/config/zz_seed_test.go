package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSeedsShow(t *testing.T) {
	files, _ := filepath.Glob("testdata/fuzz/FuzzParse/*")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		line := strings.Split(string(b), "\n")[1]
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(line, "[]byte("), ")"))
		if err != nil {
			t.Fatal(f, err)
		}
		_, err = Parse("f", []byte(s))
		fmt.Println(filepath.Base(f), err)
	}
}
