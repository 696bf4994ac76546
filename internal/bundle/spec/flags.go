package spec

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/signature"
)

// SlotPayloads makes the payloads of slot images given as ALIAS=IMAGE (the
// command line's --slot): one slot payload per image, for the slot alias,
// chunked content-defined (or fixed) with chunkSize as the average.
func SlotPayloads(slots []string, chunkSize int, fixed bool) ([]Payload, error) {
	ch := bundle.ChunkerBuzhash
	if fixed {
		ch = bundle.ChunkerFixed
	}
	var ps []Payload
	for _, s := range slots {
		alias, file, ok := strings.Cut(s, "=")
		if !ok || alias == "" || file == "" {
			return nil, fmt.Errorf("%q: want ALIAS=IMAGE", s)
		}
		ps = append(ps, Payload{PayloadSpec: bundle.PayloadSpec{Name: alias, Kind: bundle.KindSlot, Target: alias,
			Chunker: ch, ChunkSize: chunkSize}, File: file})
	}
	return ps, nil
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
