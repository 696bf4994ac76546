package fleettest

import (
	"sync"
	"testing"
)

// Mailbox is the fleet side of a harness whose fleet side lives in the test
// itself (an in-memory server, a script, a daemon, a workflow engine): the
// offers not yet taken and the final reports. A harness embeds it for its
// Offer and Report methods, takes the next offer with Take and files the
// outcome with Put. It is safe for concurrent use; the zero value is ready.
type Mailbox struct {
	mu      sync.Mutex
	offers  []Offer
	reports map[string]Report
}

// Offer queues o for the device (Harness.Offer).
func (m *Mailbox) Offer(_ *testing.T, o Offer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.offers = append(m.offers, o)
}

// Report returns the final report filed for offer id (Harness.Report);
// false while there is none.
func (m *Mailbox) Report(_ *testing.T, id string) (Report, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.reports[id]
	return r, ok
}

// Take removes and returns the oldest offer not yet taken; false when
// there is none.
func (m *Mailbox) Take() (Offer, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.offers) == 0 {
		return Offer{}, false
	}
	o := m.offers[0]
	m.offers = m.offers[1:]
	return o, true
}

// Put files r as the final report for offer id.
func (m *Mailbox) Put(id string, r Report) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reports == nil {
		m.reports = map[string]Report{}
	}
	m.reports[id] = r
}
