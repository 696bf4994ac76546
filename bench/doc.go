// Package bench holds tandem's end-to-end benchmarks (run.sh against its
// baselines, peers.sh against mender-client, RAUC and SWUpdate, delta.sh
// against casync; see docs/benchmarks.md) and Go benchmarks that need real
// data from outside the repository. It has no code of its own.
package bench
