// Package cmdout words what an external program (a hook, a payload handler,
// a boot controller, fw_setenv) said when it failed, for a one-line error.
package cmdout

import "strings"

// LastLine returns the last non-empty line of out, without surrounding
// white space: the line a program usually explains its failure in.
func LastLine(out string) string {
	out = strings.TrimSpace(out)
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = strings.TrimSpace(out[i+1:])
	}
	return out
}
