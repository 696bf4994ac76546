// Package bench holds tandem's end-to-end benchmark (run.sh, see
// docs/benchmarks.md) and Go benchmarks that need real data from outside the
// repository. It has no code of its own.
package bench
