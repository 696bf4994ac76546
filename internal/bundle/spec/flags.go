package spec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/chunker"
	"github.com/tandem-ota/tandem/internal/signature"
)

// SlotPayloads makes the payloads of bundle create's command line (its
// errors name its flags): one slot payload per --slot ALIAS=IMAGE, for the
// slot alias, chunked content-defined (or, with fixed, in fixed-size
// chunks) with --chunk-size as the average (ParseSize).
func SlotPayloads(slots []string, chunkSize string, fixed bool) ([]Payload, error) {
	size, err := ParseSize(chunkSize)
	if err != nil {
		return nil, fmt.Errorf("--chunk-size: %w", err)
	}
	if len(slots) == 0 {
		return nil, errors.New("give at least one --slot ALIAS=IMAGE (or --spec)")
	}
	ch := bundle.ChunkerBuzhash
	if fixed {
		ch = bundle.ChunkerFixed
	}
	var ps []Payload
	for _, s := range slots {
		alias, file, ok := strings.Cut(s, "=")
		if !ok || alias == "" || file == "" {
			return nil, fmt.Errorf("--slot %q: want ALIAS=IMAGE", s)
		}
		ps = append(ps, Payload{PayloadSpec: bundle.PayloadSpec{Name: alias, Kind: bundle.KindSlot, Target: alias,
			Chunker: ch, ChunkSize: int(size)}, File: file})
	}
	return ps, nil
}

// Chunking returns the chunker and its parameters for chunks of average
// size chunkSize (ParseSize), content-defined or, with fixed, fixed-size:
// what a payload of SlotPayloads is chunked with, and so what `tandem slots
// index` indexes a slot with.
func Chunking(chunkSize string, fixed bool) (bundle.ChunkerType, chunker.Params, error) {
	size, err := ParseSize(chunkSize)
	if err != nil {
		return 0, chunker.Params{}, err
	}
	if fixed {
		return bundle.ChunkerFixed, chunker.Fixed(int(size)), nil
	}
	return bundle.ChunkerBuzhash, chunker.ParamsForAvg(int(size)), nil
}

// Created is the creation time of a bundle made now, in Unix seconds:
// sourceDateEpoch (the SOURCE_DATE_EPOCH convention of reproducible builds)
// when it is set, else the current time.
func Created(sourceDateEpoch string) (int64, error) {
	if sourceDateEpoch == "" {
		return time.Now().Unix(), nil
	}
	n, err := strconv.ParseInt(sourceDateEpoch, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since the epoch", sourceDateEpoch)
	}
	return n, nil
}

// WithCert applies the command line's --cert CHAIN to the one --key it
// belongs to (KEY becomes KEY:CHAIN). (Moved from the CLI.)
func WithCert(keys []string, cert string) ([]string, error) {
	if cert == "" {
		return keys, nil
	}
	if len(keys) != 1 || strings.Contains(keys[0], ":") {
		return nil, errors.New("--cert needs exactly one --key; for several, write --key KEY:CHAIN")
	}
	return []string{keys[0] + ":" + cert}, nil
}

// Signer loads signing keys given as PATH[:CHAIN] (Spec.Keys, the command
// line's --key) into the signing function Create and bundle.AddSignatures
// take; nil for no keys (an unsigned bundle).
func Signer(keys []string) (func(bundle.Hash) ([]signature.Signature, error), error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ks, err := signature.LoadSigningKeys(keys)
	if err != nil {
		return nil, err
	}
	return func(h bundle.Hash) ([]signature.Signature, error) { return signature.SignAll(ks, h) }, nil
}
